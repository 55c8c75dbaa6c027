"""POPE-style yes/no probing scores (Li et al., "Evaluating Object Hallucination in Large
Vision-Language Models", EMNLP 2023).

Every question asks whether something is in the image ("is there a <object> ?"), half of
them with answer yes; a model that follows a language prior instead of the image shows it as
a yes-ratio far from the data's and as a precision / recall imbalance.
"""
from __future__ import annotations

from typing import NamedTuple

import numpy as np


class PopeScores(NamedTuple):
  count: int
  accuracy: float
  precision: float | None   # of "yes" (None when the model never says yes)
  recall: float | None      # of "yes" (None when no answer is yes)
  f1: float | None
  yes_ratio: float          # share of "yes" predictions (0.5 for a balanced, faithful model)
  true_yes_ratio: float     # share of "yes" answers in the data


def pope_scores(predicted_yes, truly_yes, mask=None) -> PopeScores:
  """Accuracy, precision, recall, F1 (of "yes") and the yes-ratio of yes/no predictions.

  ``predicted_yes`` / ``truly_yes``: ``[N]`` bools (e.g. ``logits.argmax(-1) == yes_index``
  from the yes/no answer logits); ``mask``: ``[N]`` bools, False rows ignored.
  """
  pred, true = np.asarray(predicted_yes), np.asarray(truly_yes)
  if pred.ndim != 1 or pred.shape != true.shape or pred.dtype != bool or true.dtype != bool:
    raise ValueError(f"pope_scores: expected two [N] bool arrays, got {pred.dtype} "
                     f"{pred.shape} and {true.dtype} {true.shape}")
  real = np.ones(pred.shape, bool) if mask is None else np.asarray(mask).astype(bool)
  if real.shape != pred.shape or not real.any():
    raise ValueError(f"pope_scores: mask must be [N={pred.size}] with at least one real row")
  pred, true = pred[real], true[real]
  tp, fp, fn = (pred & true).sum(), (pred & ~true).sum(), (~pred & true).sum()
  precision = tp / (tp + fp) if tp + fp else None
  recall = tp / (tp + fn) if tp + fn else None
  f1 = (2 * precision * recall / (precision + recall)
        if precision is not None and recall is not None and precision + recall > 0 else None)
  return PopeScores(int(real.sum()), float((pred == true).mean()),
                    None if precision is None else float(precision),
                    None if recall is None else float(recall),
                    None if f1 is None else float(f1), float(pred.mean()), float(true.mean()))
