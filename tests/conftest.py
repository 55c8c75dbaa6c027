"""Tests run on 8 simulated CPU devices (set before jax initialises its backend)."""
import os
import subprocess
import sys
import tempfile

os.environ.setdefault("JAX_NUM_CPU_DEVICES", "8")
os.environ.setdefault("JAX_PLATFORMS", "cpu")
# One persistent compilation cache for the whole run, shared by the xdist workers and every
# subprocess the tests start (trainers, multi-process runs): a program compiled by one test is
# loaded, not recompiled, by the next that builds the same one. Every compile is kept, not only
# those over JAX's default 1 s: most are small (eager ops of model init, steps at test sizes)
# and a subprocess repeating them loads each in milliseconds.
os.environ.setdefault("JAX_COMPILATION_CACHE_DIR", os.path.join(
    tempfile.gettempdir(), "mmbal-tests-jax-cache-" + os.environ.get("PYTEST_XDIST_TESTRUNUID",
                                                                    str(os.getpid()))))
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0")

# The suite's time is mostly XLA compiling small programs: LLVM's optimisation of the generated
# CPU code is skipped (compiles ~30% faster; the same results up to float rounding: on jaxlib
# 0.10 the quoted tables come out identical, on 0.12 one probe accuracy moved by two
# validation examples, so tests/test_quoted_tables.py runs its command with XLA's defaults;
# only the benchmarks care about generated-code speed, and they run outside the suite).
# XLA:CPU's newer fusion emitters are also off where the flag still exists (jaxlib 0.10; 0.12
# dropped it, and XLA refuses to start on an unknown flag, so it is probed once, in a
# subprocess, by the process that sets the flags; xdist workers and subprocesses inherit
# them): the legacy emitters compile the same programs ~35% faster (LNLN's training step
# 7.0 -> 4.2 s) and computed identical losses where measured.


def _xla_accepts(flag: str) -> bool:
  probe = subprocess.run([sys.executable, "-c", "import jax; jax.devices()"], check=False,
                         capture_output=True, env={**os.environ, "XLA_FLAGS": flag,
                                                   "JAX_PLATFORMS": "cpu"})
  return probe.returncode == 0


if "xla_backend_optimization_level" not in os.environ.get("XLA_FLAGS", ""):
  _FLAGS = ["--xla_backend_optimization_level=0"]
  if _xla_accepts("--xla_cpu_use_fusion_emitters=false"):
    _FLAGS.append("--xla_cpu_use_fusion_emitters=false")
  os.environ["XLA_FLAGS"] = " ".join([os.environ.get("XLA_FLAGS", "")] + _FLAGS).strip()

import jax  # noqa: E402
import pytest  # noqa: E402

jax.config.update("jax_num_cpu_devices", int(os.environ["JAX_NUM_CPU_DEVICES"]))


@pytest.fixture(scope="session")
def devices():
  assert len(jax.devices()) == 8, "tests expect 8 simulated CPU devices"
  return jax.devices()


@pytest.fixture(scope="session")
def tfds_dir(tmp_path_factory):
  """A TFDS data dir shared by the session (data sets are built into it on first use)."""
  return str(tmp_path_factory.mktemp("tfds"))


# The modules holding the slowest tests (over 20 s each on 2 idle cores) come first, so that
# under `-n 2 --dist worksteal` (pytest.ini) the run does not end with one worker alone on a
# long test while the other idles. Whole modules move, in their own order: module-scoped
# fixtures are still built once per worker.
_SLOW_FIRST = ("test_benchmarks", "test_distributed", "test_mmsa", "test_readme", "test_launch",
               "test_quoted_tables", "test_diagnose", "test_mllm_bias_experiments",
               "test_notebooks", "test_train", "test_grads", "test_arrays")


def pytest_collection_modifyitems(items):
  order = {name: i for i, name in enumerate(_SLOW_FIRST)}
  items.sort(key=lambda item: order.get(item.path.stem, len(order)))   # stable
