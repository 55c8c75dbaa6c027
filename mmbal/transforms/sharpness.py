"""Sharpness-aware methods as optax transforms: SAM and M-SAM.

Both factories return an ``optax.GradientTransformationExtraArgs`` that sits FIRST in an
``optax.chain`` (before mmbal's reweighting / projection transforms and the base
optimizer) and takes the extra argument ``grad_fn``: a callable ``grad_fn(params) ->
gradients`` returning gradients in the same pytree format as the ``updates`` given to the
chain (param-shaped, or stacked ``[K, *param.shape]`` per-objective gradients). The
transform evaluates ``grad_fn`` at a perturbed point ``params + eps`` *inside* ``update``
and returns that gradient, so the later transforms (OGM-GE, PCGrad, adam, ...) see the
gradient at the perturbed point while the caller's ``params`` are never modified: the
"restore" step of SAM is implicit, and one call of ``update`` is one optimisation step
(unlike ``optax.contrib.sam``'s transparent mode). Unknown extra arguments (``confidence``,
``key``, ...) are ignored, unlike ``optax.contrib.sam``, which accepts none::

    def loss_fn(params, batch): ...
    grad_fn = lambda p: jax.grad(loss_fn)(p, batch)
    tx = optax.chain(mmbal.transforms.sam(rho=0.05), optax.sgd(1e-3))
    grads = grad_fn(params)
    updates, opt_state = tx.update(grads, opt_state, params, grad_fn=grad_fn)

Everything is leafwise (``jax.tree.map``; the global norm is a sum of per-leaf sums), so
no parameter is flattened or concatenated and each leaf keeps its sharding.
"""
from __future__ import annotations

from typing import Any, Callable, Mapping, NamedTuple, Sequence

import jax
import jax.numpy as jnp
import numpy as np
import optax

from mmbal.labels import SHARED
from mmbal.scores import shapley_matrix
from mmbal.transforms._checks import check_extra_args
from mmbal.tasks import task_correct, task_loss

_NORMALIZE = ("l2", "sign")
_VALUES = ("accuracy", "loss")


# --------------------------------------------------------------------------- helpers


def _check_normalize(normalize: str):
  if normalize not in _NORMALIZE:
    raise ValueError(f"normalize must be one of {_NORMALIZE}, got {normalize!r}")


def _is_stacked(updates, params) -> bool:
  """True for ``[K, *param.shape]`` leaves, False for param-shaped ones (checked at trace time)."""
  u_leaves, u_def = jax.tree.flatten(updates)
  p_leaves, p_def = jax.tree.flatten(params)
  if u_def != p_def:
    raise ValueError(f"updates and params have different tree structures: {u_def} vs {p_def}")
  if all(np.shape(u) == np.shape(p) for u, p in zip(u_leaves, p_leaves)):
    return False
  if all(np.shape(u)[1:] == np.shape(p) and np.ndim(u) == np.ndim(p) + 1
         for u, p in zip(u_leaves, p_leaves)):
    if len({np.shape(u)[0] for u in u_leaves}) > 1:
      raise ValueError("stacked updates must have the same leading size K on every leaf")
    return True
  raise ValueError("updates must be param-shaped or stacked [K, *param.shape] on every leaf; got "
                   f"shapes {[np.shape(u) for u in u_leaves]} for params "
                   f"{[np.shape(p) for p in p_leaves]}")


