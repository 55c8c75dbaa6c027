"""Every balancing method trains end to end from its config, and resumes exactly."""
import json

import jax
import numpy as np
import pytest

from mmbal import methods, transforms
from mmbal.train import apply_overrides, load_config
from mmbal.train.evaluate import evaluate
from mmbal.train.loop import train_and_evaluate
from mmbal.train.run import build_run

SHORT = ["log.progress=False", "train.num_steps=8", "train.eval_every_steps=4",
         "train.log_every_steps=4", "train.batch_size=32", "eval.batch_size=64",
         "model.hidden_dim=32", "model.feature_dim=16", "eval.linear_probe=False"]


def _config(tfds_dir, data, method, *overrides):
  config = load_config(f"configs/{data}/{method}.py")
  return apply_overrides(config, [f"data.data_dir={tfds_dir}"] + SHORT + list(overrides))


# Every balancing method that runs on mfeat (from the registry: a new method is tested here).
MFEAT_METHODS = [n for n, m in methods.REGISTRY.items()
                 if not m.baseline and m.runs_on("uci_mfeat", "classification")]


@pytest.mark.parametrize("method", MFEAT_METHODS)
def test_method_trains_on_mfeat(tfds_dir, tmp_path, method):
  # Methods with an epoch hook get one whole epoch (10 steps of 120), so the hook runs.
  hooked = method in ("miles", "gradient_blending")
  epoch = ["train.batch_size=120", "train.num_steps=10", "train.eval_every_steps=5"] if hooked else []
  config = _config(tfds_dir, "mfeat", method, *epoch)
  run = train_and_evaluate(config, tmp_path)
  test = run.results["test"]
  assert test["count"] == 500
  assert 0.0 <= test["fused"]["accuracy"] <= 1.0
  assert all(np.isfinite(np.asarray(x)).all() for x in jax.tree.leaves(run.state.params))
  records = [json.loads(l) for l in (tmp_path / "metrics.jsonl").read_text().splitlines()]
  validation = [r for r in records if r["split"] == "validation"]
  assert len(validation) == 2
  train = [r for r in records if r["split"] == "train"]
  assert validation[-1]["method"] or train[-1].get("method"), "the method's quantities are logged"
  if method == "gradient_blending":
    # The epoch hook's train losses are measured at the epoch's end with the parameters of the
    # validation losses (the paper's comparison), not the running mean over the epoch.
    blending = transforms.find_blending_state(run.state.opt_state)
    assert bool(blending.measured)
    built = build_run(config)
    train = evaluate(built, run.state.params, "train")
    expected = [train["fused"]["loss"]] + [train["unimodal"][m]["loss"] for m in built.model.names]
    np.testing.assert_allclose(np.asarray(blending.train_loss), expected, rtol=1e-5)


@pytest.mark.parametrize("method", ["miles", "gradient_blending", "pmr", "mla"])
def test_method_state_survives_resume(tfds_dir, tmp_path, method):
  full = train_and_evaluate(_config(tfds_dir, "synthetic", method), tmp_path / "full")
  train_and_evaluate(_config(tfds_dir, "synthetic", method, "train.stop_after_steps=6"),
                     tmp_path / "resumed")
  resumed = train_and_evaluate(_config(tfds_dir, "synthetic", method), tmp_path / "resumed")
  jax.tree.map(lambda a, b: np.testing.assert_array_equal(np.asarray(a), np.asarray(b)),
               resumed.state.opt_state, full.state.opt_state)
  jax.tree.map(lambda a, b: np.testing.assert_array_equal(np.asarray(a), np.asarray(b)),
               resumed.state.params, full.state.params)
