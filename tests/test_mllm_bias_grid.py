"""The prior x difficulty x capacity grid: a tiny run end to end, and its analysis by hand."""
from experiments.mllm_bias import grid
from experiments.mllm_bias.common import Budget


def _history(escape_at, steps=(10, 20)):
  return [dict(step=s, ood_accuracy=1.0 if escape_at is not None and s >= escape_at else 0.0)
          for s in steps]


def test_analysis_censors_runs_that_never_escape_and_flags_too_hard_cells():
  budget = Budget.tiny()   # 20 steps, evaluated at 10 and 20
  clean, hard = "clean", "pixel noise 0.3"
  results = {grid.cell_name(grid.NO_PRIOR, clean): [_history(10)] * 3,
             grid.cell_name(0.8, clean): [_history(20), _history(20), _history(None)],
             grid.cell_name(grid.NO_PRIOR, hard): [_history(None)] * 3,
             grid.cell_name(0.8, hard): [_history(None)] * 3}
  rows = grid.analyse(results, budget, "1-block LM", (clean, hard), (grid.NO_PRIOR, 0.8))
  first, second = rows
  # Prior 0.8: escapes at 20, 20 and never (censored at 20): KM median 20; control median 10.
  assert (first["median"], first["control_median"], first["delay_steps"]) == (20.0, 10.0, 10.0)
  assert first["escaped"] == 2 and not first["too_hard"] and first["p_value"] < 0.05
  assert first["delay_flops"] > 0
  # Without a prior the noisy images are never learned: no delay can be blamed on the prior.
  assert second["too_hard"] and second["delay_steps"] is None
  assert grid.holm([0.01, 0.04, 0.03]) == [0.03, 0.06, 0.06]


def test_tiny_grid_runs_resumes_and_reports(tmp_path):
  args = ["--tiny", "--out", str(tmp_path), "--seeds", "0", "--capacities", "1-block LM",
          "--difficulties", "clean"]
  grid.main(args)
  report = (tmp_path / "grid" / "report.md").read_text()
  assert "| 1-block LM | clean | 0.95 |" in report and "log-rank p (Holm)" in report
  runs = sorted((tmp_path / "grid" / "1-block-lm" / "runs").glob("*.json"))
  assert len(runs) == len(grid.PRIORS)
  stamp = [r.stat().st_mtime_ns for r in runs]
  grid.main(args)   # everything saved: nothing re-runs
  assert [r.stat().st_mtime_ns for r in runs] == stamp
