"""Faults a run must survive or refuse loudly (issue 22's regressions): damaged checkpoints
fall back to the newest intact one, a non-finite state is never saved or selected, a workdir
is trained by one process with one config, and the logs stay strict JSON."""
import importlib.util
import json
import logging
import pathlib
import shutil

import grain
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from mmbal import transforms
from mmbal.train import apply_overrides, default_config
from mmbal.train.checkpoint import CheckpointDamaged, Checkpoints, NonFiniteState
from mmbal.train.loop import TrainingDiverged, check_finite_loss, train_and_evaluate
from mmbal.train.logs import MetricsLog, dumps
from mmbal.train.workdir import check_resume_config, exclusive

ROOT = pathlib.Path(__file__).resolve().parent.parent


def _state(value: float):
  return {"params": {"w": jnp.full((64, 32), float(value)), "b": jnp.arange(32.0)},
          "step": jnp.int32(value), "key": jax.random.key_data(jax.random.key(0))}


def _iterator():
  return iter(grain.MapDataset.range(16).batch(2).to_iter_dataset())


@pytest.fixture
def two_checkpoints(tmp_path):
  """Steps 1 and 2 saved, with the iterator 1 and 2 batches in."""
  ckpt = Checkpoints(tmp_path / "checkpoints", keep=3, damaged_dir=tmp_path / "damaged")
  it = _iterator()
  for step in (1, 2):
    next(it)
    ckpt.save(step, _state(step), it)
  ckpt.close()
  return tmp_path


def _faults_script():
  """`benchmarks/faults.py`: the damage is the fault-injection script's, not a copy of it."""
  spec = importlib.util.spec_from_file_location("faults", ROOT / "benchmarks" / "faults.py")
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


FAULTS = _faults_script()


def _other_arrays(step_dir: pathlib.Path):
  FAULTS.other_arrays(step_dir, step_dir.parent / "1")


# Damage that must be caught (the restore falls back), and damage that may be harmless (the
# restore may then read the checkpoint, but never anything other than what was saved).
CAUGHT = {
    "arrays of another step": _other_arrays,
    "truncated data file": lambda d: FAULTS.truncate(d, 50),
    "empty step directory": lambda d: (shutil.rmtree(d), d.mkdir()),
}
MAYBE_HARMLESS = {
    **{f"bit flip at {f:.0%} of a data file":
           (lambda d, f=f: FAULTS.flip_bit(FAULTS.largest_array_file(d), f))
       for f in (0.1, 0.3, 0.5, 0.7, 0.95)},
    "missing _CHECKPOINT_METADATA": lambda d: (d / "_CHECKPOINT_METADATA").unlink(),
    "missing state _METADATA": lambda d: (d / "state" / "_METADATA").unlink(),
    "missing OCDBT manifest": lambda d: (d / "state" / "manifest.ocdbt").unlink(),
}


@pytest.mark.parametrize("damage", list(CAUGHT) + list(MAYBE_HARMLESS))
def test_a_damaged_checkpoint_is_never_read_as_something_else(two_checkpoints, damage, caplog):
  (CAUGHT | MAYBE_HARMLESS)[damage](two_checkpoints / "checkpoints" / "2")
  ckpt = Checkpoints(two_checkpoints / "checkpoints", keep=3, damaged_dir=two_checkpoints / "damaged")
  it = _iterator()
  with caplog.at_level(logging.WARNING, logger="mmbal"):
    state = ckpt.restore(_state(0.0), it)
  ckpt.close()
  step = int(state["step"])
  jax.tree.map(np.testing.assert_array_equal, state, _state(step))   # exactly what was saved
  np.testing.assert_array_equal(next(it), [2 * step, 2 * step + 1])   # and where it was
  if damage in CAUGHT:
    assert step == 1
  if step == 1:
    assert "skipped damaged ones: step 2" in caplog.text
    assert (two_checkpoints / "damaged" / "2").is_dir()   # moved aside, not deleted
    assert not (two_checkpoints / "checkpoints" / "2").exists()


def test_no_intact_checkpoint_is_a_clear_error(two_checkpoints):
  for step in ("2", "1"):
    FAULTS.truncate(two_checkpoints / "checkpoints" / step, 50)
  ckpt = Checkpoints(two_checkpoints / "checkpoints", keep=3)
  with pytest.raises(CheckpointDamaged, match=r"no intact checkpoint .*step 2: .*step 1: .*"
                                              r"nothing was deleted"):
    ckpt.restore(_state(0.0))
  ckpt.close()


def test_a_non_finite_state_is_never_saved(tmp_path):
  ckpt = Checkpoints(tmp_path, keep=2)
  state = _state(1.0)
  ckpt.save(1, state, _iterator())
  state["params"]["b"] = state["params"]["b"].at[3].set(jnp.nan)
  with pytest.raises(NonFiniteState, match=r"step 2 holds NaN/Inf in \['params'\]\['b'\] "
                                           r"\(1 values\).*checkpoint of step 1 is kept"):
    ckpt.save(2, state, _iterator())
  ckpt.close()
  assert sorted(p.name for p in tmp_path.iterdir() if p.name.isdigit()) == ["1"]


