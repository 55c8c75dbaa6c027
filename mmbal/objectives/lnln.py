"""LNLN's four-term loss (Zhang, Wang, Yu; NeurIPS 2024, arXiv 2409.20012, Eq. 14)::

    L = alpha L_cc + beta L_adv + gamma L_rec + delta L_sp

with (alpha, beta, gamma, delta) = (0.9, 0.8, 0.1, 1.0) on MOSI and MOSEI and
(0.9, 0.6, 0.1, 1.0) on SIMS (paper Table 1 = ``configs/train_*.yaml``).

* L_sp, the task loss (Eq. 13): ``mean_i (y_hat_i - y_i)^2`` (``task="mse"``; paper and code);
  ``task="l1"``: ``mean_i |y_hat_i - y_i|`` (the usual MOSI/MOSEI regression loss of other
  methods); ``task="ce"``: cross-entropy on ``[B, C]`` logits with integer labels.
* L_cc, the completeness check (Eq. 6): ``mean_i (w_i - c_i)^2`` with ``c_i = 1 - r_{l,i}``
  (``batch["completeness"]``, made by `mmbal.data.missing.random_missing`).
* L_adv, the effectiveness discriminator (Eq. 10): token-wise cross-entropy, averaged over the
  ``2 B T`` tokens, of D's 2-way logits against label 1 for the generated side and 0 for the
  complete language embedding (the code's labels; the paper words them as "originates from the
  language modality"). D minimises it; the gradient reversal layer inside the model makes the
  proxy generator maximise it (min_D max_G).
* L_rec, the reconstruction (Eq. 12): per modality the mean squared error over the positions
  the model marks in ``reconstruction_weight`` and over the feature axis, then averaged over
  the three modalities. Input-space reconstruction (the paper's ``U^0_m``) marks only the erased
  positions, so ``L_rec = mean_m [sum_{i,t} miss_{m,i,t} ||U^0_{m,i,t} - U_hat_{m,i,t}||^2 /
  (D_m sum_{i,t} miss_{m,i,t})]`` (a modality with nothing erased in the batch adds 0). The
  embedding-space reconstruction of the official code marks all ``T`` tokens, which gives
  exactly its ``nn.MSELoss`` over the concatenated ``[B, 3T, d]`` features. The paper writes
  Eq. 12 (and Eqs. 6, 13) as per-sample sums of squared norms; the code, and this module,
  average over elements, the scale the published weights were tuned for.

At evaluation the model gets no complete inputs: ``discriminator_logits`` and
``reconstruction`` are None and L_adv = L_rec = 0, as in the code. L_cc is computed whenever
the batch carries ``"completeness"``.

``batch["mask"]`` (optional, ``[B]``): examples to count (padded evaluation batches); every
term is a mean over the real examples only.
"""
from __future__ import annotations

from typing import Mapping, NamedTuple

import jax.numpy as jnp
import optax

TASKS = ("mse", "l1", "ce")


class LNLNLossWeights(NamedTuple):
  """Eq. 14's weights: ``cc`` = alpha, ``adv`` = beta, ``rec`` = gamma, ``task`` = delta."""
  cc: float = 0.9
  adv: float = 0.8
  rec: float = 0.1
  task: float = 1.0


MOSI_WEIGHTS = LNLNLossWeights(0.9, 0.8, 0.1, 1.0)
MOSEI_WEIGHTS = LNLNLossWeights(0.9, 0.8, 0.1, 1.0)
SIMS_WEIGHTS = LNLNLossWeights(0.9, 0.6, 0.1, 1.0)


def _wmean(values, weights):
  return jnp.sum(values * weights) / jnp.maximum(jnp.sum(weights), 1e-12)


def lnln_loss(outputs, batch: Mapping, weights: LNLNLossWeights = LNLNLossWeights(), *,
              task: str = "mse"):
  """Returns ``(loss, terms)``, ``terms = {"task", "cc", "adv", "rec"}`` (unweighted).

  ``outputs``: `mmbal.models.lnln.LNLNOutputs`. ``batch``: ``"label"`` (``[B]`` float
  targets, or int classes for ``task="ce"``), optionally ``"completeness"`` ``[B]`` and
  ``"mask"`` ``[B]``.
  """
  if task not in TASKS:
    raise ValueError(f"task must be one of {TASKS}, got {task!r}")
  pred, labels = outputs.prediction, batch["label"]
  size = pred.shape[0]
  example = (jnp.ones((size,), jnp.float32) if batch.get("mask") is None
             else jnp.asarray(batch["mask"]).astype(jnp.float32))
  zero = jnp.zeros((), jnp.float32)

  if task == "ce":
    if pred.ndim != 2:
      raise ValueError(f"task='ce' needs [B, C] logits, got prediction of shape {pred.shape}")
    per = optax.softmax_cross_entropy_with_integer_labels(pred, labels.astype(jnp.int32))
  else:
    if pred.ndim != 1:
      raise ValueError(f"task={task!r} needs a [B] prediction (num_outputs=1), got {pred.shape}")
    diff = pred - labels.reshape(pred.shape).astype(pred.dtype)
    per = diff ** 2 if task == "mse" else jnp.abs(diff)
  l_task = _wmean(per, example)

  if batch.get("completeness") is not None:
    target = jnp.asarray(batch["completeness"]).reshape(size).astype(outputs.completeness.dtype)
    l_cc = _wmean((outputs.completeness - target) ** 2, example)
  else:
    l_cc = zero

  if outputs.discriminator_logits is not None:
    logits = outputs.discriminator_logits                          # [2, B, T, 2]
    labels_adv = jnp.broadcast_to(jnp.array([1, 0])[:, None, None], logits.shape[:3])
    ce = optax.softmax_cross_entropy_with_integer_labels(logits, labels_adv)
    l_adv = _wmean(ce, jnp.broadcast_to(example[None, :, None], ce.shape))
  else:
    l_adv = zero

  if outputs.reconstruction is not None:
    per_modality = []
    for m in sorted(outputs.reconstruction):
      se = jnp.mean((outputs.reconstruction[m] - outputs.reconstruction_target[m]) ** 2, -1)
      where = outputs.reconstruction_weight[m] * example[:, None]
      per_modality.append(jnp.sum(se * where) / jnp.maximum(jnp.sum(where), 1.0))
    l_rec = jnp.mean(jnp.stack(per_modality))
  else:
    l_rec = zero

  loss = weights.cc * l_cc + weights.adv * l_adv + weights.rec * l_rec + weights.task * l_task
  return loss, {"task": l_task, "cc": l_cc, "adv": l_adv, "rec": l_rec}
