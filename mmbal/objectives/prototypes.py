"""PMR: Prototypical Modal Rebalance for Multimodal Learning (Fan, Xu, Wang, Wang, Guo; CVPR 2023)."""
from __future__ import annotations

import math
from typing import NamedTuple

import jax
import jax.numpy as jnp
import optax


def prototype_logits(features, prototypes):
  """``-||h_m - c^m_k||_2``: ``[M, B, C]`` from features ``[M, B, D]``, prototypes ``[M, C, D]``."""
  sq = (jnp.sum(features ** 2, -1)[..., None] - 2 * jnp.einsum("mbd,mcd->mbc", features, prototypes)
        + jnp.sum(prototypes ** 2, -1)[:, None, :])
  return -jnp.sqrt(jnp.maximum(sq, 1e-12))   # floored: finite gradient at distance 0


class PrototypeLoss(NamedTuple):
  loss: jax.Array           # the prototype terms to add to the task loss
  scores: jax.Array         # [M] s_m = sum_i softmax(sim_m)_{i, y_i} (no gradient)
  coefficients: jax.Array   # [M] weight of each modality's prototype cross-entropy


def prototype_rebalance(features, labels, prototypes, *, alpha: float = 1.0,
                        coefficient: str = "continuous", entropy_weight: float = 0.0,
                        seen=None) -> PrototypeLoss:
  """PMR's prototypical cross-entropy, weighted towards the modalities that lag behind.

  With ``sim_m = -||h_m - c^m||`` (``[B, C]``) and ``s_m = sum_i softmax(sim_m)_{i,y_i}``::

      rho_m   = max_k s_k / s_m                   (M = 2: PMR's rho = s_a / s_v, inverted)
      coef_m  = alpha * clip(rho_m - 1, 0, 1)     coefficient="continuous" (the paper)
      coef_m  = alpha * [rho_m > 1]               coefficient="binary" (main_Prototype_grad.py)
      loss    = sum_m sg(coef_m) CE(sim_m, y) - entropy_weight * max_m sg(coef_m) * H(softmax(sim_d))

  where d is the leading modality and H the mean per-sample entropy (the paper's
  prototypical entropy regulariser, which keeps d from converging prematurely; 0 = off,
  as in the released script). For M = 2 the continuous rule is PMR's beta/lambda pair.
  ``seen`` (``[C]`` bool): classes without a prototype yet are left out of the softmax.
  """
  if coefficient not in ("continuous", "binary"):
    raise ValueError(f"coefficient must be 'continuous' or 'binary', got {coefficient!r}")
  sim = prototype_logits(features, prototypes)
  if seen is not None:
    sim = jnp.where(seen, sim, -1e9)
  logp = jax.nn.log_softmax(sim, axis=-1)
  target = jnp.take_along_axis(logp, labels[None, :, None], axis=-1)[..., 0]   # [M, B]
  scores = jax.lax.stop_gradient(jnp.exp(target).sum(-1))
  ratio = scores.max() / jnp.maximum(scores, 1e-12)
  coef = jnp.clip(ratio - 1.0, 0.0, 1.0) if coefficient == "continuous" else (ratio > 1.0) * 1.0
  coef = alpha * coef
  loss = (coef * -target.mean(-1)).sum()
  if not (isinstance(entropy_weight, (int, float)) and entropy_weight == 0):
    leader = scores.argmax()
    entropy = -(jnp.exp(logp[leader]) * logp[leader]).sum(-1).mean()
    loss = loss - entropy_weight * coef.max() * entropy
  return PrototypeLoss(loss, scores, coef)


class PrototypeState(NamedTuple):
  prototypes: jax.Array     # [M, C, D] per-modality class prototypes
  seen: jax.Array           # [C] classes that have a prototype
  sums: jax.Array           # [M, C, D] feature sums of the current collection window
  counts: jax.Array         # [C]
  step: jax.Array
  coefficients: jax.Array   # [M] the latest PMR coefficients (logged)


def prototype_memory(num_modalities: int, num_classes: int, dim: int, *, steps_per_epoch: int,
                     fraction: float = 0.1, momentum: float = 0.2
                     ) -> optax.GradientTransformationExtraArgs:
  """PMR's per-class prototypes, kept in optimizer state; gradients pass through unchanged.

  Each epoch, the class means of the training features seen in its first
  ``ceil(fraction * steps_per_epoch)`` steps become the new prototypes, mixed with the old
  ones as ``c <- (1 - momentum) c_new + momentum c_old`` (the first time: ``c_new``).
  Only training batches feed them (the official code uses the validation loader for
  AVE/CGMNIST). Unlike the official extra pass at the start of each epoch, the features
  come from the training forward pass itself (no extra compute); prototypes are therefore
  available from the end of epoch 0's window on. Classes absent from a window keep their
  previous prototype (the official code divides by zero).

  Extra args: ``features`` ``[M, B, D]`` (stop-gradient is applied), ``labels`` ``[B]``,
  optionally ``coefficients`` ``[M]`` to log.
  """
  if not 0 < fraction <= 1:
    raise ValueError(f"fraction must be in (0, 1], got {fraction}")
  window = max(1, math.ceil(round(fraction * steps_per_epoch, 9)))

  def init(params):
    del params
    zeros = jnp.zeros((num_modalities, num_classes, dim), jnp.float32)
    return PrototypeState(zeros, jnp.zeros((num_classes,), bool), zeros,
                          jnp.zeros((num_classes,), jnp.float32), jnp.zeros((), jnp.int32),
                          jnp.zeros((num_modalities,), jnp.float32))

  def update(updates, state, params=None, *, features, labels, coefficients=None, **extra):
    del params, extra
    collecting = (state.step % steps_per_epoch) < window
    onehot = jax.nn.one_hot(labels, num_classes) * collecting
    feats = jax.lax.stop_gradient(features).astype(jnp.float32)
    sums = state.sums + jnp.einsum("bc,mbd->mcd", onehot, feats)
    counts = state.counts + onehot.sum(0)
    new = sums / jnp.maximum(counts, 1.0)[:, None]
    mixed = jnp.where(state.seen[:, None], (1 - momentum) * new + momentum * state.prototypes, new)
    finish = (state.step % steps_per_epoch) == window - 1
    has = finish & (counts > 0)
    state = PrototypeState(
        prototypes=jnp.where(has[:, None], mixed, state.prototypes),
        seen=state.seen | has,
        sums=jnp.where(finish, 0.0, sums), counts=jnp.where(finish, 0.0, counts),
        step=state.step + 1,
        coefficients=state.coefficients if coefficients is None else coefficients)
    return updates, state

  return optax.GradientTransformationExtraArgs(init, update)
