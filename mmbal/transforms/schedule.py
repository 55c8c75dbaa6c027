"""MILES: per-modality learning-rate scales set once per epoch from conditional utilisation.

MILES -- Modality-Informed Learning ratE Scheduler. A. Guerra-Manzanares and F. E. Shamout,
IJCNN 2025, arXiv:2510.17394.

No official code and no full text of the paper were available. This module follows the
abstract ("modality-specific learning rates based on epoch-wise conditional utilization
rates calculated from validation or training metrics") and a third-party reimplementation
that cites the paper's Eq. 4/5 and Algorithm 1 (see ``shared/reference/methods.md`` section
5). Every point marked [UNVERIFIED] below is a design choice, not a confirmed detail.

Two pieces:

* `miles` -- an optax transform that multiplies each modality's updates by a scale held in
  its state (one ``optax.inject_hyperparams`` scale per modality label, inside
  ``optax.partition``); ``"shared"`` parameters (fusion and head) are left alone.
* `miles_update` -- a pure, jittable epoch-level function that computes the utilisation
  rates from the epoch's accuracies and writes the new scales into the optimizer state.
"""
from __future__ import annotations

from typing import Any, Mapping, NamedTuple, Sequence

import jax
import jax.numpy as jnp
import optax

from mmbal.labels import SHARED, label_names
from mmbal.transforms._checks import injected
from mmbal.transforms._state import find_state, replace_states


class MilesState(NamedTuple):
  """State of `miles`: arrays only, so orbax checkpoints it and a resumed run continues exactly.

  Attributes:
    scales: ``{modality: learning-rate scale}`` (1 = base learning rate). This field is the
      source of truth: every update copies it into the per-label ``inject_hyperparams``
      states (``inner``) before applying them.
    utilisation: ``{modality: u_m}`` from the last `miles_update` (zeros before the first).
    delta: ``max_m u_m - min_m u_m`` from the last `miles_update` (0 before the first).
    tau, mu, min_scale: the factory's hyperparameters (float32 scalars), kept in the
      state so that `miles_update` needs nothing but the state and the metrics.
    cumulative: bool scalar, the factory's ``cumulative`` flag.
    inner: the ``optax.partition`` state; for every modality label it holds an
      ``inject_hyperparams(scale)`` state whose ``hyperparams["step_size"]`` mirrors
      ``scales[label]``.
  """
  scales: dict
  utilisation: dict
  delta: jax.Array
  tau: jax.Array
  mu: jax.Array
  min_scale: jax.Array
  cumulative: jax.Array
  inner: optax.transforms.PartitionState


def _with_step_sizes(inner: optax.transforms.PartitionState, scales: Mapping[str, Any]):
  """``inner`` with each modality's ``inject_hyperparams`` step size set to its scale."""
  states = dict(inner.inner_states)
  for m, value in scales.items():
    masked = states[m]
    hp = dict(masked.inner_state.hyperparams)
    hp["step_size"] = jnp.asarray(value, hp["step_size"].dtype)
    states[m] = masked._replace(inner_state=masked.inner_state._replace(hyperparams=hp))
  return inner._replace(inner_states=states)


def _scale(step_size) -> optax.GradientTransformation:
  """``optax.scale`` that keeps each update's dtype (a float32 scale never promotes bf16)."""

  def update_fn(updates, state, params=None):
    del params
    return jax.tree.map(lambda g: g * jnp.asarray(step_size, g.dtype), updates), state

  return optax.GradientTransformation(optax.init_empty_state, update_fn)


