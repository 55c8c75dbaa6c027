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