def _perturbation(direction, rho: float, normalize: str, eps: float):
  """``(eps_tree, norm_of_eps)``: ``rho * d / ||d||`` (global L2) or ``rho * sign(d)``.

  The L2 norm is computed after dividing by the (global) ``max|d|``, so huge gradients do
  not overflow and tiny ones do not underflow; a direction whose norm is ``<= eps``
  (e.g. exactly zero) gives no perturbation. Computed in float32, leafwise.
  """
  d32 = jax.tree.map(lambda d: d.astype(jnp.float32), direction)
  if normalize == "sign":
    out = jax.tree.map(lambda d: rho * jnp.sign(d), d32)
    nonzero = sum(jnp.sum(d != 0).astype(jnp.float32) for d in jax.tree.leaves(d32))
    return out, rho * jnp.sqrt(nonzero)
  leaves = jax.tree.leaves(d32)
  if not leaves:
    return d32, jnp.zeros((), jnp.float32)
  scale = jnp.max(jnp.stack([jnp.max(jnp.abs(d)) for d in leaves]))
  scale = jnp.where(jnp.isfinite(scale) & (scale > 0), scale, 1.0)
  unit_norm = jnp.sqrt(sum(jnp.sum(jnp.square(d / scale)) for d in leaves))
  norm = scale * unit_norm
  ok = jnp.isfinite(norm) & (norm > eps)
  factor = jnp.where(ok, rho / jnp.where(ok, unit_norm, 1.0), 0.0)
  out = jax.tree.map(lambda d: jnp.where(ok, (d / scale) * factor, 0.0), d32)
  return out, jnp.where(ok, jnp.float32(rho), 0.0)


def _perturbed_leaves(perturb, params):
  """The ``perturb`` argument as a tree of Python bools shaped like ``params``."""
  if perturb is None:
    return jax.tree.map(lambda _: True, params)
  mask = perturb(params) if callable(perturb) else perturb
  try:
    return jax.tree.map(lambda m, _: bool(m), mask, params)
  except ValueError as err:
    raise ValueError(f"perturb must be a tree of bools with the structure of params "
                     f"{jax.tree.structure(params)}; got {jax.tree.structure(mask)}") from err


def _perturbed_gradient(updates, params, grad_fn, rho, normalize, eps, caller, perturb=None,
                        leaf_scale=None):
  """``(grad_fn(params + eps), ||eps||)`` with ``eps`` from ``updates`` (summed if stacked),
  zero on the leaves that ``perturb`` leaves out (and the norm taken over the others)."""
  if params is None:
    raise ValueError(f"{caller}: update needs params (the point at which to perturb)")
  if grad_fn is None:
    raise ValueError(f"{caller}: pass the extra argument grad_fn=lambda params: gradients")
  direction = (jax.tree.map(lambda g: jnp.sum(g, axis=0), updates)
               if _is_stacked(updates, params) else updates)
  direction = jax.tree.map(lambda d, keep: d if keep else jnp.zeros_like(d), direction,
                           _perturbed_leaves(perturb, params))
  if leaf_scale is not None:   # traced 0/1 per leaf (M-SAM's dominant-modality leaves)
    direction = jax.tree.map(lambda d, w: d * w.astype(d.dtype), direction, leaf_scale)
  perturbation, norm = _perturbation(direction, rho, normalize, eps)

  def shift(p, e):
    if not jnp.issubdtype(jnp.asarray(p).dtype, jnp.inexact):
      return p
    return p + e.astype(p.dtype)

  perturbed = jax.tree.map(shift, params, perturbation)
  grads = grad_fn(perturbed)
  if jax.tree.structure(grads) != jax.tree.structure(updates):
    raise ValueError(f"{caller}: grad_fn must return gradients with the tree structure of "
                     f"updates {jax.tree.structure(updates)}, got {jax.tree.structure(grads)}")
  for g, u in zip(jax.tree.leaves(grads), jax.tree.leaves(updates)):
    if np.shape(g) != np.shape(u):
      raise ValueError(f"{caller}: grad_fn returned a leaf of shape {np.shape(g)} where updates "
                       f"has shape {np.shape(u)}")
  grads = jax.tree.map(lambda g, u: jnp.asarray(g).astype(u.dtype), grads, updates)
  return grads, norm


# --------------------------------------------------------------------------- SAM


class SamState(NamedTuple):
  count: jax.Array               # update calls so far (int32)
  perturbation_norm: jax.Array   # ||eps|| of the last step (float32; 0 for a zero gradient)


