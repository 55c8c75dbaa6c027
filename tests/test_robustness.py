"""The robustness protocol: seeded corruptions, the scores, and `mmbal eval --robustness`."""
import json

import numpy as np
import pytest

from mmbal.data import corrupt
from mmbal.diagnostics import robustness
from mmbal.train import apply_overrides, default_config
from mmbal.train.cli import main
from mmbal.train.loop import train_and_evaluate

NAMES = ("a", "b")


def _batch(size=4000, seed=0):
  rng = np.random.default_rng(seed)
  return {"a": rng.normal(size=(size, 3)).astype(np.float32),
          "b": rng.normal(size=(size, 5, 2)).astype(np.float32),
          "label": np.zeros(size, np.int32), "mask": np.ones(size, bool)}


def test_drop_modality_rates_and_seeds():
  batch = _batch()
  same = corrupt.drop_modality(batch, NAMES, "a", 0.0, np.random.default_rng(0))
  np.testing.assert_array_equal(same["a"], batch["a"])
  assert same["present"].min() == 1.0
  gone = corrupt.drop_modality(batch, NAMES, "a", 1.0, np.random.default_rng(0))
  assert not gone["a"].any() and not gone["present"][:, 0].any() and gone["present"][:, 1].all()
  part = corrupt.drop_modality(batch, NAMES, "a", 0.3, np.random.default_rng(1))
  dropped = ~part["present"][:, 0].astype(bool)
  assert abs(dropped.mean() - 0.3) < 0.03
  assert not part["a"][dropped].any() and (part["a"][~dropped] == batch["a"][~dropped]).all()
  again = corrupt.drop_modality(batch, NAMES, "a", 0.3, np.random.default_rng(1))
  np.testing.assert_array_equal(again["a"], part["a"])
  np.testing.assert_array_equal(batch["b"], part["b"])      # other modalities untouched
  filled = corrupt.drop_modality(batch, NAMES, "a", 1.0, np.random.default_rng(0),
                                 fill={"a": np.full(3, 7.0)})
  assert (filled["a"] == 7.0).all()


def test_noise_and_step_dropout():
  batch = _batch()
  noisy = corrupt.add_noise(batch, NAMES, "a", 0.5, np.random.default_rng(0), scale={"a": 2.0})
  assert abs((noisy["a"] - batch["a"]).std() - 1.0) < 0.03     # severity 0.5 x std 2
  steps = corrupt.drop_steps(batch, NAMES, "b", 0.25, np.random.default_rng(0))
  zeroed = ~steps["b"].any(-1)
  assert abs(zeroed.mean() - 0.25) < 0.02 and zeroed.shape == (4000, 5)
  with pytest.raises(ValueError, match="must be a sequence"):
    corrupt.drop_steps(batch, NAMES, "a", 0.5, np.random.default_rng(0))
  with pytest.raises(ValueError, match="kind must be one of"):
    corrupt.corrupt(batch, NAMES, "blur", ("a",), 0.5, np.random.default_rng(0))


def test_scores_hand_computed():
  rates = [0.0, 0.5, 1.0]
  # Trapezoids of (1, 0.6, 0.2): (0.8 * 0.5 + 0.4 * 0.5) / 1 = 0.6.
  assert robustness.relative_robustness(rates, [1.0, 0.6, 0.2]) == pytest.approx(0.6)
  # Same shape as the reference, scaled: nothing kept beyond it.
  assert robustness.effective_robustness(rates, [0.5, 0.3, 0.1], [1.0, 0.6, 0.2]) == pytest.approx(0)
  # Flat at 0.8 while the reference halves: expected 0.8 * (1, 0.75, 0.5) -> kept (0, 0.2, 0.4),
  # area (0.1 * 0.5 + 0.3 * 0.5) = 0.2.
  assert robustness.effective_robustness(rates, [0.8] * 3, [1.0, 0.75, 0.5]) == pytest.approx(0.2)


