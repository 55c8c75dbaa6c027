"""The modality-bias experiments: summaries on hand-written histories, and a tiny end-to-end
run of each experiment (two conditions, two seeds) that writes its report."""
import json

import pytest

from experiments.mllm_bias import report
from experiments.mllm_bias.common import Budget, Setting
from experiments.mllm_bias.factors import Claim, EXPERIMENTS, early_step, judge
from experiments.mllm_bias.run import main


def history(ood):
  return [dict(step=50 * (i + 1), ood_accuracy=v) for i, v in enumerate(ood)]


def test_escape_step_and_summary():
  assert report.escape_step(history([0.0, 0.3, 0.5, 0.9])) == 150
  assert report.escape_step(history([0.0, 0.49])) is None
  runs = [history([0.0, 0.6]), history([0.6, 0.9]), history([0.1, 0.2])]
  # escaped runs: 100 and 50 -> mean 75, std 25; one never escaped
  assert report.escape_summary(runs) == "75 ± 25 (2/3 escaped)"
  assert report.escape_summary([history([0.0])]) == "never (0/1 escaped)"


def test_judge_censors_never_and_tests_over_seeds():
  budget = Budget(steps=200, eval_every=50)
  fast = [history([0.0, 0.6, 0.9, 1.0]), history([0.0, 0.7, 0.9, 1.0])]   # T = 100, 100
  stuck = [history([0.0, 0.0, 0.1, 0.2]), history([0.0, 0.1, 0.2, 0.3])]  # censored at 200
  # Log-rank by hand: one escape time (100) with 4 at risk, 2 of them fast, 2 escapes, both
  # fast: E = 2 * 2/4 = 1, V = 2*2*2*2 / (16*3) = 1/3, chi2 = (2 - 1)^2 / V = 3, p = 0.0833.
  j = judge(Claim("fast beats stuck", "fast", "stuck"), dict(fast=fast, stuck=stuck), budget)
  assert (j.better, j.worse, j.test) == ("median 100", "median > 200", "log-rank")
  assert j.p_value == pytest.approx(0.08326, abs=1e-4) and j.as_claimed
  reverse = judge(Claim("reverse", "stuck", "fast"), dict(fast=fast, stuck=stuck), budget)
  assert not reverse.as_claimed and reverse.p_value == pytest.approx(j.p_value)
  # A metric at the end: 1.0, 1.0 vs 0.2, 0.3; exact Mann-Whitney U = 4 of 4 pairs, and of the
  # 6 equally likely rank splits one gives U = 4 and one U = 0: two-sided p = 2/6.
  end = judge(Claim("end", "fast", "stuck", "ood_accuracy"), dict(fast=fast, stuck=stuck), budget)
  assert (end.better, end.worse, end.test) == ("mean 1.00", "mean 0.25", "Mann-Whitney U")
  assert end.p_value == pytest.approx(1 / 3) and end.as_claimed
  # Overlapping seeds: U = 3 of 4, P(U >= 3) = 2/6, two-sided 4/6.
  noisy = dict(a=[history([0.25]), history([0.75])], b=[history([0.2]), history([0.7])])
  assert judge(Claim("noisy", "a", "b", "ood_accuracy"), noisy, Budget(steps=50)).p_value == \
      pytest.approx(2 / 3)
  # One run a side (a report written after the first seed): not testable, p = 1, no error.
  one = judge(Claim("one", "fast", "stuck", "ood_accuracy"), dict(fast=fast[:1], stuck=stuck[:1]),
              budget)
  assert (one.p_value, one.as_claimed, one.test) == (1.0, False, "Mann-Whitney U: too few runs")


