"""The learning tasks a data set poses: their per-example losses and correctness.

``"classification"`` (integer labels ``[B]``), ``"multilabel"`` (multi-hot labels ``[B, C]``),
``"regression"`` / ``"regression_mse"`` (float labels ``[B]``, one output, L1 / squared
error). The trainer (`mmbal.train.step`) and the balancing methods' task-aware scores share
these definitions.
"""
from __future__ import annotations

import jax.numpy as jnp
import optax


TASKS = ("classification", "multilabel", "regression", "regression_mse")


def is_regression(task: str) -> bool:
  return task.startswith("regression")


def task_loss(logits, labels, task: str = "classification"):
  """Per-example loss ``[..., B]``: softmax cross-entropy with integer labels, or for
  ``"multilabel"`` (multi-hot labels ``[B, C]``) the sigmoid binary cross-entropy averaged
  over classes (PyTorch's ``BCEWithLogitsLoss``); for ``"regression"`` (``"regression_mse"``)
  the L1 (squared) error of the single output ``logits[..., 0]`` against float labels.
  ``logits`` may carry leading axes."""
  if is_regression(task):
    error = logits[..., 0] - jnp.broadcast_to(labels, logits.shape[:-1]).astype(logits.dtype)
    return error ** 2 if task == "regression_mse" else jnp.abs(error)
  if task == "multilabel":
    labels = jnp.broadcast_to(labels, logits.shape).astype(logits.dtype)
    return optax.sigmoid_binary_cross_entropy(logits, labels).mean(-1)
  return optax.softmax_cross_entropy_with_integer_labels(
      logits, jnp.broadcast_to(labels, logits.shape[:-1]))


def task_correct(logits, labels, task: str = "classification"):
  """Per-example correctness in [0, 1]: ``argmax == y``, or for ``"multilabel"`` the share of
  classes whose ``logit > 0`` decision matches the label (Hamming accuracy), or for regression
  sign agreement ``(pred >= 0) == (y >= 0)`` (the binary negative / non-negative accuracy)."""
  if is_regression(task):
    return ((logits[..., 0] >= 0) == (labels >= 0)).astype(jnp.float32)
  if task == "multilabel":
    return ((logits > 0) == (labels > 0)).astype(jnp.float32).mean(-1)
  return (logits.argmax(-1) == labels).astype(jnp.float32)


# Classes of `regression_classes` per scheme (eval.regression_bins).
REGRESSION_BINS = {"mosi": 7, "sims": 5}
_SIMS_EDGES = (-0.7, -0.1, 0.1, 0.7)


def regression_classes(labels, bins: str = "mosi"):
  """Integer classes ``[B]`` of float sentiment labels: the finest bins of MMSA's metrics.

  ``"mosi"`` (MOSI / MOSEI, labels in [-3, 3]): Acc-7's classes ``round(clip(y, -3, 3)) + 3``
  in 0..6 (round half to even, as numpy's ``np.round`` in MMSA's metrics).
  ``"sims"`` (CH-SIMS, labels in [-1, 1]): Acc-5's right-closed bins ``(-inf, -0.7]``,
  ``(-0.7, -0.1]``, ``(-0.1, 0.1]``, ``(0.1, 0.7]``, ``(0.7, inf)`` as 0..4.
  """
  y = jnp.asarray(labels, jnp.float32)
  if bins == "mosi":
    return (jnp.round(jnp.clip(y, -3.0, 3.0)) + 3).astype(jnp.int32)
  if bins == "sims":
    return (y[..., None] > jnp.asarray(_SIMS_EDGES)).sum(-1).astype(jnp.int32)
  raise ValueError(f"regression bins must be one of {sorted(REGRESSION_BINS)}, got {bins!r}")
