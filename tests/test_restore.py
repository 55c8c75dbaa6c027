"""Runs restore as they were trained: checkpoints written by mmbal 0.1.0 (before the method
registry and `build_run`) still restore and score what they reported; the method's epoch hook
fires at epoch boundaries only, whatever the evaluation interval."""
import json
import pathlib
import shutil

import numpy as np
import pytest

from mmbal.train import apply_overrides, load_config
from mmbal.train.loop import train_and_evaluate
from restore_check import assert_restores

FIXTURES = pathlib.Path(__file__).resolve().parent / "fixtures" / "checkpoints_v0_1_0"


@pytest.mark.parametrize("method", ["ogm_ge", "miles"])
def test_checkpoints_of_0_1_0_still_restore(tfds_dir, tmp_path, method):
  workdir = tmp_path / method
  shutil.copytree(FIXTURES / method, workdir)
  config = json.loads((workdir / "config.json").read_text())
  config["data"]["data_dir"] = tfds_dir   # the generated data, rebuilt here
  (workdir / "config.json").write_text(json.dumps(config))
  run = assert_restores(workdir)
  assert run.step == 4 and run.config.method.name == method


def test_the_epoch_hook_runs_at_epoch_boundaries_only(tfds_dir, tmp_path):
  """MILES with an evaluation every 5 steps and 10 steps per epoch: its scales change at the
  epoch boundary (step 10), not at the evaluations in between (steps 5 and 15)."""
  config = apply_overrides(load_config("configs/mfeat/miles.py"), [
      f"data.data_dir={tfds_dir}", "log.progress=False", "train.batch_size=120",
      "train.num_steps=20", "train.eval_every_steps=5", "train.log_every_steps=5",
      "model.hidden_dim=16", "model.feature_dim=8", "eval.linear_probe=False",
      "method.miles.tau=0.0"])   # any utilisation gap rescales
  train_and_evaluate(config, tmp_path)
  run_info = json.loads((tmp_path / "run.json").read_text())
  assert run_info["steps_per_epoch"] == 10
  records = [json.loads(l) for l in (tmp_path / "metrics.jsonl").read_text().splitlines()]
  scales = {r["step"]: r["method"]["scales"] for r in records if r["split"] == "validation"}
  assert sorted(scales) == [5, 10, 15, 20]
  assert set(scales[5].values()) == {1.0}                 # no epoch has ended yet
  assert set(scales[10].values()) != {1.0}                # the first epoch's update
  assert scales[15] == scales[10]                         # an evaluation is not an epoch end
  assert np.isfinite(list(scales[20].values())).all()
