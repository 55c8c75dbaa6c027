"""Tests run on 8 simulated CPU devices (set before jax initialises its backend)."""
import os
import tempfile

os.environ.setdefault("JAX_NUM_CPU_DEVICES", "8")
os.environ.setdefault("JAX_PLATFORMS", "cpu")
# One persistent compilation cache for the whole run, shared by the xdist workers and every
# subprocess the tests start (trainers, multi-process runs): a program compiled by one test is
# loaded, not recompiled, by the next that builds the same one (compiles over 1 s only).
os.environ.setdefault("JAX_COMPILATION_CACHE_DIR", os.path.join(
    tempfile.gettempdir(), "mmbal-tests-jax-cache-" + os.environ.get("PYTEST_XDIST_TESTRUNUID",
                                                                    str(os.getpid()))))

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
