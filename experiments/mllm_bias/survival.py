"""Time-to-event analysis of T_escape: runs that never escape are censored, not dropped.

A run escapes the language prior at its first evaluation with OOD accuracy >= 0.5; a run
that has not escaped by the end of its budget is *censored* at the budget: we know only that
its T_escape is later. Means over the escaped runs (the old reports) are biased towards fast
runs; the Kaplan–Meier estimate and the log-rank test use every run.
"""
from __future__ import annotations

import math
from typing import NamedTuple, Sequence

import numpy as np


class Survival(NamedTuple):
  """The Kaplan–Meier step function: ``survival[i]`` = P(T_escape > times[i])."""
  times: np.ndarray      # distinct event times, ascending
  survival: np.ndarray   # S just after each event time
  at_risk: np.ndarray    # runs not yet escaped nor censored just before each time
  events: np.ndarray     # escapes at each time


def _check(times, escaped, name="times") -> tuple[np.ndarray, np.ndarray]:
  t, e = np.asarray(times, np.float64), np.asarray(escaped, bool)
  if t.ndim != 1 or t.shape != e.shape or not t.size:
    raise ValueError(f"{name}: expected matching non-empty 1-D times and escaped flags, got "
                     f"shapes {t.shape} and {e.shape}")
  if not np.isfinite(t).all() or (t < 0).any():
    raise ValueError(f"{name}: times must be finite and >= 0 (censored runs at their budget)")
  return t, e


def kaplan_meier(times: Sequence[float], escaped: Sequence[bool]) -> Survival:
  """``S(t) = prod_{t_j <= t} (1 - d_j / n_j)`` over the distinct escape times ``t_j``, with
  ``d_j`` escapes at ``t_j`` and ``n_j`` runs at risk (not escaped, not censored before)."""
  t, e = _check(times, escaped)
  event_times = np.unique(t[e])
  at_risk = np.array([(t >= u).sum() for u in event_times], np.float64)
  events = np.array([(e & (t == u)).sum() for u in event_times], np.float64)
  return Survival(event_times, np.cumprod(1.0 - events / at_risk), at_risk, events)


def median_time(km: Survival) -> float | None:
  """The first time at which S <= 0.5 (half the runs have escaped); None if never."""
  below = np.nonzero(km.survival <= 0.5)[0]
  return float(km.times[below[0]]) if below.size else None


def km_median(times, escaped) -> float | None:
  """`median_time` of the Kaplan–Meier curve of these runs."""
  return median_time(kaplan_meier(times, escaped))


def survival_at(km: Survival, time: float) -> float:
  """S(time): the share of runs still locked in after ``time``."""
  passed = km.times <= time
  return float(km.survival[passed][-1]) if passed.any() else 1.0


class LogRank(NamedTuple):
  chi2: float
  p_value: float        # chi-square with 1 degree of freedom
  observed_a: float     # escapes in group a
  expected_a: float     # escapes expected in group a if both groups escaped alike


def log_rank(times_a, escaped_a, times_b, escaped_b) -> LogRank:
  """Two-sided log-rank (Mantel–Cox) test that two groups escape at the same rate.

  At each distinct escape time of the pooled runs, with ``n`` at risk (``n_a`` in a) and ``d``
  escapes (``d_a`` in a): ``E_a += d n_a / n`` and ``V += n_a n_b d (n - d) / (n^2 (n - 1))``;
  ``chi2 = (O_a - E_a)^2 / V``. Censored runs count as at risk up to their censoring time.
  """
  ta, ea = _check(times_a, escaped_a, "group a")
  tb, eb = _check(times_b, escaped_b, "group b")
  t, e = np.concatenate([ta, tb]), np.concatenate([ea, eb])
  in_a = np.arange(t.size) < ta.size
  observed = expected = variance = 0.0
  for u in np.unique(t[e]):
    risk = t >= u
    n, n_a = risk.sum(), (risk & in_a).sum()
    d, d_a = (e & (t == u)).sum(), (e & (t == u) & in_a).sum()
    observed += d_a
    expected += d * n_a / n
    if n > 1:
      variance += n_a * (n - n_a) * d * (n - d) / (n * n * (n - 1))
  if variance <= 0:
    return LogRank(0.0, 1.0, float(observed), float(expected))
  chi2 = (observed - expected) ** 2 / variance
  return LogRank(float(chi2), math.erfc(math.sqrt(chi2 / 2)), float(observed), float(expected))


def holm(p_values: list[float]) -> list[float]:
  """Holm–Bonferroni adjusted p-values (same order as given)."""
  order = np.argsort(p_values)
  adjusted, running = [0.0] * len(p_values), 0.0
  for rank, i in enumerate(order):
    running = max(running, min(1.0, (len(p_values) - rank) * p_values[i]))
    adjusted[i] = running
  return adjusted
