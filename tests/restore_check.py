"""Shared check: a finished run's workdir rebuilds (`restore_run`) to the model it reported."""
import pytest

from mmbal.train.evaluate import evaluate
from mmbal.train.restore import restore_run


def assert_restores(workdir):
  """Restores ``workdir`` and re-scores the test split: the same score as its results.json."""
  run = restore_run(workdir)
  assert run.finished and run.selected == "best"
  again = evaluate(run.run, run.params, "test")
  reported = run.results["test"]["fused"]["accuracy"]
  assert again["fused"]["accuracy"] == pytest.approx(reported, abs=1e-6)
  assert again["count"] == run.results["test"]["count"]
  return run
