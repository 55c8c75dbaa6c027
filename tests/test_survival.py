"""Kaplan–Meier and the log-rank test of T_escape, against hand-computed numbers."""
import math

import numpy as np
import pytest

from experiments.mllm_bias import survival


def test_kaplan_meier_censors_runs_that_never_escape():
  # Escapes at 2 and 3; the run at 4 never escaped within its budget (censored).
  km = survival.kaplan_meier([2, 3, 4], [True, True, False])
  np.testing.assert_array_equal(km.times, [2, 3])
  np.testing.assert_allclose(km.survival, [2 / 3, 1 / 3])   # 1 - 1/3, then (2/3)(1 - 1/2)
  np.testing.assert_array_equal(km.at_risk, [3, 2])
  assert survival.median_time(km) == 3.0
  assert survival.survival_at(km, 1) == 1.0 and survival.survival_at(km, 10) == pytest.approx(1 / 3)
  # Dropping the censored run (the old reports) would say every run escapes by 3.
  assert survival.median_time(survival.kaplan_meier([5, 5], [False, False])) is None


def test_log_rank_by_hand():
  # a: escapes at 1, 2, 3; b: escapes at 2, 3 and one censored at 4. At the escape times:
  # t=1: n=6 (3 in a), d=1 -> E_a 0.5,  V 3*3*1*5 / (36*5) = 0.25
  # t=2: n=5 (2 in a), d=2 -> E_a 0.8,  V 2*3*2*3 / (25*4) = 0.36
  # t=3: n=3 (1 in a), d=2 -> E_a 2/3,  V 1*2*2*1 / (9*2)  = 2/9
  r = survival.log_rank([1, 2, 3], [True] * 3, [2, 3, 4], [True, True, False])
  expected, variance = 0.5 + 0.8 + 2 / 3, 0.25 + 0.36 + 2 / 9
  chi2 = (3 - expected) ** 2 / variance
  assert r.observed_a == 3 and r.expected_a == pytest.approx(expected)
  assert r.chi2 == pytest.approx(chi2)
  assert r.p_value == pytest.approx(math.erfc(math.sqrt(chi2 / 2)))   # chi-square, 1 df
  # The test is symmetric and identical groups give chi2 = 0.
  assert survival.log_rank([2, 3, 4], [True, True, False], [1, 2, 3], [True] * 3).chi2 == pytest.approx(chi2)
  assert survival.log_rank([1, 2], [True, True], [1, 2], [True, True]).p_value == pytest.approx(1.0)


def test_bad_times_are_refused():
  with pytest.raises(ValueError, match="matching non-empty"):
    survival.kaplan_meier([1, 2], [True])
  with pytest.raises(ValueError, match="finite and >= 0"):
    survival.log_rank([1, float("nan")], [True, True], [1], [True])
