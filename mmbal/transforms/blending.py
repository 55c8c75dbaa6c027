"""Gradient-Blending (online): per-head loss weights re-estimated between epochs.

W. Wang, D. Tran and M. Feiszli, "What Makes Training Multi-Modal Classification Networks
Hard?", CVPR 2020, arXiv:1905.12681.

Two pieces:

* `gradient_blending` -- an optax transform over STACKED per-objective gradients (leaves
  ``[K, *param.shape]``, objectives ``[fused, m_1..m_M]`` as produced by
  `mmbal.objective_grads`) that returns ``sum_k w_k g_k`` with the weights ``w`` in its state.
  It replaces `combine_objectives` at the head of a stacked-gradient chain.
* `blending_update` -- a pure, jittable epoch-level function that turns two consecutive
  (train loss, validation loss) measurements per head into new weights.
"""
from __future__ import annotations

from typing import NamedTuple, Sequence

import jax
import jax.numpy as jnp
import optax

from mmbal.transforms._state import find_state, replace_states


class BlendingState(NamedTuple):
  """State of `gradient_blending`: arrays only (orbax checkpoints it; resume is exact).

  Attributes:
    weights: ``[K]`` blending weights, summing to 1.
    train_loss, val_loss: ``[K]`` mean train / validation loss per head at the previous
      measurement (checkpoint N); meaningful once ``measured`` is true.
    measured: bool scalar, whether a previous measurement is recorded.
    gain: ``[K]`` last generalisation gain ``ΔG_k`` (for logging; zeros before the first estimate).
    overfit: ``[K]`` last overfitting change ``ΔO_k`` (for logging; zeros before the first
      estimate).
    eps: float32 scalar added to ``ΔO_k²``.
  """
  weights: jax.Array
  train_loss: jax.Array
  val_loss: jax.Array
  measured: jax.Array
  gain: jax.Array
  overfit: jax.Array
  eps: jax.Array


def gradient_blending(objectives: int | Sequence[str], *, initial_weights=None,
                      eps: float = 1e-8) -> optax.GradientTransformationExtraArgs:
  """Gradient-Blending, online variant: ``g = sum_k w_k g_k`` with weights re-estimated per epoch.

  Wang, Tran & Feiszli, "What Makes Training Multi-Modal Classification Networks Hard?",
  CVPR 2020, arXiv:1905.12681.

  ``updates`` are stacked per-objective gradients, every leaf ``[K, *param.shape]`` (K heads:
  the fused head and each unimodal head, in the order of ``objectives``). The output is
  param-shaped: ``sum_k w_k g_k``, i.e. the gradient of ``L_blend = sum_k w_k L_k``. It is
  computed leafwise with ``tensordot`` over the leading axis, so each leaf keeps its
  sharding. The weights change only in `blending_update` (see there for the estimate).

  Use it first in a stacked chain, e.g.
  ``optax.chain(gradient_blending(("fused",) + names), optax.adam(lr))``.

  Args:
    objectives: K, or the K objective names (only their number is used; they document
      the order of the stacked gradients and of the losses given to `blending_update`).
    initial_weights: ``[K]`` non-negative weights used until the first estimate, normalised
      to sum to 1 (mmbal default: uniform ``1/K``). Normalising keeps the effective step
      size the same before and after the first estimate, whose weights sum to 1.
    eps: added to ``ΔO_k²`` in the weight formula (mmbal default 1e-8, in squared loss
      units; it only matters when ``|ΔO_k| <~ 1e-4``).

  Returns:
    An ``optax.GradientTransformationExtraArgs`` with a `BlendingState`. ``update``
    accepts and ignores any extra arguments.
  """
  num = objectives if isinstance(objectives, int) else len(tuple(objectives))
  if num < 1:
    raise ValueError(f"gradient_blending: need at least one objective, got {objectives!r}")
  if initial_weights is None:
    weights = jnp.full((num,), 1.0 / num, jnp.float32)
  else:
    weights = jnp.asarray(initial_weights, jnp.float32)
    if weights.shape != (num,) or bool((weights < 0).any()) or not float(weights.sum()) > 0:
      raise ValueError(f"gradient_blending: initial_weights must be {num} non-negative numbers "
                       f"with a positive sum, got {initial_weights!r}")
    weights = weights / weights.sum()
  if not eps > 0:
    raise ValueError(f"gradient_blending: eps must be > 0, got {eps}")

  def init_fn(params):
    del params
    zeros = jnp.zeros((num,), jnp.float32)
    return BlendingState(weights=weights, train_loss=zeros, val_loss=zeros,
                         measured=jnp.asarray(False), gain=zeros, overfit=zeros,
                         eps=jnp.asarray(eps, jnp.float32))

  def update_fn(updates, state, params=None, **extra_args):
    del params, extra_args  # ``optax.chain`` forwards every extra argument; none is needed.

    def blend(g):
      if g.ndim < 1 or g.shape[0] != num:
        raise ValueError(f"gradient_blending: expected stacked gradients with a leading axis "
                         f"of {num} objectives, got a leaf of shape {g.shape}")
      return jnp.tensordot(state.weights.astype(g.dtype), g, axes=1)

    return jax.tree.map(blend, updates), state

  return optax.GradientTransformationExtraArgs(init_fn, update_fn)


