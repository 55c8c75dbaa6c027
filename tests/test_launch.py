"""The launchers in launch/: shell syntax, the TPU VM launcher's gcloud commands (dry run, with
the remote command run through a real POSIX shell), the SLURM per-task command's GPU choice, and
a real 2-process run that finds its peers through JAX's SLURM auto-detection on localhost."""
import json
import os
import pathlib
import random
import re
import shlex
import socket
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent
LAUNCH = ROOT / "launch"
GCLOUD_TPU = ["gcloud", "compute", "tpus", "tpu-vm"]
# Overrides that a careless launcher would break: a comma, spaces, quotes, $ and ;.
TRAIN_ARGS = ["--config", "configs/mfeat/joint.py", "--workdir", "/mnt/nfs/runs/a b",
              "data.modalities=pix,fou", "model.fusion=gated", "note=it's \"q\" $HOME; exit 3"]
TINY = ["train.num_steps=4", "train.eval_every_steps=4", "train.batch_size=32", "eval.batch_size=64",
        "model.hidden_dim=16", "model.feature_dim=8", "eval.linear_probe=False", "log.progress=False"]


@pytest.mark.parametrize("script", ["local_multiprocess.sh", "setup_venv.sh", "tpu_vm.sh",
                                    "slurm.sbatch"])
def test_shell_syntax(script):
  subprocess.run(["bash", "-n", str(LAUNCH / script)], check=True)


def _tpu_dry_run(*args):
  out = subprocess.run(["bash", str(LAUNCH / "tpu_vm.sh"), *args], env=dict(os.environ, DRY_RUN="1"),
                       capture_output=True, text=True, check=True, timeout=60).stdout
  return [shlex.split(line) for line in out.splitlines() if line and not line.startswith("#")]


def _remote_argv(command, tmp_path):
  """Runs a worker's --command in `sh` with stand-ins for the venv setup and python; the argv
  python received."""
  home = tmp_path / "home"
  (home / "mmbal" / "launch").mkdir(parents=True)
  (home / "mmbal" / "launch" / "setup_venv.sh").write_text("echo ~/mmbal_venv/bin/python\n")
  python = home / "mmbal_venv" / "bin" / "python"
  python.parent.mkdir(parents=True)
  python.write_text(f"#!{sys.executable}\nimport json, sys\nprint(json.dumps(sys.argv[1:]))\n")
  python.chmod(0o755)
  out = subprocess.run(["sh", "-c", command], env=dict(os.environ, HOME=str(home)),
                       capture_output=True, text=True, check=True, timeout=60).stdout
  return json.loads(out.strip().splitlines()[-1])


def test_tpu_vm_dry_run_creates_copies_and_runs_on_every_worker(tmp_path):
  create, scp, ssh = _tpu_dry_run("my-pod", "us-central2-b", "--create", "v4-32", "--", *TRAIN_ARGS)
  assert create == GCLOUD_TPU + ["create", "my-pod", "--zone=us-central2-b",
                                 "--accelerator-type=v4-32", "--version=tpu-ubuntu2204-base"]
  assert scp[:6] == GCLOUD_TPU + ["scp", "--recurse"] and scp[6].endswith("/mmbal")
  assert scp[7:] == ["my-pod:", "--zone=us-central2-b", "--worker=all"]
  assert ssh[:7] == GCLOUD_TPU + ["ssh", "my-pod", "--zone=us-central2-b"]
  assert ssh[7] == "--worker=all" and ssh[8].startswith("--command=") and len(ssh) == 9
  command = ssh[8].removeprefix("--command=")
  assert "launch/setup_venv.sh tpu" in command and "--coordinator" not in command
  # The train args reach python intact: nothing split, expanded or executed on the worker.
  argv = _remote_argv(command, tmp_path)
  assert argv == ["-m", "mmbal.train.cli", "train", "--distributed", *TRAIN_ARGS]


def test_tpu_vm_dry_run_with_a_shared_data_dir_prepares_it_on_worker_0(tmp_path):
  scp, prepare, train = _tpu_dry_run("my-pod", "europe-west4-a", "--data-dir", "/mnt/nfs/tfds",
                                     "--", *TRAIN_ARGS)
  assert scp[4:6] == ["scp", "--recurse"] and "--worker=all" in scp
  assert prepare[4:8] == ["ssh", "my-pod", "--zone=europe-west4-a", "--worker=0"]
  assert train[4:8] == ["ssh", "my-pod", "--zone=europe-west4-a", "--worker=all"]
  args = ["data.data_dir=/mnt/nfs/tfds", *TRAIN_ARGS]
  assert _remote_argv(prepare[8].removeprefix("--command="), tmp_path / "p") == [
      "launch/prepare_data.py", *args]
  assert _remote_argv(train[8].removeprefix("--command="), tmp_path / "t") == [
      "-m", "mmbal.train.cli", "train", "--distributed", *args]


def test_tpu_vm_usage_errors():
  for args in ([], ["only-name"], ["n", "z", "--create"]):
    run = subprocess.run(["bash", str(LAUNCH / "tpu_vm.sh"), *args], env=dict(os.environ, DRY_RUN="1"),
                         capture_output=True, text=True, timeout=60)
    assert run.returncode == 2 and "tpu_vm.sh NAME ZONE" in run.stdout, args