def miles(labels, *, tau: float = 0.2, mu: float = 0.5, cumulative: bool = False,
          min_scale: float = 0.1,
          modalities: Sequence[str] | None = None) -> optax.GradientTransformationExtraArgs:
  """MILES: scales each modality's updates by a per-modality factor set between epochs.

  Guerra-Manzanares & Shamout, "MILES: Modality-Informed Learning ratE Scheduler",
  IJCNN 2025, arXiv:2510.17394.

  Per parameter with label ``m``, ``update <- s_m * update`` where ``s_m`` (initially 1)
  is the modality's learning-rate scale. Parameters labelled ``"shared"`` (and any label
  not in ``modalities``) pass through unchanged: MILES changes the encoder learning rates
  only; fusion and head stay at the base rate. The scales change only when
  `miles_update` is called (once per epoch, by the trainer); see that function for the
  rule.

  Place it AFTER the base optimizer, e.g. ``optax.chain(optax.adam(lr), miles(labels))``.
  The base optimizer's output is ``-lr * d`` with a direction ``d`` that does not depend on
  ``lr`` (adam, adamw including its decoupled weight decay, sgd with or without momentum,
  rmsprop, lion, ... and any learning-rate schedule), so ``s_m * (-lr * d) = -(s_m * lr) * d``
  is exactly that optimizer with modality ``m``'s learning rate (its parameter group's
  ``lr`` in PyTorch terms) set to ``s_m * lr``. It is not exact for optimizers whose
  state depends on the learning rate actually applied (e.g. lookahead, schedule-free,
  learning-rate-free estimators); there the scale multiplies their final update. Placed
  before an adaptive optimizer it would do nothing useful: adam normalises a constant
  per-leaf factor away.

  Args:
    labels: parameter-label pytree (`mmbal.labels.param_labels`), same structure as params;
      leaves are modality names or ``"shared"``.
    tau: utilisation-gap threshold τ. Default 0.2 from the third-party reimplementation
      [UNVERIFIED against the paper].
    mu: factor μ > 0 for the dominant modality's learning rate. Default 0.5 from the
      third-party reimplementation [UNVERIFIED against the paper].
    cumulative: False (default, the reimplementation's rule): the scales are reset every
      epoch, dominant -> μ, all others -> 1. True: ``s_D <- max(μ · s_D, min_scale)`` for the
      dominant modality and every other scale is kept (nothing is ever reset; a reduced
      rate stays reduced). Whether the paper resets or decays cumulatively is [UNVERIFIED];
      the cumulative variant is an mmbal option. Requires μ <= 1.
    min_scale: floor of the cumulative scale (mmbal default 0.1); unused when not cumulative.
    modalities: the labels that get a scale, in order (default: every label in ``labels``
      other than ``"shared"``, in first-seen order).

  Returns:
    An ``optax.GradientTransformationExtraArgs`` with a `MilesState`. ``update`` accepts and
    ignores any extra arguments.
  """
  names = tuple(label_names(labels))
  modalities = tuple(m for m in names if m != SHARED) if modalities is None else tuple(modalities)
  if not modalities:
    raise ValueError(f"miles: no modality labels among {names}")
  if len(set(modalities)) != len(modalities):
    raise ValueError(f"miles: duplicate modalities {modalities}")
  if not injected(tau) and tau < 0:
    raise ValueError(f"miles: tau must be >= 0, got {tau}")
  if not injected(mu) and (not mu > 0 or (cumulative and mu > 1)):
    raise ValueError(f"miles: mu must be in (0, inf), and in (0, 1] when cumulative; got {mu}")
  if not injected(min_scale) and not 0 < min_scale <= 1:
    raise ValueError(f"miles: min_scale must be in (0, 1], got {min_scale}")
  scaled = optax.inject_hyperparams(_scale, hyperparam_dtype=jnp.float32)
  transforms = {name: scaled(step_size=1.0) if name in modalities else optax.identity()
                for name in dict.fromkeys(names + modalities)}
  inner = optax.partition(transforms, labels)

  def init_fn(params):
    f32 = lambda x: jnp.asarray(x, jnp.float32)
    return MilesState(scales={m: f32(1.0) for m in modalities},
                      utilisation={m: f32(0.0) for m in modalities}, delta=f32(0.0),
                      tau=f32(tau), mu=f32(mu), min_scale=f32(min_scale),
                      cumulative=jnp.asarray(cumulative), inner=inner.init(params))

  def update_fn(updates, state, params=None, **extra_args):
    del extra_args  # ``optax.chain`` forwards every extra argument; none is needed here.
    inner_state = _with_step_sizes(state.inner, state.scales)
    updates, inner_state = inner.update(updates, inner_state, params)
    return updates, state._replace(inner=inner_state)

  return optax.GradientTransformationExtraArgs(init_fn, update_fn)


def utilisation_rates(fused_accuracy, without_accuracy: Mapping[str, Any]) -> dict:
  """``u_m = (A_full - A_without_m) / A_full`` per modality (0 for all when ``A_full <= 0``)."""
  full = jnp.asarray(fused_accuracy, jnp.float32)
  ok = full > 0
  denom = jnp.where(ok, full, 1.0)
  return {m: jnp.where(ok, (full - jnp.asarray(a, jnp.float32)) / denom, 0.0)
          for m, a in without_accuracy.items()}