def sam(*, rho: float = 0.05, normalize: str = "l2", eps: float = 1e-12,
        perturb=None) -> optax.GradientTransformationExtraArgs:
  r"""SAM: sharpness-aware minimisation as the first transform of an optax chain.

  Foret, Kleiner, Mobahi, Neyshabur, "Sharpness-Aware Minimization for Efficiently
  Improving Generalization", ICLR 2021, arXiv:2010.01412.

  With ``g`` the incoming ``updates`` (the gradient at ``params``)::

      eps = rho * g / ||g||_2      (normalize="l2", the global norm over all leaves)
      eps = rho * sign(g)          (normalize="sign"; ||eps|| = rho * sqrt(#nonzero))
      out = grad_fn(params + eps)

  For stacked ``[K, ...]`` per-objective gradients the ascent direction is the gradient
  of the summed objectives, ``g = sum_k g_k``, and ``grad_fn`` must return stacked
  gradients too (all K objectives at the same perturbed point), so per-objective
  transforms after SAM (PCGrad, AGM, `combine_objectives`, ...) work unchanged.

  Args:
    rho: perturbation radius (L2) or per-coordinate step (sign).
    normalize: ``"l2"`` (SAM) or ``"sign"`` (the L-infinity ascent step).
    eps: a gradient whose global L2 norm is ``<= eps`` (e.g. exactly zero) is not
      perturbed: ``out = grad_fn(params)``. The norm itself is computed after dividing by
      ``max|g|``, so it does not under/overflow; above ``eps``, ``||eps_tree|| = rho``.
    perturb: which parameters the ascent step moves: a tree of bools with the structure of
      ``params`` (or ``params -> tree``); None = all. ``g`` is zeroed on the others before
      the norm, so ``eps`` is ``rho * g_S / ||g_S||`` on the selected leaves S and 0 elsewhere.
      The trainer leaves out the linear probes of ``model.unimodal="probe"``, which train on
      detached features and would otherwise take most of ``rho`` (their gradients dominate
      ``||g||`` after a few steps).

  Extra arguments of ``update``: ``grad_fn`` (required; ``grad_fn(params) -> gradients``
  in the format of ``updates``); ``params`` is required. Other extra arguments are ignored.
  Costs one extra forward/backward per step (the call of ``grad_fn``).

  The state records the step count and the norm of the last perturbation
  (``optax.tree_utils.tree_get(opt_state, "perturbation_norm")``).
  """
  _check_normalize(normalize)

  def init_fn(params):
    del params
    return SamState(jnp.zeros((), jnp.int32), jnp.zeros((), jnp.float32))

  def update_fn(updates, state, params=None, *, grad_fn: Callable | None = None, **extra_args):
    check_extra_args("sam", extra_args, dict(grad_fn=grad_fn))
    grads, norm = _perturbed_gradient(updates, params, grad_fn, rho, normalize, eps, "sam",
                                      perturb)
    return grads, SamState(optax.safe_increment(state.count), norm)

  return optax.GradientTransformationExtraArgs(init_fn, update_fn)


# --------------------------------------------------------------------------- Shapley helpers