def test_tpu_vm_train_args_may_follow_without_separator():
  """`launch/tpu_vm.sh NAME ZONE --config ...`: the first unknown option starts the train args."""
  run = subprocess.run(["bash", str(LAUNCH / "tpu_vm.sh"), "n", "z", "--config", "c.py",
                        "train.num_steps=5"], env=dict(os.environ, DRY_RUN="1"),
                       capture_output=True, text=True, timeout=60)
  assert run.returncode == 0, run.stderr
  assert run.stdout.strip().splitlines()[-1].endswith(
      "train --distributed --config c.py train.num_steps=5'")


def _slurm_task():
  """The per-task command of launch/slurm.sbatch (what srun runs in every task)."""
  text = (LAUNCH / "slurm.sbatch").read_text()
  return re.search(r"<<'END_TASK'.*?\n(.*?\n)END_TASK\n", text, re.S).group(1)


def _clean_env(**extra):
  """No SLURM_ or JAX_ settings but the suite's compilation cache (conftest.py)."""
  cache = ("JAX_COMPILATION_CACHE_DIR", "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS")
  env = {k: v for k, v in os.environ.items()
         if not k.startswith(("SLURM_", "JAX_")) or k in cache}
  return dict(env, **extra)


@pytest.mark.parametrize("gpus_per_task,visible,preset,expected", [
    ("1", "3", None, "0"),                # --gpus-per-task=1: the task's one GPU is device 0
    ("2", "4,5", None, "0,1"),            # two bound GPUs
    (None, "0,1,2,3", None, "unset"),     # every task sees all GPUs: JAX takes SLURM_LOCALID
    ("1", "3", "0", "0"),                 # the user's JAX_LOCAL_DEVICE_IDS wins
])
def test_slurm_task_local_device_ids(tmp_path, gpus_per_task, visible, preset, expected):
  python = tmp_path / "python"
  python.write_text('#!/bin/sh\nprintf "%s\\n" "${JAX_LOCAL_DEVICE_IDS-unset}" "$@"\n')
  python.chmod(0o755)
  env = _clean_env(MMBAL_DIR=str(ROOT), MMBAL_PYTHON=str(python), CUDA_VISIBLE_DEVICES=visible,
                   SLURM_LOCALID="1")
  if gpus_per_task:
    env["SLURM_GPUS_PER_TASK"] = gpus_per_task
  if preset:
    env["JAX_LOCAL_DEVICE_IDS"] = preset
  out = subprocess.run(["bash", "-c", _slurm_task(), "mmbal-task", *TRAIN_ARGS], env=env,
                       capture_output=True, text=True, check=True, timeout=60).stdout
  assert out.splitlines() == [expected, "-m", "mmbal.train.cli", "train", "--distributed",
                              *TRAIN_ARGS]


def _slurm_job_id():
  """A job id whose derived coordinator port (61440 + id % 4096, JAX's slurm_cluster.py) is free."""
  for _ in range(200):
    port = random.randint(61440, 65535)
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
      try:
        s.bind(("", port))
      except OSError:
        continue
    return random.randint(1, 999) * 4096 + port - 61440
  pytest.skip("no free port in 61440-65535")


def test_slurm_autodetection_on_localhost(tfds_dir, tmp_path):
  """Two processes started as srun would start them (the sbatch's per-task command, a simulated
  SLURM environment, no coordinator flags) find each other and train to the end."""
  assert socket.gethostbyname("localhost")
  workdir = tmp_path / "run"
  args = ["--workdir", str(workdir), f"data.data_dir={tfds_dir}", *TINY]
  env = _clean_env(PYTHONPATH=str(ROOT), MMBAL_DIR=str(ROOT), MMBAL_PYTHON=sys.executable,
                   JAX_PLATFORMS="cpu", JAX_NUM_CPU_DEVICES="2")
  # As slurm.sbatch does: the data set is prepared once, before the tasks start.
  subprocess.run([sys.executable, str(LAUNCH / "prepare_data.py"), *args], env=env, check=True,
                 capture_output=True, timeout=120)
  slurm = dict(SLURM_JOB_ID=str(_slurm_job_id()), SLURM_STEP_NODELIST="localhost", SLURM_NTASKS="2")
  procs, logs = [], []
  try:
    for i in range(2):
      log = tmp_path / f"task{i}.log"
      logs.append(log)
      with open(log, "w") as f:
        procs.append(subprocess.Popen(
            ["bash", "-c", _slurm_task(), "mmbal-task", *args], stdout=f, stderr=subprocess.STDOUT,
            env=dict(env, **slurm, SLURM_PROCID=str(i), SLURM_LOCALID=str(i))))
    codes = [p.wait(timeout=180) for p in procs]
  finally:
    for p in procs:
      if p.poll() is None:
        p.kill()
        p.wait()
  texts = [log.read_text() for log in logs]
  assert codes == [0, 0], "\n".join(t[-3000:] for t in texts)
  for i, text in enumerate(texts):
    assert re.search(rf"process {i} of 2, 2 local / 4 global devices", text), text[-3000:]
  results = json.loads((workdir / "results.json").read_text())
  assert results["steps"] == 4 and 0.0 <= results["test"]["fused"]["accuracy"] <= 1.0