def blending_weights(train_before, val_before, train_after, val_after, previous, eps):
  """The guarded G-Blend estimate between two measurements; returns ``(w, ΔG, ΔO)``.

  ``ΔO = (L^V_after - L^T_after) - (L^V_before - L^T_before)``, ``ΔG = L^V_before - L^V_after``,
  ``w ∝ max(ΔG, 0) / (ΔO² + eps)`` normalised to 1; non-finite terms count as 0; if every
  term is 0 the ``previous`` weights are returned.
  """
  f32 = lambda x: jnp.asarray(x, jnp.float32)
  train_before, val_before, train_after, val_after = map(
      f32, (train_before, val_before, train_after, val_after))
  overfit = (val_after - train_after) - (val_before - train_before)
  gain = val_before - val_after
  raw = jnp.maximum(gain, 0.0) / (overfit ** 2 + eps)
  raw = jnp.where(jnp.isfinite(raw), raw, 0.0)
  total = raw.sum()
  usable = (total > 0) & jnp.isfinite(total)
  weights = jnp.where(usable, raw / jnp.where(usable, total, 1.0), previous)
  return weights, gain, overfit


def _blending_epoch(state: BlendingState, train_losses, val_losses) -> BlendingState:
  train = jnp.asarray(train_losses, jnp.float32)
  val = jnp.asarray(val_losses, jnp.float32)
  if train.shape != state.weights.shape or val.shape != state.weights.shape:
    raise ValueError(f"blending_update: expected train and val losses of shape "
                     f"{state.weights.shape}, got {train.shape} and {val.shape}")
  weights, gain, overfit = blending_weights(state.train_loss, state.val_loss, train, val,
                                            state.weights, state.eps)
  first = ~state.measured
  return state._replace(weights=jnp.where(first, state.weights, weights),
                        gain=jnp.where(first, state.gain, gain),
                        overfit=jnp.where(first, state.overfit, overfit),
                        train_loss=train, val_loss=val, measured=jnp.asarray(True))


def blending_update(opt_state, train_losses, val_losses):
  """Epoch-level G-Blending update from one measurement of every head's losses.

  Pure and jittable (no host callbacks). ``opt_state`` is a `BlendingState` or any
  optimizer state containing one (``optax.chain``, ``named_chain``, ...); every
  `BlendingState` found is updated and the same tree is returned. Call it every ``n``
  epochs (the "super-epoch"; BalanceBenchmark uses 10) with the losses measured then.

  With the previous measurement at checkpoint N (kept in the state) and this one at N+n,
  per head k (paper's overfitting-to-generalisation ratio; equations [UNVERIFIED: from
  memory of the paper and BalanceBenchmark's ``GBlending_trainer.py``]):

      O_N  = L^V_N - L^T_N                       (overfitting)
      ΔO_k = O_{N+n} - O_N
      ΔG_k = L^V_N - L^V_{N+n}                   (generalisation gain)
      w_k  = max(ΔG_k, 0) / (ΔO_k² + eps),  then normalised so that sum_k w_k = 1

  The paper's normalisation constant Z is [UNVERIFIED]; mmbal uses sum_k w_k = 1.

  Guards (mmbal choices): a head whose validation loss rose (ΔG_k < 0) gets weight 0
  rather than a negative weight (BalanceBenchmark takes ``|ΔG/ΔO²|``, which would reward a
  head that got worse); ``eps`` keeps ``ΔO_k ≈ 0`` finite (such a head, if it gained,
  takes almost all the weight, the limit of the formula); non-finite terms count as 0; if
  no head has a positive finite term, the previous weights are kept. The first call only
  records the measurement (weights unchanged).

  Online variant: the measurements are the heads of the jointly trained model itself
  (cheap, no extra runs). The paper estimates the weights from separately trained
  uni-/multi-modal models (offline), or re-estimates them per super-epoch (online);
  whether its online variant trains copies per head is [UNVERIFIED]. BalanceBenchmark
  copies the model and trains it per modality; two of its pitfalls are avoided here:
  its losses are sums over batches (train and validation scales then differ with the
  number of batches and ``O = L^V - L^T`` is meaningless) -- pass per-example MEAN losses;
  and its inner runs reuse the live optimizer state -- there are no inner runs here.

  Args:
    opt_state: a `BlendingState` or an optimizer state that contains one.
    train_losses: ``[K]`` mean training loss per head (same order as the stacked gradients).
    val_losses: ``[K]`` mean validation loss per head.

  Returns:
    ``opt_state`` with every `BlendingState` replaced.
  """
  return replace_states(opt_state, BlendingState,
                         lambda s: _blending_epoch(s, train_losses, val_losses), "blending_update")


def find_blending_state(opt_state) -> BlendingState:
  """The (single) `BlendingState` inside ``opt_state``, e.g. to log ``.weights``."""
  return find_state(opt_state, BlendingState, "find_blending_state")