def test_selection_never_keeps_non_finite_parameters():
  from mmbal.train.step import TrainState, keep_best  # pylint: disable=import-outside-toplevel
  good = {"w": jnp.ones(3)}
  state = TrainState(step=jnp.int32(0), params={"w": jnp.array([1.0, jnp.nan, 0.0])},
                     opt_state=(), best_params=good, best_score=jnp.float32(0.5),
                     key=jax.random.key_data(jax.random.key(0)), loss_sum=jnp.zeros(1),
                     loss_count=jnp.int32(0))
  kept = keep_best(state, jnp.float32(0.9))   # a better score, but the params are NaN
  np.testing.assert_array_equal(kept.best_params["w"], good["w"])
  assert float(kept.best_score) == 0.5


# ----------------------------------------------------------------------------- transforms


def test_one_nan_score_does_not_poison_agm():
  tx = transforms.agm(("audio", "video"), alpha=1.0)
  grads = {"w": jnp.ones((2, 3))}
  state = tx.init({"w": jnp.ones(3)})
  for scores in ({"audio": 1.0, "video": 2.0}, {"audio": jnp.nan, "video": 2.0}):
    out, state = tx.update(grads, state, agm_scores=scores, objectives=("audio", "video"))
  np.testing.assert_array_equal(out["w"], [2.0, 2.0, 2.0])   # kappa = 1 on the NaN step
  assert int(state.count) == 1
  np.testing.assert_allclose([float(state.running_scores[m]) for m in ("audio", "video")],
                             [1.0, 2.0])   # the running mean of the finite step only


def test_an_inf_in_one_leaf_stays_in_that_leaf_under_pcgrad():
  tx = transforms.pcgrad(order="fixed", num_objectives=2)
  grads = {"a": jnp.array([[1.0, 0.0], [-1.0, 1.0]]), "b": jnp.array([[jnp.inf], [1.0]])}
  out, state = tx.update(grads, tx.init(None))
  np.testing.assert_array_equal(out["a"], [0.0, 1.0])   # plain sum, no NaN from projection
  assert np.isinf(out["b"]).all()
  assert np.isfinite(state.cosines).all()


# ----------------------------------------------------------------------------- the workdir


def test_resume_refuses_another_config_and_names_the_fields(tmp_path):
  first = default_config()
  (tmp_path / "checkpoints").mkdir()
  saved = first.to_dict()
  del saved["data"]["path"]   # a config.json written before the field existed: its default
  (tmp_path / "config.json").write_text(json.dumps(saved))
  check_resume_config(tmp_path, apply_overrides(default_config(), ["log.progress=False",
                                                                   "train.stop_after_steps=5"]))
  changed = apply_overrides(default_config(), ["optimizer.learning_rate=0.01", "seed=3"])
  with pytest.raises(ValueError, match=r"optimizer.learning_rate: 0.001 -> 0.01; seed: 0 -> 3.*"
                                       r"train.allow_changed=optimizer.learning_rate,seed"):
    check_resume_config(tmp_path, changed)
  check_resume_config(tmp_path, apply_overrides(changed, [
      "train.allow_changed=optimizer.learning_rate,seed"]))


def test_a_second_trainer_on_a_workdir_is_refused_naming_the_first(tmp_path):
  with exclusive(tmp_path):
    with pytest.raises(ValueError, match=r"in use by another trainer \(pid \d+ on "):
      train_and_evaluate(default_config(), tmp_path)
  assert sorted(p.name for p in tmp_path.iterdir()) == [".lock"]   # nothing else written
  with exclusive(tmp_path):   # released when the first trainer ends
    pass


def test_results_and_metrics_are_strict_json_and_a_cut_line_is_dropped(tmp_path):
  assert json.loads(dumps({"loss": float("nan"), "x": [1.0, float("inf")]})) == {
      "loss": None, "x": [1.0, None]}
  path = tmp_path / "metrics.jsonl"
  path.write_text('{"step": 1, "loss": 1.0}\n{"step": 2, "loss": 0.5}\n{"step": 3, "lo')
  MetricsLog(path, resume_step=2)
  assert [json.loads(l)["step"] for l in path.read_text().splitlines()] == [1, 2]


def test_a_diverged_loss_stops_the_run_naming_the_step():
  check_finite_loss({"loss": {"total": 1.0, "fused": 0.5}}, 20, None)
  with pytest.raises(TrainingDiverged, match=r"loss \{'total': nan\} at step 40.*checkpoint of "
                                             r"step 20 is kept.*optimizer.learning_rate"):
    check_finite_loss({"loss": {"total": float("nan"), "fused": 0.5}}, 40, 20)


# ----------------------------------------------------------------------------- end to end


def _config(tfds_dir, *overrides):
  return apply_overrides(default_config(), [
      f"data.data_dir={tfds_dir}", "data.modalities=pix,fou", "log.progress=False",
      "train.num_steps=12", "train.batch_size=32", "train.eval_every_steps=4",
      "train.log_every_steps=4", "train.keep_checkpoints=3", "eval.batch_size=64",
      "eval.linear_probe=False", "model.hidden_dim=16", "model.feature_dim=8", *overrides])


def test_a_run_resumed_past_a_damaged_checkpoint_ends_as_an_uninterrupted_one(tfds_dir, tmp_path):
  damaged = tmp_path / "damaged"
  train_and_evaluate(_config(tfds_dir, "train.stop_after_steps=8"), damaged)
  FAULTS.other_arrays(damaged / "checkpoints" / "8", damaged / "checkpoints" / "4")
  resumed = train_and_evaluate(_config(tfds_dir), damaged)
  reference = train_and_evaluate(_config(tfds_dir), tmp_path / "reference")
  assert resumed.results["test"] == reference.results["test"]
  assert (damaged / "checkpoints-damaged" / "8").is_dir()
