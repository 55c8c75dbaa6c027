"""Per-modality scores from one forward pass: the inputs of the balancing transforms.

All take stacked unimodal outputs ``[M, B, C]`` (modalities in model order) and return
``{modality: scalar}`` dicts, so a transform can look scores up by modality name.
"""
from __future__ import annotations

import itertools
import math
from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np


def _by_name(names: Sequence[str], values) -> dict:
  return {n: values[i] for i, n in enumerate(names)}


def true_class_confidence(unimodal_logits, labels, names: Sequence[str]) -> dict:
  """OGM-GE's ``s_m = sum_i softmax(z^m_i)[y_i]`` over the batch (Peng et al., 2022)."""
  probs = jax.nn.softmax(unimodal_logits, axis=-1)
  picked = jnp.take_along_axis(probs, labels[None, :, None], axis=-1)[..., 0]
  return _by_name(names, picked.sum(axis=1))


def accuracy(unimodal_logits, labels, names: Sequence[str], mask=None) -> dict:
  """Batch accuracy of each modality's prediction (CGGM's ``epsilon_m``)."""
  correct = (unimodal_logits.argmax(-1) == labels[None]).astype(jnp.float32)
  if mask is None:
    return _by_name(names, correct.mean(axis=1))
  mask = mask.astype(jnp.float32)
  return _by_name(names, (correct * mask).sum(axis=1) / jnp.maximum(mask.sum(), 1.0))


def cross_entropy(unimodal_logits, labels, names: Sequence[str]) -> dict:
  """Mean cross-entropy of each modality's prediction."""
  logp = jax.nn.log_softmax(unimodal_logits, axis=-1)
  nll = -jnp.take_along_axis(logp, labels[None, :, None], axis=-1)[..., 0]
  return _by_name(names, nll.mean(axis=1))


def subset_masks(num_modalities: int) -> np.ndarray:
  """``[2^M, M]`` 0/1 rows: subset ``s`` contains modality ``m`` iff bit m of s is set."""
  subsets = np.arange(2 ** num_modalities)[:, None]
  return ((subsets >> np.arange(num_modalities)) & 1).astype(np.float32)


def shapley_matrix(num_modalities: int) -> np.ndarray:
  """``[M, 2^M]`` matrix ``W`` with ``phi = W @ v`` the exact Shapley values of ``v``.

  ``v[s]`` is the value of subset ``s`` (bitmask, see `subset_masks`):
  ``phi_m = sum_{S not containing m} |S|! (M-|S|-1)! / M! * (v(S + {m}) - v(S))``.
  The rows sum to ``v(all) - v(empty)`` (efficiency).
  """
  num = num_modalities
  w = np.zeros((num, 2 ** num))
  for m, s in itertools.product(range(num), range(2 ** num)):
    if s >> m & 1:
      continue
    size = bin(s).count("1")
    weight = math.factorial(size) * math.factorial(num - size - 1) / math.factorial(num)
    w[m, s | (1 << m)] += weight
    w[m, s] -= weight
  return w


def _strongest_competitor(logits, labels):
  """``argmax_{c != y} logits_c`` (per row; logits ``[..., B, C]``, labels ``[B]``)."""
  is_target = jax.nn.one_hot(labels, logits.shape[-1], dtype=bool)
  return jnp.where(is_target, -jnp.inf, logits).argmax(-1)


def confidence_margins(unimodal_logits, labels, competitor_logits=None):
  """Unimodal confidence margins (UCoM, Gong et al., NeurIPS 2025): ``[M, B]``.

  ``xi_{m,i} = z^m_{i,y_i} - z^m_{i,j}`` on raw logits, where ``j`` is the strongest
  non-target class: of modality m's own prediction (the paper) or, given
  ``competitor_logits`` ``[B, C]``, of that prediction for every modality (MNL's
  released code uses the fused logits).
  """
  source = unimodal_logits if competitor_logits is None else competitor_logits
  rival = _strongest_competitor(source, labels)
  rival = jnp.broadcast_to(rival, unimodal_logits.shape[:-1])
  target = jnp.take_along_axis(unimodal_logits, labels[None, :, None], axis=-1)[..., 0]
  other = jnp.take_along_axis(unimodal_logits, rival[..., None], axis=-1)[..., 0]
  return target - other


def dominant_modality(unimodal_logits, labels, competitor_logits=None):
  """MNL's per-sample robust dominant modality: ``[B]`` index, or ``-1`` where undecided.

  Modality d dominates sample i when it has both the largest confidence margin and the
  largest target-class probability; where the two criteria pick different modalities
  the sample has no dominant modality (ties go to the first modality in model order).
  """
  margins = confidence_margins(unimodal_logits, labels, competitor_logits)
  probs = jax.nn.softmax(unimodal_logits, axis=-1)
  target_prob = jnp.take_along_axis(probs, labels[None, :, None], axis=-1)[..., 0]
  by_margin, by_prob = margins.argmax(0), target_prob.argmax(0)
  return jnp.where(by_margin == by_prob, by_margin, -1).astype(jnp.int32)


def multilabel_confidence(unimodal_logits, labels, names: Sequence[str]) -> dict:
  """OGM-GE's confidence for multi-hot labels ``[B, C]``: ``s_m = sum_i mean_{c in Y_i}
  sigmoid(z^m_{i,c})``, the mean probability given to each example's true labels (examples
  without a positive label contribute 0)."""
  positive = (labels > 0).astype(jnp.float32)[None]
  probs = jax.nn.sigmoid(unimodal_logits)
  per_example = (probs * positive).sum(-1) / jnp.maximum(positive.sum(-1), 1.0)
  return _by_name(names, per_example.sum(axis=1))


def multilabel_f1(unimodal_logits, labels, names: Sequence[str]) -> dict:
  """Batch micro-F1 of each modality's ``logit > 0`` decisions against multi-hot labels: the
  multi-label stand-in for accuracy (CGGM's ``epsilon_m``)."""
  guess, truth = unimodal_logits > 0, (labels > 0)[None]
  tp = (guess & truth).sum((1, 2))
  wrong = (guess != truth).sum((1, 2))
  return _by_name(names, 2.0 * tp / jnp.maximum(2.0 * tp + wrong, 1.0))


def regression_confidence(unimodal_logits, labels, names: Sequence[str]) -> dict:
  """OGM-GE's confidence for regression (single output ``z[..., 0]``, float labels ``[B]``):
  ``s_m = sum_i exp(-|z^m_i - y_i|)``, 1 for an exact prediction, falling with the error."""
  error = jnp.abs(unimodal_logits[..., 0] - labels[None])
  return _by_name(names, jnp.exp(-error).sum(axis=1))


def sign_agreement(unimodal_logits, labels, names: Sequence[str]) -> dict:
  """Batch share of examples whose prediction has the label's sign, ``(z >= 0) == (y >= 0)``:
  the regression stand-in for accuracy (CGGM's choice on MOSI)."""
  agree = ((unimodal_logits[..., 0] >= 0) == (labels[None] >= 0)).astype(jnp.float32)
  return _by_name(names, agree.mean(axis=1))