def _miles_epoch(state: MilesState, fused_accuracy,
                 without_accuracy: Mapping[str, Any]) -> MilesState:
  names = tuple(state.scales)
  if set(without_accuracy) != set(names):
    raise ValueError(f"miles_update: accuracies are for {sorted(without_accuracy)}, "
                     f"the MILES state has modalities {sorted(names)}")
  util = utilisation_rates(fused_accuracy, without_accuracy)
  u = jnp.stack([util[m] for m in names])
  delta = u.max() - u.min()
  # Dominant: the largest utilisation, if positive (ties: every modality at the maximum).
  dominant = (u > 0) & (u == u.max()) & (delta > state.tau)
  old = jnp.stack([state.scales[m] for m in names])
  reset = jnp.where(dominant, state.mu, 1.0)
  decayed = jnp.where(dominant, jnp.maximum(state.mu * old, state.min_scale), old)
  new = jnp.where(state.cumulative, decayed, reset)
  scales = {m: new[i] for i, m in enumerate(names)}
  return state._replace(scales=scales, utilisation={m: util[m] for m in names}, delta=delta,
                        inner=_with_step_sizes(state.inner, scales))


def miles_update(opt_state, fused_accuracy, without_accuracy: Mapping[str, Any] | None = None, *,
                 unimodal_accuracy: Mapping[str, Any] | None = None):
  """Epoch-level MILES update: new per-modality scales from the epoch's accuracies.

  Pure and jittable (no host callbacks). ``opt_state`` is a `MilesState` or any optimizer
  state containing one (e.g. the state of ``optax.chain(..., miles(labels))`` or a
  ``named_chain``); every `MilesState` found is updated and the same tree is returned.

  Conditional utilisation rate of modality ``m`` (Wu, Jastrzębski, Cho, Geras, ICML 2022,
  arXiv:2202.05306; the form MILES reuses [NOTE: from the reimplementation]):

      u_m = (A_full - A_without_m) / A_full
      δ   = max_m u_m - min_m u_m

  ``A_full`` is the fused model's accuracy; ``A_without_m`` the fused model's accuracy
  with modality ``m`` absent. For two modalities with unimodal heads, "AB without A" is
  the B head, so ``u_A = u(A|B) = (A_AB - A_B) / A_AB`` and ``δ = |u(A|B) - u(B|A)|``:
  the paper's case, selected by passing ``unimodal_accuracy`` instead (two modalities
  only). The M-modality form with ``without_accuracy`` is mmbal's generalisation
  [UNVERIFIED: the paper treats two modalities]; how "absent" is realised (zeroed or masked
  input, dropping the branch) is up to the caller. If ``A_full <= 0`` all u_m are 0.

  Rule (reimplementation of the paper's Algorithm 1 [UNVERIFIED]): if ``δ > τ``, the
  dominant modality D -- the one with the largest utilisation, if that is positive (the
  model relies on it most); none if every u_m <= 0; every modality at the maximum on an
  exact tie (mmbal choice) -- gets scale μ, the others 1; if ``δ <= τ`` all scales are 1.
  With ``cumulative=True`` see `miles`. Which metric (validation or training) is the
  caller's choice; the paper's is [UNVERIFIED].

  Args:
    opt_state: a `MilesState` or an optimizer state that contains one.
    fused_accuracy: scalar ``A_full``.
    without_accuracy: ``{modality: A_without_m}`` for every modality of the state.
    unimodal_accuracy: alternative to ``without_accuracy`` for exactly two modalities:
      ``{A: A_A, B: A_B}``, the unimodal heads' accuracies.

  Returns:
    ``opt_state`` with every `MilesState` replaced (new ``scales``, ``utilisation``, ``delta``).
  """
  if (without_accuracy is None) == (unimodal_accuracy is None):
    raise ValueError("miles_update: pass exactly one of without_accuracy and unimodal_accuracy")
  if unimodal_accuracy is not None:
    if len(unimodal_accuracy) != 2:
      raise ValueError("miles_update: unimodal_accuracy is only defined for two modalities "
                       f"(got {sorted(unimodal_accuracy)}); pass without_accuracy instead")
    a, b = unimodal_accuracy
    without_accuracy = {a: unimodal_accuracy[b], b: unimodal_accuracy[a]}
  epoch = lambda s: _miles_epoch(s, fused_accuracy, without_accuracy)
  return replace_states(opt_state, MilesState, epoch, "miles_update")


def find_miles_state(opt_state) -> MilesState:
  """The (single) `MilesState` inside ``opt_state``, e.g. to log its scales and utilisation."""
  return find_state(opt_state, MilesState, "find_miles_state")