def test_compute_matched_escape_scales_each_condition_by_its_step_cost():
  # "costly" escapes at step 100 but costs 3 TFLOP a step (300 TFLOP); "cheap" at step 150 for
  # 1 TFLOP a step (150 TFLOP). In steps costly is first; in compute cheap is. Log-rank on
  # TFLOP by hand: at 150, 4 at risk (2 costly), 2 escapes, both cheap: E_costly = 1,
  # V = 2 * 1/2 * 1/2 * 2/3 = 1/3; at 300 only costly is at risk (V = 0): O = 2, E = 1 + 2 = 3;
  # chi2 = (2 - 3)^2 / (1/3) = 3, p = 0.0833, against the claim.
  runs = dict(costly=[history([0.0, 0.9, 1.0]), history([0.0, 0.8, 1.0])],
              cheap=[history([0.0, 0.2, 0.9]), history([0.0, 0.1, 0.7])])
  budget, costs = Budget(steps=150, eval_every=50), dict(costly=3e12, cheap=1e12)
  steps = judge(Claim("costly first", "costly", "cheap"), runs, budget, costs)
  assert steps.as_claimed and steps.p_value == pytest.approx(0.08326, abs=1e-4)
  compute = judge(Claim("costly first", "costly", "cheap", "escape_compute"), runs, budget, costs)
  assert (compute.better, compute.worse) == ("median 300 TFLOP", "median 150 TFLOP")
  assert not compute.as_claimed and compute.p_value == pytest.approx(0.08326, abs=1e-4)


def test_early_step_is_the_evaluation_nearest_a_third():
  assert early_step(Budget(steps=600, eval_every=50)) == 200
  assert early_step(Budget(steps=20, eval_every=10)) == 10


def test_settings_reject_unknown_choices():
  with pytest.raises(ValueError, match="lm must be one of"):
    Setting("x", lm="huge")
  with pytest.raises(ValueError, match="unknown objectives"):
    Setting("x", objectives=("dpo",))


def test_every_claim_names_conditions_of_its_experiment():
  for build in EXPERIMENTS.values():
    experiment = build()
    names = {c.name for c in experiment.conditions}
    assert len(names) == len(experiment.conditions)
    for claim in experiment.claims:
      assert {claim.better, claim.worse} <= names, claim.text
    for _, group in experiment.groups:
      assert set(group) <= names


@pytest.mark.parametrize("name,only", [
    ("data", "clean|duplicated"),
    ("backbones", r"^random LM \+ random vision|^text-pretrained LM, frozen \+ random vision"),
    ("objectives", r"^next-token|^\+ OGM-GE \(mmbal"),
])
def test_tiny_experiment_writes_its_report(tmp_path, name, only):
  main([name, "--tiny", "--seeds", "0", "1", "--out", str(tmp_path), "--only", only])
  folder = tmp_path / name
  text = (folder / "report.md").read_text()
  assert "inverted-prior" in text and "blind=\"blank\"" in text
  assert "## Claims" in text and "reproduced" in text
  assert list(folder.glob("curves_*.png"))
  results = json.loads((folder / "results.json").read_text())
  assert len(results["conditions"]) == 2
  for histories in results["conditions"].values():
    assert len(histories) == 2                                  # two seeds
    last = histories[0][-1]
    assert last["step"] == Budget.tiny().steps
    assert 0.0 <= last["ood_accuracy"] <= 1.0 and last["id_blind_kl"] >= 0.0
    assert 0.0 <= last["switching_point"] <= 1.0          # the ambiguous-evidence probe
  if name == "objectives":   # the compute-matched claims: T_escape x XLA's FLOPs per step
    flops = json.loads((folder / "step_flops.json").read_text())["flops"]
    assert set(flops) == set(results["conditions"]) and min(flops.values()) > 0
    assert "T_escape in TFLOP" in text
  # A second invocation loads the saved runs instead of training again.
  runs = sorted((folder / "runs").glob("*.json"))
  stamps = [p.stat().st_mtime_ns for p in runs]
  main([name, "--tiny", "--seeds", "0", "1", "--out", str(tmp_path), "--only", only])
  assert [p.stat().st_mtime_ns for p in runs] == stamps


def test_headline_figure_from_saved_results(tmp_path):
  from experiments.mllm_bias.headline import main as headline
  folder = tmp_path / "objectives"
  folder.mkdir()
  runs = [history([0.0, 0.4, 0.9]), history([0.1, 0.6, 1.0])]
  (folder / "results.json").write_text(json.dumps({"conditions": {"next-token CE": runs}}))
  headline(["--out", str(tmp_path)])          # the other two experiments are "not run"
  assert (tmp_path / "headline.png").stat().st_size > 0