def subset_values(subset_logits, labels, *, value: str = "accuracy",
                  task: str = "classification") -> jax.Array:
  r"""``[2^M]`` value of each modality subset from the logits of one vmapped forward.

  ``subset_logits``: ``[2^M, B, C]`` logits of the model with only the modalities of each
  subset present, in the order of `mmbal.scores.subset_masks` (bit m of the index =
  modality m present; index 0 = the empty set, all features zeroed, which is a valid
  forward here). ``labels``: ``[B]`` integer classes. The values are

      value="accuracy":  v(S) = mean_i [argmax_c z^S_{i,c} == y_i]
      value="loss":      v(S) = -mean_i CE(z^S_i, y_i)    (higher is better, as accuracy)

  and carry no gradient (``stop_gradient``). For other tasks (`mmbal.tasks`, mmbal's
  extension) the same two values use the task's correctness and loss: ``"regression"`` /
  ``"regression_mse"`` (outputs ``[2^M, B, 1]``, float labels): accuracy = sign agreement
  ``mean_i [(z^S_i >= 0) == (y_i >= 0)]`` (the trainer's regression accuracy, CGGM's MOSI
  score), loss = ``-mean_i |z^S_i - y_i|`` (or squared); ``"multilabel"`` (multi-hot labels
  ``[B, C]``): accuracy = Hamming accuracy of the ``z > 0`` decisions, loss = ``-mean_i``
  per-class-mean sigmoid BCE. Compute all subsets in ONE forward, e.g.::

      masks = jnp.asarray(mmbal.scores.subset_masks(M))                 # [2^M, M], with empty
      subset_logits = jax.vmap(lambda mask: model(
          x, present=jnp.broadcast_to(mask, (y.shape[0], M))).logits)(masks)
      shapley = modality_shapley(subset_values(subset_logits, y), names)
  """
  if value not in _VALUES:
    raise ValueError(f"value must be one of {_VALUES}, got {value!r}")
  z = jax.lax.stop_gradient(jnp.asarray(subset_logits)).astype(jnp.float32)
  if z.ndim != 3:
    raise ValueError(f"subset_logits must be [2^M, B, C], got shape {z.shape}")
  labels = jnp.asarray(labels)
  if value == "accuracy":
    return jnp.mean(task_correct(z, labels, task), axis=-1)
  return -jnp.mean(task_loss(z, labels, task), axis=-1)


def modality_shapley(values, names: Sequence[str]) -> dict:
  r"""Exact Shapley values ``{modality: phi_m}`` from the values of all ``2^M`` subsets.

  ``values``: ``[2^M]``, subset ``s`` = bitmask (bit m = ``names[m]`` present, as in
  `mmbal.scores.subset_masks`), e.g. from `subset_values`. ``phi = W @ values`` with
  ``W = mmbal.scores.shapley_matrix(M)``:
  ``phi_m = sum_{S not containing m} |S|!(M-|S|-1)!/M! (v(S+{m}) - v(S))``, so
  ``sum_m phi_m = v(all) - v(empty)``. For two modalities
  ``phi_a = ((v(ab) - v(b)) + (v(a) - v(empty))) / 2``.
  """
  names = tuple(names)
  values = jnp.asarray(values)
  if values.shape != (2 ** len(names),):
    raise ValueError(f"values must have shape [2^M] = [{2 ** len(names)}] for modalities "
                     f"{names}, got {values.shape}")
  values = values.astype(jnp.float32)
  phi = jnp.asarray(shapley_matrix(len(names)), jnp.float32) @ values
  return {n: phi[i] for i, n in enumerate(names)}


# --------------------------------------------------------------------------- M-SAM


class MsamState(NamedTuple):
  count: jax.Array               # update calls so far (int32)
  perturbation_norm: jax.Array   # ||eps|| of the last step
  dominant: jax.Array            # index (in `modalities` order) of the last dominant modality
  dominant_onehot: dict          # {modality: 1.0 for the last dominant modality else 0.0}
  shapley: dict                  # {modality: normalised v_m used at the last step}
  dominant_weight: jax.Array     # v_d used at the last step (the SAM share of the gradient)


def _normalised_shapley(v, eps: float):
  """``(d, v_d, v_normalised)``; see `msam` for the guards."""
  num = v.shape[0]
  dominant = jnp.argmax(v).astype(jnp.int32)
  total = jnp.sum(v)
  ok = jnp.isfinite(total) & (total > eps) & jnp.all(jnp.isfinite(v))
  normalised = jnp.where(ok, v / jnp.where(ok, total, 1.0), jnp.full_like(v, 1.0 / num))
  v_d = jnp.clip(normalised[dominant], 0.0, 1.0)
  return dominant, v_d, normalised


