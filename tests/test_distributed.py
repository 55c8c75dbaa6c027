"""Multi-process runs on JAX's distributed runtime (CPU collectives over localhost).

The same code path as a TPU pod or a GPU cluster: `launch/local_multiprocess.sh` starts
the processes, each feeds its share of every global batch, orbax coordinates checkpoints.
"""
import json
import os
import pathlib
import re
import signal
import subprocess
import sys
import time

import jax
import numpy as np
import pytest

from mmbal import data as mmdata
from mmbal.modalities import as_modalities
from mmbal.train import apply_overrides, default_config
from mmbal.train import sharding as shd
from mmbal.train.loop import train_and_evaluate
from mmbal.train.run import build_parts
from mmbal.train.restore import restore_run

ROOT = pathlib.Path(__file__).resolve().parent.parent
STEPS = 40   # a SIGTERM sent after the first log (step 2) lands mid-run
TINY = ["log.progress=False", f"train.num_steps={STEPS}", "train.batch_size=32",
        "train.eval_every_steps=20", "train.log_every_steps=2", "eval.batch_size=64",
        "model.hidden_dim=16", "model.feature_dim=8", "eval.linear_probe=False"]


def _overrides(tfds_dir):
  return [f"data.data_dir={tfds_dir}"] + TINY


def _env():
  env = dict(os.environ, JAX_PLATFORMS="cpu")
  env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
  return env


def _launch(workdir, tfds_dir, *extra, processes=2, devices=4):
  """`launch/local_multiprocess.sh` in the background."""
  cmd = ["bash", str(ROOT / "launch" / "local_multiprocess.sh"), str(processes),
         "--devices-per-process", str(devices), "--",
         "--workdir", str(workdir)] + _overrides(tfds_dir) + list(extra)
  return subprocess.Popen(cmd, env=dict(_env(), PYTHON=sys.executable), stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, text=True, cwd=ROOT)


def _finish(proc, timeout=300):
  try:
    out, err = proc.communicate(timeout=timeout)
  except subprocess.TimeoutExpired:
    proc.kill()
    out, err = proc.communicate()
    pytest.fail(f"timed out after {timeout} s:\n{err[-3000:]}")
  return proc.returncode, out, err


def _wait_for_training(workdir, proc, timeout=240):
  """Until the first train record is logged (the step is compiled and running)."""
  deadline = time.time() + timeout
  metrics = workdir / "metrics.jsonl"
  while time.time() < deadline:
    if metrics.exists() and '"split": "train"' in metrics.read_text():
      return
    if proc.poll() is not None:
      pytest.fail(f"exited early ({proc.returncode}):\n{proc.stderr.read()[-3000:]}")
    time.sleep(0.2)
  pytest.fail("training did not start")


def _assert_trees(a, b, **tol):
  jax.tree.map(lambda x, y: np.testing.assert_allclose(np.asarray(x), np.asarray(y), **tol), a, b)


@pytest.fixture(scope="module")
def prepared(tfds_dir):
  mmdata.load("uci_mfeat", data_dir=tfds_dir)   # built once, before processes share the dir
  return tfds_dir


@pytest.fixture(scope="module")
def two_processes(tmp_path_factory):
  """An uninterrupted 2-process x 4-device run, starting from an empty data dir (process 0
  prepares it while the other waits)."""
  workdir, data_dir = tmp_path_factory.mktemp("two_processes"), tmp_path_factory.mktemp("tfds")
  code, out, err = _finish(_launch(workdir, data_dir))
  assert code == 0, err[-3000:]
  return workdir, out, err, data_dir


def test_two_processes_match_one_process_of_eight_devices(two_processes, tmp_path):
  workdir, out, err, data_dir = two_processes
  assert "process 1 of 2, 4 local / 8 global devices" in err
  assert "[Gloo]" not in err   # gloo's per-connection lines are dropped by the launcher
  assert out.count("results:") == 1 and "[1] fused" not in out   # process 0 prints
  single = train_and_evaluate(apply_overrides(default_config(), _overrides(data_dir)), tmp_path)
  multi = json.loads((workdir / "results.json").read_text())
  for split in ("validation", "test"):
    assert multi[split]["fused"]["accuracy"] == single.results[split]["fused"]["accuracy"]
    np.testing.assert_allclose(multi[split]["fused"]["loss"], single.results[split]["fused"]["loss"],
                               rtol=1e-5)
  # The same global batches in both; only the order of floating-point sums differs.
  _assert_trees(restore_run(workdir).params, single.state.best_params, rtol=1e-4, atol=1e-6)
  steps = [json.loads(l)["step"] for l in (workdir / "metrics.jsonl").read_text().splitlines()]
  assert steps == sorted(steps) and len(steps) == len(set((s, i) for i, s in enumerate(steps)))


