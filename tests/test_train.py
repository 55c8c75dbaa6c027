"""End-to-end training: CLI, devices, resume, grad modes, errors."""
import json
import signal
import subprocess
import sys
import time

import jax
import numpy as np
import pytest

from mmbal.train import apply_overrides, default_config
from mmbal.train.cli import main
from mmbal.train.loop import train_and_evaluate

STEPS = 12


def _config_overrides(tfds_dir):
  return [f"data.data_dir={tfds_dir}", "data.modalities=pix,fou,mor", "log.progress=False",
          f"train.num_steps={STEPS}", "train.batch_size=32", "train.eval_every_steps=4",
          "train.log_every_steps=4", "eval.batch_size=64", "model.hidden_dim=32",
          "model.feature_dim=16"]


def _config(tfds_dir, *overrides):
  return apply_overrides(default_config(), _config_overrides(tfds_dir) + list(overrides))


def _assert_params_close(a, b, **tol):
  jax.tree.map(lambda x, y: np.testing.assert_allclose(np.asarray(x), np.asarray(y), **tol), a, b)


@pytest.fixture(scope="module")
def uninterrupted(tfds_dir, tmp_path_factory):
  return train_and_evaluate(_config(tfds_dir), tmp_path_factory.mktemp("full"))


def test_cli_end_to_end(tfds_dir, tmp_path, capsys):
  workdir = tmp_path / "run"
  main(["train", "--config", "configs/mfeat/joint.py", "--workdir", str(workdir),
        f"data.data_dir={tfds_dir}", "train.num_steps=60", "train.eval_every_steps=20",
        "log.progress=False", "log.tensorboard=True"])
  out = capsys.readouterr().out
  assert "unimodal pix" in out and "fused" in out
  results = json.loads((workdir / "results.json").read_text())
  assert results["test"]["count"] == 500          # every test example scored
  assert results["test"]["fused"]["accuracy"] > 0.5   # 10 classes: chance is 0.1
  assert set(results["test"]["unimodal"]) == {"pix", "fou", "mor"}
  lines = [json.loads(l) for l in (workdir / "metrics.jsonl").read_text().splitlines()]
  assert {l["split"] for l in lines} == {"train", "validation"}
  assert all(np.isfinite(l["loss"]["fused"]) for l in lines if l["split"] == "train")
  assert list((workdir / "tensorboard").glob("events.out.tfevents.*"))


def test_one_and_eight_devices_agree(tfds_dir, tmp_path, uninterrupted, devices):
  one = train_and_evaluate(_config(tfds_dir), tmp_path, devices=devices[:1])
  assert uninterrupted.state.params["head"]["kernel"].sharding.mesh.size == 8
  _assert_params_close(one.state.params, uninterrupted.state.params, rtol=2e-4, atol=2e-5)


def test_stop_and_resume_continues_exactly(tfds_dir, tmp_path, uninterrupted):
  stopped = train_and_evaluate(_config(tfds_dir, "train.stop_after_steps=6"), tmp_path)
  assert stopped.results is None and int(stopped.state.step) == 6
  resumed = train_and_evaluate(_config(tfds_dir), tmp_path)
  assert int(resumed.state.step) == STEPS
  _assert_params_close(resumed.state.params, uninterrupted.state.params, rtol=0, atol=0)
  assert resumed.results["test"] == uninterrupted.results["test"]
  records = [json.loads(l) for l in (tmp_path / "metrics.jsonl").read_text().splitlines()]
  train_steps = [r["step"] for r in records if r["split"] == "train"]
  assert train_steps == [4, 6, 8, 12]   # step 6: the stop; nothing logged twice after resuming


def test_killed_process_resumes_to_the_same_parameters(tfds_dir, tmp_path):
  steps = 120
  overrides = [f"train.num_steps={steps}", "train.eval_every_steps=40"]
  workdir = tmp_path / "killed"
  cmd = [sys.executable, "-m", "mmbal.train.cli", "train", "--workdir", str(workdir)]
  cmd += _config_overrides(tfds_dir) + overrides + ["train.checkpoint_every_steps=5"]
  proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
  deadline = time.time() + 180
  while time.time() < deadline and not (workdir / "checkpoints" / "10").exists():
    time.sleep(0.05)
  proc.send_signal(signal.SIGKILL)
  proc.wait()
  saved = sorted(int(p.name) for p in (workdir / "checkpoints").iterdir() if p.name.isdigit())
  assert saved and saved[-1] < steps, f"the run was not killed mid-way (checkpoints {saved})"
  resumed = train_and_evaluate(_config(tfds_dir, *overrides), workdir)
  reference = train_and_evaluate(_config(tfds_dir, *overrides), tmp_path / "reference")
  _assert_params_close(resumed.state.params, reference.state.params, rtol=0, atol=0)
  assert resumed.results["test"] == reference.results["test"]


def test_stacked_gradients_match_summed(tfds_dir, tmp_path, uninterrupted):
  stacked = train_and_evaluate(_config(tfds_dir, "method.grad_mode=stacked"), tmp_path)
  _assert_params_close(stacked.state.params, uninterrupted.state.params, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("override, message", [
    ("train.batchsize=3", "unknown config field 'train.batchsize'; did you mean 'train.batch_size'"),
    ("model.fusion=mean", "fusion must be one of"),
    ("data.modalities=pix,audio", "modalities: expected a non-empty list of distinct names"),
    ("train.batch_size=12", "must be divisible by the mesh data axis"),
    ("data.val_fraction=0.0001", "val_fraction"),
    ("method.name=pcgradd", "method.name"),
    ("train.batch_size=many", "expects int"),
    ("model.dtype=float16", "config field 'model.dtype' must be 'float32' or 'bfloat16'"),
    ("data.num_workers=-1", "config field 'data.num_workers' must be an integer"),
    ("method.backward=loop", "config field 'method.backward' must be 'unrolled' or 'vmap'"),
])
def test_bad_config_is_a_clear_error_before_compiling(tfds_dir, tmp_path, override, message):
  with pytest.raises(ValueError, match=message.replace("(", r"\(").replace("'", ".")):
    train_and_evaluate(_config(tfds_dir, override), tmp_path)
  assert not (tmp_path / "checkpoints").exists() or not any((tmp_path / "checkpoints").iterdir())


def test_cli_reports_errors_without_traceback(tmp_path, capsys):
  with pytest.raises(SystemExit, match="unknown config field 'optimizer.lr'"):
    main(["train", "--workdir", str(tmp_path), "optimizer.lr=0.1"])


def test_model_axis_shards_parameters_and_agrees(tfds_dir, tmp_path, uninterrupted):
  run = train_and_evaluate(_config(tfds_dir, "mesh.model=2"), tmp_path)
  kernel = run.state.params["encoders"]["pix"]["hidden"][0]["kernel"]
  assert "model" in tuple(kernel.sharding.spec)
  assert not kernel.sharding.is_fully_replicated
  _assert_params_close(run.state.params, uninterrupted.state.params, rtol=2e-4, atol=2e-5)