def msam(modalities: Sequence[str], *, rho: float = 0.05, normalize: str = "l2",
         value: str = "accuracy", eps: float = 1e-12, task: str = "classification",
         perturb=None, decomposition: str = "scaled_loss",
         labels=None) -> optax.GradientTransformationExtraArgs:
  r"""M-SAM: modality-aware sharpness-aware minimisation (SAM on the dominant part).

  Nowdeh (Rajoli), Ji, Ma, Afghah, "Modality-Aware SAM: Sharpness-Aware-Minimization
  Driven Gradient Modulation for Harmonized Multimodal Learning", NeurIPS 2025,
  arXiv:2510.24919.

  Per step, with ``v_m`` the Shapley contribution of modality m (extra argument
  ``shapley_values``, e.g. `modality_shapley` of `subset_values`), normalised to sum 1,
  ``d = argmax_m v_m`` and ``g = grad l(theta)`` (the incoming ``updates``)::

      L_d = v_d * l,   L_s = (1 - v_d) * l           # the "loss-landscape decomposition"
      eps = rho * g / ||g||_2    (or rho * sign(g))   # = ascent on L_d: grad L_d = v_d * g
      out = v_d * grad_fn(theta + eps) + (1 - v_d) * g
          = grad L_d(theta + eps) + grad L_s(theta)

  so M-SAM is SAM applied to a ``v_d``-scaled copy of the loss plus the plain gradient of
  the rest, at the cost of one extra forward/backward (plus the ``2^M - 1`` extra
  forwards of the subset values). Stacked ``[K, ...]`` updates are handled as in `sam`
  (ascent direction from ``sum_k g_k``; the mix is elementwise on the stacked gradients).

  [UNVERIFIED] No official code is released. The decomposition follows third-party
  notes on the paper; the paper's exact value function (accuracy vs loss) and Shapley
  normalisation are not verified, and one note writes a sign ascent step (``normalize=
  "sign"``) instead of SAM's L2 step (the default).

  Normalisation guards: ``v_m <- v_m / sum_k v_k`` when the sum is finite and ``> eps``;
  the dominant weight is then ``v_d = max_m v_m`` in ``[1/M, 1]`` (clipped at 1 when some
  ``v_m < 0``). When the sum is ``<= eps`` (no modality helps, e.g. all subsets equally
  accurate, or negative totals) or not finite, ``v`` falls back to uniform ``1/M``
  (``v_d = 1/M``); the dominant modality is still ``argmax`` of the raw values (ties: the
  first in ``modalities`` order).

  Args:
    modalities: modality names, the keys of ``shapley_values``.
    rho: as in `sam`.
    normalize: as in `sam`.
    eps: as in `sam`; it also floors the Shapley sum.
    value: the subset value function used when the transform computes the Shapley values
      itself from the extra arguments ``subset_logits`` and ``targets`` (see below):
      ``"accuracy"`` or ``"loss"`` (negative cross-entropy); see `subset_values`.
    task: the labels' task for those values (`subset_values`; e.g. ``"regression"``).
    perturb: which parameters the ascent step moves, as in `sam`.
    decomposition: what the sharpness step is taken on.
      ``"scaled_loss"`` (default, the paper's notation read literally): ``L_d = v_d l``, so
      ``eps`` follows the whole gradient and the update is ``v_d grad(theta + eps) +
      (1 - v_d) g``. Which modality is dominant does not change this update (only ``v_d``
      does): swapping the dominant modality at equal ``v_d`` changes it by exactly 0.
      ``"modality"`` (mmbal's modality-specific form): the ascent step moves only the
      dominant modality's parameters (leaves labelled ``d`` in ``labels``) and the shared
      ones, ``eps = rho g_{S_d} / ||g_{S_d}||`` with ``S_d`` those leaves, and the update is
      mixed as above; so the sharpness that is minimised is that of the dominant modality's
      encoder (and the fusion head). The ascent direction is the full loss's gradient on
      those leaves, not a unimodal loss's.
      The default stays the literal form until the AV-MNIST comparison decides
      (docs/methods/msam.md).
    labels: the parameter-label pytree (modality names and ``"shared"``) for
      ``decomposition="modality"``, e.g. encoder labels where heads are shared.

  Extra arguments of ``update``: ``grad_fn`` (required, as in `sam`), and either
  ``shapley_values`` (``{modality: v_m}``) or both ``subset_logits`` (``[2^M, B, C]``) and
  ``targets`` (``[B]`` class labels), from which ``shapley_values`` is computed with
  ``value``. ``params`` is required. Other extra arguments are ignored.

  The state records ``dominant`` (index), ``dominant_onehot`` and ``shapley``
  (``{modality: normalised v_m}``), ``dominant_weight`` (``v_d``) and the perturbation norm.
  """
  names = tuple(modalities)
  if not names:
    raise ValueError("msam needs at least one modality")
  if len(set(names)) != len(names):
    raise ValueError(f"duplicate modality names: {names}")
  _check_normalize(normalize)
  if value not in _VALUES:
    raise ValueError(f"value must be one of {_VALUES}, got {value!r}")
  if decomposition not in ("scaled_loss", "modality"):
    raise ValueError(f"decomposition must be 'scaled_loss' or 'modality', got {decomposition!r}")
  if decomposition == "modality":
    if labels is None:
      raise ValueError("msam(decomposition='modality') needs labels= (the parameter labels)")
    unknown = sorted({l for l in jax.tree.leaves(labels) if l != SHARED and l not in names})
    if unknown:
      raise ValueError(f"msam: labels name {unknown}, which are neither modalities {names} "
                       f"nor {SHARED!r}")

  def dominant_leaves(onehot):
    """1.0 on the dominant modality's and the shared leaves, 0.0 on the others (traced)."""
    return jax.tree.map(lambda l: jnp.float32(1.0) if l == SHARED else onehot[names.index(l)],
                        labels)

  def init_fn(params):
    del params
    uniform = {n: jnp.full((), 1.0 / len(names), jnp.float32) for n in names}
    onehot = {n: jnp.zeros((), jnp.float32) for n in names}
    return MsamState(jnp.zeros((), jnp.int32), jnp.zeros((), jnp.float32),
                     jnp.zeros((), jnp.int32), onehot, uniform,
                     jnp.full((), 1.0 / len(names), jnp.float32))

  def update_fn(updates, state, params=None, *, grad_fn: Callable | None = None,
                shapley_values: Mapping[str, Any] | None = None, subset_logits=None,
                targets=None, **extra_args):
    check_extra_args("msam", extra_args, dict(
        grad_fn=grad_fn, shapley_values=shapley_values, subset_logits=subset_logits,
        targets=targets))
    if shapley_values is None:
      if subset_logits is None or targets is None:
        raise ValueError(f"msam: pass the extra argument shapley_values={{modality: v_m}} for "
                         f"modalities {names}, or subset_logits=[2^M, B, C] and targets=[B]")
      shapley_values = modality_shapley(
          subset_values(subset_logits, targets, value=value, task=task), names)
    missing = [n for n in names if n not in shapley_values]
    if missing:
      raise ValueError(f"msam: shapley_values lacks modalities {missing}; expected {names}, got "
                       f"{tuple(shapley_values)}")
    v = jnp.stack([jax.lax.stop_gradient(jnp.asarray(shapley_values[n], jnp.float32)).reshape(())
                   for n in names])
    dominant, v_d, normalised = _normalised_shapley(v, eps)
    onehot = jax.nn.one_hot(dominant, len(names), dtype=jnp.float32)
    # grad L_d = v_d * g with v_d > 0: the normalised ascent direction is that of g (on the
    # dominant modality's leaves only, for the modality-specific form).
    scale = dominant_leaves(onehot) if decomposition == "modality" else None
    perturbed, norm = _perturbed_gradient(updates, params, grad_fn, rho, normalize, eps, "msam",
                                          perturb, scale)
    out = jax.tree.map(lambda gp, g: (v_d.astype(g.dtype) * gp + (1 - v_d).astype(g.dtype) * g),
                       perturbed, updates)
    new_state = MsamState(optax.safe_increment(state.count), norm, dominant,
                          {n: onehot[i] for i, n in enumerate(names)},
                          {n: normalised[i] for i, n in enumerate(names)}, v_d)
    return out, new_state

  return optax.GradientTransformationExtraArgs(init_fn, update_fn)
