"""The prior x difficulty x capacity grid: a tiny run end to end, and its analysis by hand."""
import json

import pytest

from experiments.mllm_bias import grid, survival
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
  assert survival.holm([0.01, 0.04, 0.03]) == [0.03, 0.06, 0.06]


def test_capacities_are_compared_cell_by_cell():
  budget = Budget.tiny()
  cell = grid.cell_name(0.8, "clean")
  small = {cell: [_history(10)] * 3}
  large = {cell: [_history(20)] * 3, grid.cell_name(0.5, "clean"): [_history(10)] * 3}
  (row,) = grid.compare_capacities({"1-block LM": small, "2-block LM": large}, budget, ("clean",))
  # Three escapes at 10 against three at 20: one event time with all six at risk (d = 3, all
  # small): E = 3 * 3/6 = 1.5, V = 3*3*3*3 / (36*5) = 0.45, chi2 = 1.5^2 / 0.45 = 5.
  assert (row["small_median"], row["large_median"]) == (10.0, 20.0)
  assert row["p_value"] == pytest.approx(0.02535, abs=1e-4) and row["p_holm"] == row["p_value"]
  assert grid.compare_capacities({"1-block LM": small}, budget, ("clean",)) == []


def test_tiny_grid_runs_resumes_and_reports(tmp_path):
  args = ["--tiny", "--out", str(tmp_path), "--seeds", "0", "--capacities", "1-block LM",
          "--difficulties", "clean"]
  grid.main(args)
  report = (tmp_path / "grid" / "report.md").read_text()
  assert "| 1-block LM | clean | 0.95 |" in report and "log-rank p (Holm)" in report
  rows = json.loads((tmp_path / "grid" / "results.json").read_text())["rows"]
  assert all(0 <= r["vcd_ood_accuracy"] <= 1 for r in rows)   # VCD recorded at each run's end
  runs = sorted((tmp_path / "grid" / "1-block-lm" / "runs").glob("*.json"))
  assert len(runs) == len(grid.PRIORS)
  # The difficulty's vision-only ceiling: one saved run per seed, a column of the report.
  runs += sorted((tmp_path / "grid" / "vision-only").glob("*.json"))
  assert len(runs) == len(grid.PRIORS) + 1
  ceiling = json.loads(runs[-1].read_text())["ood_accuracy"]
  assert 0 <= ceiling <= 1 and f"| {ceiling:.2f} |" in report
  stamp = [r.stat().st_mtime_ns for r in runs]
  grid.main(args)   # everything saved: nothing re-runs
  assert [r.stat().st_mtime_ns for r in runs] == stamp
  # Asking for another cell (here: none saved, report only) keeps the saved cells' rows.
  grid.main(args[:-1] + ["low contrast 0.6", "--report-only"])
  assert "| 1-block LM | clean | 0.95 |" in (tmp_path / "grid" / "report.md").read_text()


def test_ambiguous_evidence_probe_switching_points():
  import numpy as np
  from experiments.mllm_bias import ambiguous
  from mmbal.data import prior_vqa as pv
  config = pv.PriorVQAConfig(question_types=("color",), num_test=60)
  data = pv.generate(config, "test_ood")
  np.testing.assert_array_equal(ambiguous.blended_images(config, data, 1.0), data["image"])
  ids, colours = pv.vocabulary(config).answer_ids_for("color"), pv.palette(config)
  painted = np.abs(data["image"] - colours[np.searchsorted(ids, data["answer"])][:, None, None]
                   ).max(-1) < 1e-6
  prior_rgb = colours[np.searchsorted(ids, data["prior_answer"])]
  at_zero = ambiguous.blended_images(config, data, 0.0)
  np.testing.assert_allclose(at_zero[painted], np.repeat(prior_rgb, painted.sum((1, 2)), 0))

  def reader(bias):   # nearest palette colour of the object, the prior's distance scaled down
    def predict(images, d):
      rgb = np.stack([images[i][painted[i]].mean(0) for i in range(len(images))])
      dist = np.linalg.norm(rgb[:, None] - colours[None], axis=-1)
      dist[np.arange(len(rgb)), np.searchsorted(ids, d["prior_answer"])] *= bias
      return ids[dist.argmin(-1)]
    return predict

  weights = (0.0, 0.4, 0.6, 0.8, 1.0)
  fair = ambiguous.probe(reader(1.0), config, weights)
  assert fair["answers_prior"][0] == 1.0 and fair["answers_y"][-1] == 1.0
  # Between 0.4 (mostly prior) and 0.6 (mostly y; a few blends are nearest a third colour).
  assert 0.4 < fair["switching_point"] <= 0.6
  # Distances to the prior shrunk 4x: at w = 0.6 the blend is 0.6 d from p (0.15 d scaled) and
  # 0.4 d from y, so the prior still wins; the switch comes later.
  biased = ambiguous.probe(reader(0.25), config, weights)
  assert biased["answers_prior"][2] > 0.5 and biased["switching_point"] > 0.6
  assert ambiguous.switching_point([0, 1], [0, 0], [1, 1]) == 1.0   # never switches