def test_sweep_on_a_model_that_needs_only_modality_a():
  batch = _batch(size=2000)

  def evaluate(b):   # right exactly when a is present
    correct = b["present"][:, 0] * b["mask"]
    return float(correct.sum()), float(b["mask"].sum())

  result = robustness.sweep(evaluate, lambda: [batch], NAMES, kinds=("missing", "steps"),
                            rates=(0.0, 0.5, 0.9), seeds=(0, 1))
  a, b = result["curves"]["missing"]["a"], result["curves"]["missing"]["b"]
  assert b["accuracy"] == [1.0, 1.0, 1.0] and b["relative_robustness"] == 1.0
  np.testing.assert_allclose(a["accuracy"], [1.0, 0.5, 0.1], atol=0.03)
  assert result["removed"] == {"a": 0.0, "b": 1.0} and result["missing_gap"] == 1.0
  assert set(result["curves"]["steps"]) == {"b"}    # only the sequence modality
  assert result["curves"]["steps"]["b"]["accuracy"] == [1.0, 1.0, 1.0]


def test_mmbal_eval_robustness_end_to_end(tfds_dir, tmp_path, capsys):
  config = apply_overrides(default_config(), [
      f"data.data_dir={tfds_dir}", "log.progress=False", "train.num_steps=20",
      "train.batch_size=32", "train.eval_every_steps=10", "eval.batch_size=64",
      "model.hidden_dim=16", "model.feature_dim=8", "eval.linear_probe=False"])
  run = train_and_evaluate(config, tmp_path)
  result = main(["eval", "--workdir", str(tmp_path), "--robustness", "--kinds", "missing,noise",
                 "--seeds", "0"])
  test = run.results["test"]
  saved = json.loads((tmp_path / "robustness" / "robustness.json").read_text())
  for m in ("pix", "fou", "mor"):
    # Rate 0 is the clean model; full removal with the model's own mask is the trainer's row.
    assert saved["curves"]["missing"][m]["accuracy"][0] == pytest.approx(test["fused"]["accuracy"])
    assert saved["removed"][m] == pytest.approx(test["without"][m]["accuracy"])
  assert set(saved["curves"]) == {"missing", "noise"} and saved == json.loads(json.dumps(result))
  assert (tmp_path / "robustness" / "robustness.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
  assert "missing-modality gap" in (tmp_path / "robustness" / "robustness.md").read_text()
  # Against itself as the reference, effective robustness is zero everywhere.
  again = main(["eval", "--workdir", str(tmp_path), "--robustness", "--seeds", "0",
                "--reference", str(tmp_path), "--out", str(tmp_path / "again")])
  for curve in again["curves"]["missing"].values():
    assert curve["effective_robustness"] == pytest.approx(0.0, abs=1e-9)
  with pytest.raises(SystemExit, match="kinds"):
    main(["eval", "--workdir", str(tmp_path), "--robustness", "--kinds", "blur"])


def test_learned_fill_stands_in_for_an_absent_modality():
  import jax.numpy as jnp
  from flax import nnx
  from mmbal.models import MultimodalClassifier
  model = MultimodalClassifier({"a": (3,), "b": (2,)}, 4, feature_dim=5, hidden_dim=8,
                               missing="learned", rngs=nnx.Rngs(0))
  model.fill[...] = jnp.arange(10.0).reshape(2, 5)
  x = {"a": jnp.ones((2, 3)), "b": jnp.ones((2, 2))}
  out = model(x, jnp.array([[1.0, 0.0], [1.0, 1.0]]))
  h_a = model.encoders["a"](x["a"])
  expected = model.head(model.fusion(jnp.stack([h_a[:1], model.fill[...][1:2]]), None))
  np.testing.assert_allclose(out.logits[:1], expected, rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(out.logits[1:], model(x).logits[1:], rtol=1e-5, atol=1e-6)


def test_modality_dropout_trains_the_learned_fill(tfds_dir, tmp_path):
  config = lambda *extra: apply_overrides(default_config(), [
      f"data.data_dir={tfds_dir}", "log.progress=False", "train.num_steps=12",
      "train.batch_size=32", "train.eval_every_steps=6", "eval.batch_size=64",
      "model.hidden_dim=16", "model.feature_dim=8", "eval.linear_probe=False",
      "model.missing=learned", "train.modality_dropout=0.3", *extra])
  run = train_and_evaluate(config(), tmp_path)
  assert np.abs(np.asarray(run.state.params["fill"])).sum() > 0   # it received gradients
  stopped = train_and_evaluate(config("train.stop_after_steps=6"), tmp_path / "resumed")
  assert stopped.results is None
  resumed = train_and_evaluate(config(), tmp_path / "resumed")   # the same drops after resuming
  np.testing.assert_array_equal(np.asarray(resumed.state.params["fill"]),
                                np.asarray(run.state.params["fill"]))
