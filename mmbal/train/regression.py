"""The standard metrics of the sentiment-regression benchmarks (MOSI, MOSEI, CH-SIMS).

Defined as MMSA's ``metricsTop.py`` computes them, on host arrays of a whole split:

* ``mosi`` bins (labels in [-3, 3]): MAE, Pearson ``corr``; ``acc2_has0`` / ``f1_has0``
  (negative vs non-negative, ``y >= 0``); ``acc2_non0`` / ``f1_non0`` (negative vs positive,
  examples with ``y == 0`` left out); ``acc5`` / ``acc7`` (predictions and labels clipped to
  [-2, 2] / [-3, 3] and rounded). F1 is the support-weighted F1 of the two classes.
* ``sims`` bins (labels in [-1, 1], predictions clipped to it; right-closed bins, so 0 is
  negative): ``acc2`` (boundary 0), ``acc3`` (-0.1, 0.1), ``acc5`` (-0.7, -0.1, 0.1, 0.7),
  ``f1`` (weighted, 2 classes), MAE, corr.

The trainer's ``accuracy`` for a regression run is the negative / non-negative accuracy
(``acc2_has0``; SIMS's ``acc2`` differs only for predictions or labels exactly 0): the score
used for model selection and for the utilisation rates. Methods that need a per-modality score use the same sign agreement.
"""
from __future__ import annotations

import numpy as np


def _weighted_f1(pred: np.ndarray, truth: np.ndarray) -> float:
  """Support-weighted F1 of a binary decision (scikit-learn's ``average="weighted"``)."""
  score = 0.0
  for positive in (False, True):
    tp = np.sum((pred == positive) & (truth == positive))
    fp = np.sum((pred == positive) & (truth != positive))
    fn = np.sum((pred != positive) & (truth == positive))
    f1 = 2 * tp / (2 * tp + fp + fn) if tp + fp + fn else 0.0
    score += f1 * np.sum(truth == positive)
  return float(score / max(len(truth), 1))


def _corr(pred, truth) -> float:
  if len(pred) < 2 or np.std(pred) == 0 or np.std(truth) == 0:
    return 0.0
  return float(np.corrcoef(pred, truth)[0, 1])


def regression_metrics(pred, truth, bins: str = "mosi") -> dict:
  """The benchmark's metrics of predictions ``pred`` against labels ``truth`` (1-D arrays)."""
  pred, truth = np.asarray(pred, np.float64), np.asarray(truth, np.float64)
  if bins == "sims":
    pred = np.clip(pred, -1.0, 1.0)
    classes = lambda x, edges: np.digitize(x, edges, right=True)   # (a, b] bins, as MMSA
    out = {f"acc{n}": float(np.mean(classes(pred, e) == classes(truth, e)))
           for n, e in ((2, [0.0]), (3, [-0.1, 0.1]), (5, [-0.7, -0.1, 0.1, 0.7]))}
    out["f1"] = _weighted_f1(pred > 0, truth > 0)
  else:
    non0 = truth != 0
    out = dict(acc2_has0=float(np.mean((pred >= 0) == (truth >= 0))),
               f1_has0=_weighted_f1(pred >= 0, truth >= 0),
               acc2_non0=float(np.mean((pred[non0] > 0) == (truth[non0] > 0))) if non0.any() else 0.0,
               f1_non0=_weighted_f1(pred[non0] > 0, truth[non0] > 0),
               acc5=float(np.mean(np.round(np.clip(pred, -2, 2)) == np.round(np.clip(truth, -2, 2)))),
               acc7=float(np.mean(np.round(np.clip(pred, -3, 3)) == np.round(np.clip(truth, -3, 3)))))
  out.update(mae=float(np.mean(np.abs(pred - truth))), corr=_corr(pred, truth))
  return out


def add_regression_metrics(report: dict, examples: list[dict], names, bins: str) -> dict:
  """Adds ``report["regression"]``: the metrics of the fused, each unimodal and each
  without-m prediction, from the eval step's per-example outputs of every batch."""
  cat = lambda key, axis: np.concatenate([np.asarray(e[key]) for e in examples], axis=axis)
  mask = cat("mask", 0) > 0
  truth = cat("label", 0)[mask]
  fused, unimodal, without = cat("pred_fused", 0), cat("pred_unimodal", 1), cat("pred_without", 1)
  report["regression"] = dict(
      fused=regression_metrics(fused[mask], truth, bins),
      unimodal={m: regression_metrics(unimodal[i][mask], truth, bins) for i, m in enumerate(names)},
      without={m: regression_metrics(without[i][mask], truth, bins) for i, m in enumerate(names)})
  return report