def test_sigterm_checkpoints_at_an_agreed_step_and_resumes_exactly(two_processes, tmp_path):
  reference, _, _, data_dir = two_processes
  proc = _launch(tmp_path, data_dir)
  _wait_for_training(tmp_path, proc)
  proc.send_signal(signal.SIGTERM)   # the launcher forwards it to both processes
  code, _, err = _finish(proc)
  assert code == 0, err[-3000:]
  stops = set(re.findall(r"\[(\d)\] .*preempted \(SIGTERM\): checkpoint saved at step (\d+)", err))
  assert {p for p, _ in stops} == {"0", "1"} and len({s for _, s in stops}) == 1, err[-3000:]
  step = int(next(iter(stops))[1])
  assert 0 < step < STEPS and (tmp_path / "checkpoints" / str(step)).is_dir()
  assert not (tmp_path / "results.json").exists()

  code, _, err = _finish(_launch(tmp_path, data_dir))   # the same command resumes
  assert code == 0, err[-3000:]
  assert f"resumed from step {step}" in err
  _assert_trees(restore_run(tmp_path).params, restore_run(reference).params, rtol=0, atol=0)
  assert (json.loads((tmp_path / "results.json").read_text())["test"]
          == json.loads((reference / "results.json").read_text())["test"])


def test_a_dead_process_stops_the_others_with_a_clear_error(prepared, tmp_path):
  port = 20000 + os.getpid() % 20000
  procs = [subprocess.Popen(
      [sys.executable, "-m", "mmbal.train.cli", "train", "--distributed", "--coordinator",
       f"127.0.0.1:{port}", "--num-processes", "2", "--process-id", str(i),
       "--heartbeat-timeout", "5", "--workdir", str(tmp_path)] + _overrides(prepared)
      + ["train.num_steps=1000000"],
      env=dict(_env(), JAX_NUM_CPU_DEVICES="2"), stdout=subprocess.DEVNULL,
      stderr=subprocess.PIPE, text=True) for i in range(2)]
  try:
    _wait_for_training(tmp_path, procs[0])
    procs[1].kill()
    start = time.time()
    code, _, err = _finish(procs[0], timeout=120)
    assert code != 0
    assert time.time() - start < 60
    # Which part of the runtime notices first depends on timing: JAX's coordination service
    # (heartbeats) or gloo (the dead peer's socket inside a collective).
    assert any(sign in err for sign in ("another task died", "unhealthy", "gloo")), err[-2000:]
  finally:
    for p in procs:
      p.kill()


def test_restore_onto_fewer_devices(prepared, tmp_path, devices):
  config = lambda *extra: apply_overrides(default_config(), _overrides(prepared)
                                          + ["train.num_steps=24", "train.eval_every_steps=8"]
                                          + list(extra))
  full = train_and_evaluate(config(), tmp_path / "full", devices=devices)
  train_and_evaluate(config("train.stop_after_steps=12"), tmp_path / "moved", devices=devices)
  resumed = train_and_evaluate(config(), tmp_path / "moved", devices=devices[:4])
  assert resumed.state.params["head"]["kernel"].sharding.mesh.size == 4
  _assert_trees(resumed.state.params, full.state.params, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("method, overrides, expected", [
    ("joint", [], 1),
    ("pcgrad", ["model.unimodal=heads"], 1),
    ("mnl", ["model.unimodal=heads", "model.fusion=late"], 1),
    ("ogm_ge", ["model.unimodal=split_head"], 1),
    ("sam", [], 2),   # the gradient at w, then at the perturbed point: two, by design
])
def test_one_gradient_all_reduce_per_step(devices, method, overrides, expected):
  """The compiled data-parallel step reduces all gradients (and metrics) in one all-reduce
  per gradient evaluation (XLA combines the per-parameter reductions)."""
  c = apply_overrides(default_config(), [f"method.name={method}", "model.hidden_dim=16",
                                         "model.feature_dim=8"] + overrides)
  mods = as_modalities({"pix": (240,), "fou": (76,)})
  parts = build_parts(c, mods, 10, task="classification", steps_per_epoch=20, total_steps=100)
  model, step_fn = parts.model, parts.step_fn
  mesh = shd.make_mesh(-1, 1, devices)
  params = jax.device_put(parts.params, shd.param_sharding(mesh, parts.params))
  state = jax.jit(parts.init_state)(params)
  state_sh = jax.tree.map(lambda x: x.sharding, state)
  rng = np.random.default_rng(0)
  batch = {n: rng.normal(size=(32,) + m.shape).astype(np.float32) for n, m in zip(model.names, mods)}
  batch["label"] = rng.integers(0, 10, 32).astype(np.int32)
  batch = shd.global_batch(mesh, batch)
  step = jax.jit(step_fn, in_shardings=(state_sh, shd.batch_sharding(mesh)),
                 out_shardings=(state_sh, shd.replicated(mesh)), donate_argnums=0)
  hlo = step.lower(state, batch).compile().as_text()
  collectives = re.findall(r"= \S.*? (all-reduce|all-reduce-start|reduce-scatter|all-gather|"
                           r"all-gather-start|collective-permute|all-to-all)\(", hlo)
  assert collectives == ["all-reduce"] * expected, collectives
