"""Shared check: a finished run's workdir rebuilds (`restore_run`) to the model it reported."""
import jax
import numpy as np
import pytest

from mmbal.train.evaluate import evaluate
from mmbal.train.restore import restore_run


def assert_restores(workdir, best_params=None):
  """Restores ``workdir`` and re-scores the test split: the same score as its results.json.
  With ``best_params`` (the trained run's), compares the restored parameters to them instead
  (bitwise; no evaluation to compile)."""
  run = restore_run(workdir)
  assert run.finished and run.selected == "best"
  if best_params is not None:
    jax.tree.map(lambda a, b: np.testing.assert_array_equal(np.asarray(a), np.asarray(b)),
                 run.params, best_params)
    return run
  again = evaluate(run.run, run.params, "test")
  reported = run.results["test"]["fused"]["accuracy"]
  assert again["fused"]["accuracy"] == pytest.approx(reported, abs=1e-6)
  assert again["count"] == run.results["test"]["count"]
  return run
