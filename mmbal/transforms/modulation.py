"""Gradient-modulation methods as optax transforms: OGM-GE, AGM and CGGM.

Each factory returns an ``optax.GradientTransformationExtraArgs`` for any number of
modalities. Per-modality scores arrive as extra arguments of ``update`` that are dicts
``{modality: scalar}`` (see `mmbal.scores`), randomness as the extra argument ``key``.
Unknown extra arguments are ignored, so the transforms can sit anywhere in an
``optax.chain`` (which forwards every extra argument to every member).

`ogm_ge` and `cggm` scale the *parameter-shaped* gradient (put them after
`mmbal.transforms.combine_objectives`) leaf by leaf according to the label pytree
(`mmbal.labels.param_labels`); leaves labelled ``"shared"`` are never touched. `agm`
replaces ``combine_objectives``: it reduces stacked per-modality share gradients.
Everything is leafwise (``jax.tree.map``), so each leaf keeps its sharding.

Which parameters a modality owns is the labels' business. `mmbal.models.labels_for`
also gives each modality's unimodal head (e.g. CGGM's probe classifier) the modality's
label; to scale only the encoders, as the official codes do, label the heads shared::

    labels = mmbal.param_labels(model, {n: model.encoders[n] for n in model.names}, params)

Every state stores the per-modality coefficients it applied last (``state.coefficients``,
``{modality: scalar}``) for logging. Inside a chained optimiser state they can be read
with ``optax.tree_utils.tree_get(opt_state, "coefficients")``.
"""
from __future__ import annotations

from typing import Any, Callable, Mapping, NamedTuple, Sequence

import jax
import jax.numpy as jnp
import numpy as np
import optax

from mmbal.labels import SHARED, label_names
from mmbal.scores import shapley_matrix
from mmbal.transforms._checks import (check_axis_names, check_extra_args, check_labels, check_per_parameter,
                                      injected)
from mmbal.tasks import task_loss

# exp() arguments are clamped to this (exp(80) ~ 5.5e34 is finite in float32).
_MAX_EXP = 80.0


# --------------------------------------------------------------------------- helpers


def _modalities_of(labels) -> tuple[str, ...]:
  names = tuple(n for n in label_names(labels) if n != SHARED)
  if not names:
    raise ValueError("labels name no modality (every leaf is 'shared')")
  return names


def _stack(scores: Mapping[str, Any] | None, names: Sequence[str], method: str, arg: str):
  """``{name: scalar}`` -> float32 ``[M]`` in ``names`` order, with clear errors."""
  if scores is None:
    raise ValueError(f"{method}: pass the extra argument {arg}={{modality: scalar}} "
                     f"for modalities {tuple(names)}")
  missing = [n for n in names if n not in scores]
  if missing:
    raise ValueError(f"{method}: {arg} lacks modalities {missing}; expected {tuple(names)}, "
                     f"got {tuple(scores)}")
  return jnp.stack([jnp.asarray(scores[n], jnp.float32).reshape(()) for n in names])


def _by_name(names: Sequence[str], values) -> dict:
  return {n: values[i] for i, n in enumerate(names)}


def _ones(names):
  return {n: jnp.ones((), jnp.float32) for n in names}


def _zeros(names):
  return {n: jnp.zeros((), jnp.float32) for n in names}


def _in_window(count, start_step: int, end_step: int | None):
  active = count >= start_step
  if end_step is not None:
    active = active & (count < end_step)
  return active


def _scale_by_label(labels, updates, factors: Mapping[str, jax.Array]):
  """``g * factors[label]`` leafwise; shared leaves pass through."""
  def scale(label, g):
    if label == SHARED:
      return g
    return g * factors[label].astype(g.dtype)
  return jax.tree.map(scale, labels, updates)


def _robust_std(g):
  """Population std of all elements: divided by max|g| first (no overflow for any finite
  gradient), then one pass of sum and sum of squares centred on one element to limit
  cancellation. Branch-free: a `lax.cond` per leaf made XLA:GPU read each predicate back
  to the host and doubled the step's HLO."""
  g = g.astype(jnp.float32)
  peak = jnp.max(jnp.abs(g))
  scale = jnp.where(peak > 0, peak, 1.0)
  root = jnp.sqrt(scale)     # twice by sqrt: 1 / 3e38 is subnormal, flushed to 0 on CPUs
  x = g / root / root
  d = x - x[(0,) * x.ndim]      # one element (ravel()[0] gathers a sharded leaf)
  mean = jnp.mean(d)
  return scale * jnp.sqrt(jnp.maximum(jnp.mean(d * d) - mean * mean, 0.0))


def _cosine(a, b):
  """Cosine of two flattened arrays; 0 if either is zero. Finite values and gradients
  for zero and huge (1e30) inputs (both are first divided by their constant max|.|)."""
  a = jnp.ravel(a).astype(jnp.float32)
  b = jnp.ravel(b).astype(jnp.float32)
  if a.shape != b.shape:
    raise ValueError(f"cosine of arrays of different sizes {a.shape[0]} and {b.shape[0]}")

  def unit_max(x):
    s = jax.lax.stop_gradient(jnp.max(jnp.abs(x)))
    return x / jnp.where(s > 0, s, 1.0)

  a, b = unit_max(a), unit_max(b)
  norms2 = jnp.sum(a * a) * jnp.sum(b * b)
  ok = norms2 > 0
  return jnp.where(ok, jnp.sum(a * b) / jnp.sqrt(jnp.where(ok, norms2, 1.0)), 0.0)


# --------------------------------------------------------------------------- OGM-GE


class OgmGeState(NamedTuple):
  count: jax.Array        # update calls so far (int32)
  coefficients: dict      # {modality: k_m applied at the last step (1 outside the window)}
  ratios: dict            # {modality: discrepancy ratio rho_m at the last step}


_LEAF_RULES: dict[str, Callable[[Any], bool]] = {
    "all": lambda g: True,
    "non_1d": lambda g: g.ndim >= 2,
    "conv": lambda g: g.ndim == 4,
}


def ogm_ge(labels, *, alpha: float, leaves: str | Callable[[Any], bool] = "all",
           noise: bool = True, start_step: int = 0, end_step: int | None = None,
           ratio: str = "mean_others", eps: float = 1e-12,
           noise_std_eps: float = 0.0) -> optax.GradientTransformationExtraArgs:
  r"""OGM-GE: on-the-fly gradient modulation with generalisation enhancement.

  Peng, Wei, Deng, Wang, Hu, "Balanced Multimodal Learning via On-the-fly Gradient
  Modulation", CVPR 2022, arXiv:2203.15332.

  With ``s_m = sum_i softmax(z^m_i)[y_i]`` (extra argument ``confidence``, see
  `mmbal.scores.true_class_confidence`)::

      rho_m = s_m / mean_{k != m} s_k        (ratio="mean_others", default)
      rho_m = s_m / min_{k != m} s_k         (ratio="min_others")
      k_m   = 1 - tanh(alpha * rho_m)  if rho_m > 1  else 1
      g_l  <- k_m * g_l + N(0, std(g_l)^2)   for each selected leaf l of modality m

  For two modalities both ratios are the paper's ``rho^a = s^a / s^v``; the M-modality
  forms are BalanceBenchmark's generalisations. Only the dominant modality (rho > 1) is
  slowed. The GE noise is drawn elementwise with the (population) std of the *unscaled*
  leaf gradient and is added to the selected leaves of every modality, including
  modalities with ``k_m = 1``, as the official code does. Denominators are floored at
  ``eps`` so zero scores give ``rho = 0`` (k = 1) rather than a division by zero.

  Args:
    labels: label pytree (same structure as the gradient); its non-shared labels are the
      modalities, and ``confidence`` must have an entry for each.
    alpha: the modulation strength (official README: 0.1 VGGSound, 0.8 CREMA-D).
    leaves: which leaves of a modality are modulated: ``"all"`` (every leaf),
      ``"non_1d"`` (``ndim >= 2``: no biases or norm scales; BalanceBenchmark), ``"conv"``
      (``ndim == 4``: 2-D conv kernels only; the official code), or a predicate on the
      gradient leaf.
    noise: add the GE noise (OGM-GE); ``False`` gives plain OGM.
    start_step: modulation (scaling and noise) is active for update counts in
      ``[start_step, end_step)``; outside, updates pass through unchanged. The official
      code counts epochs, inclusively (``starts <= epoch <= ends``, default 0..50): use
      ``start_step=starts*steps_per_epoch, end_step=(ends+1)*steps_per_epoch``.
    end_step: the window's exclusive end (``None``: no end).
    ratio: ``"mean_others"`` or ``"min_others"``.
    eps: floor of the ratio's denominator.
    noise_std_eps: added to each leaf's noise std (the official code adds 1e-8; the default
      0 keeps a zero gradient exactly zero).

  Extra arguments of ``update``: ``confidence`` ({modality: s_m}, required) and ``key``
  (a PRNG key, required when ``noise``; it is folded with the state's step count, so passing
  the same key every step is fine; the leaves of one shape share one draw ``[n, *shape]``,
  see `_leaf_noise`).

  Differences from the official code (GeWu-Lab/OGM-GE_CVPR2022, ``main.py``):
    * the noise std is the population std (``ddof=0``; torch's ``.std()`` uses ``n-1``,
      a relative difference of ``1/(2n)``), computed after dividing by ``max|g|`` so 1e30
      gradients do not overflow; the code's ``+1e-8`` is ``noise_std_eps=1e-8``;
    * ties (``rho = 1``) modulate nothing; the two-modality code then slows audio;
    * the window counts update steps, half-open, instead of epochs, inclusive;
    * the default ``leaves="all"`` scales every leaf of the modality; ``leaves="conv"``
      reproduces the code (which also only noises 4-D leaves).
  """
  names = _modalities_of(labels)
  if ratio not in ("mean_others", "min_others"):
    raise ValueError(f"ratio must be 'mean_others' or 'min_others', got {ratio!r}")
  if isinstance(leaves, str):
    if leaves not in _LEAF_RULES:
      raise ValueError(f"leaves must be one of {sorted(_LEAF_RULES)} or a callable, got {leaves!r}")
    select = _LEAF_RULES[leaves]
  elif callable(leaves):
    select = leaves
  else:
    raise ValueError(f"leaves must be a string or a callable, got {leaves!r}")
  num = len(names)
  others = ~np.eye(num, dtype=bool)

  def init_fn(params):
    del params
    return OgmGeState(jnp.zeros((), jnp.int32), _ones(names), _zeros(names))

  def update_fn(updates, state, params=None, *, confidence=None, key=None, **extra_args):
    check_extra_args("ogm_ge", extra_args, dict(confidence=confidence, key=key))
    leaf_labels = check_labels("ogm_ge", labels, updates)
    check_per_parameter("ogm_ge", updates, params)
    s = _stack(confidence, names, "ogm_ge", "confidence")
    if num == 1:
      rho = jnp.zeros_like(s)
    elif ratio == "mean_others":
      rho = s / jnp.maximum((s.sum() - s) / (num - 1), eps)
    else:
      rho = s / jnp.maximum(jnp.where(others, s[None, :], jnp.inf).min(axis=1), eps)
    k = jnp.where(rho > 1, 1.0 - jnp.tanh(alpha * rho), 1.0)
    active = _in_window(state.count, start_step, end_step)
    k = jnp.where(active, k, 1.0)
    factors = _by_name(names, k)
    if noise:
      if key is None:
        raise ValueError("ogm_ge(noise=True) needs the extra argument key=<PRNG key>")
      step_key = jax.random.fold_in(key, state.count)
      noise_on = active.astype(jnp.float32)

    grad_leaves, treedef = jax.tree.flatten(updates)
    label_leaves = treedef.flatten_up_to(leaf_labels)
    chosen = {i: g.shape for i, (lab, g) in enumerate(zip(label_leaves, grad_leaves))
              if lab != SHARED and g.size > 0 and select(g)}   # {leaf index: shape}
    z = _leaf_noise(step_key, chosen) if noise else {}

    def modulate(i, label, g):
      if i not in chosen:
        return g
      out = g * factors[label].astype(g.dtype)
      if noise:
        out = out + (noise_on * (_robust_std(g) + noise_std_eps) * z[i]).astype(g.dtype)
      return out

    new = [modulate(i, lab, g) for i, (lab, g) in enumerate(zip(label_leaves, grad_leaves))]
    return (jax.tree.unflatten(treedef, new),
            OgmGeState(state.count + 1, factors, _by_name(names, rho)))

  return optax.GradientTransformationExtraArgs(init_fn, update_fn)


def _leaf_noise(key, shapes: dict[int, tuple]) -> dict[int, jax.Array]:
  """``{i: N(0, 1) of shapes[i]}``: one draw ``[n, *shape]`` per distinct leaf shape (in
  leaf order), row j for the shape's j-th leaf. A draw per leaf (mmbal 0.1) compiled one RNG
  kernel per leaf: 124 for ResNet-18 x 2, 16 shapes. Rows keep the leaf's layout, so a
  model-sharded leaf's noise is drawn where the leaf lives (one flat draw cut into leaves
  moved noise between devices). The draws are materialised: one float32 copy of the noised
  leaves. Same distribution, other numbers than 0.1's."""
  by_shape: dict[tuple, list[int]] = {}
  for i, shape in shapes.items():
    by_shape.setdefault(tuple(shape), []).append(i)
  out = {}
  for n, (shape, leaves) in enumerate(by_shape.items()):
    draws = jax.random.normal(jax.random.fold_in(key, n), (len(leaves), *shape), jnp.float32)
    out.update({i: draws[j] for j, i in enumerate(leaves)})
  return out


# --------------------------------------------------------------------------- AGM


class AgmState(NamedTuple):
  count: jax.Array        # update calls so far (int32)
  running_scores: dict    # {modality: running mean of s_m over all previous steps}
  coefficients: dict      # {modality: kappa_m applied at the last step}


class AgmShares(NamedTuple):
  outputs: jax.Array      # [M, B, C] Shapley-style unimodal outputs o_m (sum = full logits)
  shares: jax.Array       # [M] share losses <stop_gradient(dL/dz), o_m>
  scores: dict            # {modality: s_m = mean floored task loss of o_m} (stop_gradient)
  loss: jax.Array         # L(sum_m o_m), the fused task loss (CE for classification)


def agm_shares(subset_logits, labels, names: Sequence[str], *, min_prob: float = 1e-8,
               task: str = "classification") -> AgmShares:
  r"""AGM's Shapley-style unimodal outputs, share losses and scores from subset logits.

  ``subset_logits``: ``[2^M, B, C]`` logits of the model with only the modalities of each
  subset present, subsets in the order of `mmbal.scores.subset_masks` (bit m of the index
  = modality m present), or ``[2^M - 1, B, C]`` without the empty set (which AGM drops
  anyway). Compute them in one vmapped forward over present masks, inside the loss::

      masks = jnp.asarray(mmbal.scores.subset_masks(M)[1:])       # skip the empty set
      def loss_fn(params, batch):
        model = nnx.merge(graphdef, params, rest)
        x, y = {n: batch[n] for n in names}, batch["label"]
        subset_logits = jax.vmap(lambda mask: model(
            x, present=jnp.broadcast_to(mask, (y.shape[0], M))).logits)(masks)
        res = agm_shares(subset_logits, y, names)
        return res.shares, res

      values, grads, res = mmbal.objective_grads(loss_fn, params, batch, has_aux=True)
      updates, opt_state = tx.update(grads, opt_state, params, agm_scores=res.scores,
                                     objectives=names)

  (Give `mmbal.objective_grads` no labels, or objective names that are not labels: each
  share reads every parameter.)

  With W = `mmbal.scores.shapley_matrix` minus its empty-set column,
  ``o_m = sum_{S != {}} W[m, S] v(S)``; e.g. for two modalities
  ``o_a = (f(a,v) - f(0,v) + f(a,0)) / 2``. Dropping the empty set (as the official code
  does) makes ``sum_m o_m = v(all)`` exactly, the full logits. With ``z = sum_m o_m``
  and ``c = stop_gradient(dCE(z, y)/dz)`` the share losses are ``share_m = <c, o_m>``,
  so ``sum_m grad(share_m) = grad CE(full logits)`` and the gradients of the shares are
  the per-modality gradients that AGM's backward hooks scale (the hooks multiply
  ``dL/do_m``, which is ``c`` for every m). The scores are
  ``s_m = mean_i -log max(softmax(o_m,i)[y_i], min_prob)`` (official: probabilities
  floored at 1e-8).

  Other tasks (`mmbal.tasks`; mmbal's extension, AGM is classification-only): the share
  losses use the task's loss ``L`` of the fused output in place of CE (``c = dL/dz``), and
  the score is the same floored negative log-likelihood of ``o_m`` under the predictive
  distribution whose NLL the task loss is, i.e. the task's per-example loss capped at
  ``-log min_prob`` (18.4)::

      s_m = mean_i min(loss(o_m,i, y_i), -log min_prob)

  ``"regression"`` (L1): ``|o_m - y|``, the NLL of a unit-scale Laplace ``Lap(o_m, 1)``
  (up to ``log 2``, which cancels in ``s_k - mean s``; OGM-GE's regression confidence
  ``exp(-|o - y|)`` is the same likelihood); ``"regression_mse"``: ``(o_m - y)^2``, twice
  the NLL of ``N(o_m, 1/2)`` (up to a constant); ``"multilabel"``: the per-class-mean
  sigmoid BCE of ``o_m`` against the multi-hot labels. The outputs ``o_m`` are then scalar
  predictions (``[M, B, 1]``) or per-class logits.

  Difference from the official code: a modality is removed by zeroing its features
  (``present``) rather than by feeding zeros to its encoder, and the subset passes run
  in the model's training mode (the official code switches them to eval mode; this
  matters only for batch norm / dropout).
  """
  names = tuple(names)
  num = len(names)
  subset_logits = jnp.asarray(subset_logits)
  if subset_logits.ndim != 3:
    raise ValueError(f"subset_logits must be [2^M, B, C], got shape {subset_logits.shape}")
  weights = shapley_matrix(num)[:, 1:]
  if subset_logits.shape[0] == 2 ** num:
    subset_logits = subset_logits[1:]
  elif subset_logits.shape[0] != 2 ** num - 1:
    raise ValueError(f"subset_logits needs 2^M = {2 ** num} (or {2 ** num - 1}) subsets for "
                     f"{num} modalities, got {subset_logits.shape[0]}")
  outputs = jnp.einsum("ms,sbc->mbc", jnp.asarray(weights, subset_logits.dtype), subset_logits)
  fused = outputs.sum(axis=0)
  mean_loss = lambda z: task_loss(z, labels, task).mean()
  loss, cotangent = jax.value_and_grad(mean_loss)(fused)   # c = dL/dz (softmax - onehot) / B
  shares = jnp.einsum("bc,mbc->m", jax.lax.stop_gradient(cotangent), outputs)
  uni_loss = task_loss(jax.lax.stop_gradient(outputs).astype(jnp.float32), labels, task)
  scores = jnp.minimum(uni_loss, -np.log(min_prob)).mean(axis=1)
  return AgmShares(outputs, shares, _by_name(names, scores), loss)


def agm(modalities: Sequence[str], *, alpha: float, clip: float | None = None,
        momentum: float | None = None, start_step: int = 0,
        end_step: int | None = None) -> optax.GradientTransformationExtraArgs:
  r"""AGM: adaptive gradient modulation over Shapley-style unimodal outputs.

  Li, Li, Hu, Lei, Li, Zhou, "Boosting Multi-modal Model Performance with Adaptive
  Gradient Modulation", ICCV 2023, arXiv:2308.07686.

  ``updates``: stacked share gradients, every leaf ``[M, ...]`` in ``modalities`` order:
  ``g_m = grad <stop_gradient(dL/df), o_m>`` with the o_m from `agm_shares` (so
  ``sum_m g_m`` is the plain gradient). Extra arguments: ``agm_scores``: ``{modality: s_m}``
  (`agm_shares(...).scores`); ``objectives``: the names of the stacked rows in order
  (``modalities`` or ``share_<m>``), checked against ``modalities`` so a different order
  is an error instead of a silent swap. Output (parameter-shaped)::

      r_m     = exp(M/(M-1) * (mean_k s_k - s_m))          (M=2: r_a = exp(s_v - s_a))
      rbar_m  = the same from the running means sbar_k of all *previous* steps
      kappa_m = exp(alpha * min(rbar_m - r_m, clip))
      update  = sum_m kappa_m g_m

  A modality whose loss relative to the mean, ``s_m - mean_k s_k``, is above its running
  level (weaker than usual compared with the others) gets ``kappa > 1``. ``sbar`` starts at 0 (so ``rbar = 1`` at the first step)
  and is updated after the coefficients, as in the official code. A step with a
  non-finite score uses ``kappa = 1`` and leaves ``sbar`` and the count unchanged (one NaN
  would otherwise poison the running mean for the rest of the run).

  Args:
    modalities: modality names, in the order of the stacked axis.
    alpha: modulation strength (official README: e.g. 2.5 for AV-MNIST).
    clip: upper clip of ``rbar - r``; default as the official code: 10 for two
      modalities, 7 for three or more.
    momentum: ``None`` (official): ``sbar`` is the plain mean of all previous scores.
      A float ``beta`` in [0, 1): exponential moving average with weight
      ``max(1/(t+1), 1-beta)`` on the new score (a plain mean until ``t+1 = 1/(1-beta)``,
      so no zero-initialisation bias).
    start_step: kappa is applied for update counts in ``[start_step, end_step)``;
      outside, ``kappa = 1`` (plain sum), while the running means keep updating (the
      official code's epoch window ``starts <= epoch <= ends``).
    end_step: the window's exclusive end (``None``: no end).

  Differences from the official code (lihong2303/AGM_ICCV2023, ``run/*_main.py``): the
  coefficients multiply precomputed share gradients instead of acting through backward
  hooks on ``o_m`` (mathematically the same); the exponents of ``r`` are clamped to
  [-80, 80] against float32 overflow (never reached with floored-CE scores,
  ``|s_m| <= 18.4``). The sign is the official one, not BalanceBenchmark's flipped
  ``exp(M/(M-1)(s_m - mean))``.
  """
  names = tuple(modalities)
  num = len(names)
  if num < 2:
    raise ValueError(f"agm needs at least 2 modalities, got {names}")
  if clip is None:
    clip = 10.0 if num == 2 else 7.0
  if momentum is not None and not injected(momentum) and not 0.0 <= momentum < 1.0:
    raise ValueError(f"momentum must be None or in [0, 1), got {momentum}")
  factor = num / (num - 1)

  def ratios(s):
    return jnp.exp(jnp.clip(factor * (s.mean() - s), -_MAX_EXP, _MAX_EXP))

  def init_fn(params):
    del params
    return AgmState(jnp.zeros((), jnp.int32), _zeros(names), _ones(names))

  def update_fn(updates, state, params=None, *, agm_scores=None, objectives=None, **extra_args):
    del params
    check_extra_args("agm", extra_args, dict(agm_scores=agm_scores, objectives=objectives))
    check_axis_names("agm", objectives, names, aliases={f"share_{n}": n for n in names})
    s = _stack(agm_scores, names, "agm", "agm_scores")
    sbar = _stack(state.running_scores, names, "agm", "running_scores")
    kappa = jnp.exp(jnp.minimum(alpha * jnp.minimum(ratios(sbar) - ratios(s), clip), _MAX_EXP))
    finite = jnp.all(jnp.isfinite(s))   # a non-finite score is skipped, never averaged in
    kappa = jnp.where(_in_window(state.count, start_step, end_step) & finite, kappa, 1.0)

    def combine(g):
      if g.ndim == 0 or g.shape[0] != num:
        raise ValueError(f"agm: every update leaf must be stacked [M={num}, ...], got {g.shape}")
      return jnp.tensordot(kappa.astype(g.dtype), g, axes=1)

    weight = 1.0 / (state.count.astype(jnp.float32) + 1.0)
    if momentum is not None:
      weight = jnp.maximum(weight, 1.0 - momentum)
    sbar = jnp.where(finite, sbar + weight * (s - sbar), sbar)
    return (jax.tree.map(combine, updates),
            AgmState(state.count + finite.astype(state.count.dtype), _by_name(names, sbar),
                     _by_name(names, kappa)))

  return optax.GradientTransformationExtraArgs(init_fn, update_fn)


# --------------------------------------------------------------------------- CGGM


class CggmState(NamedTuple):
  count: jax.Array          # update calls so far (int32)
  previous_accuracy: dict   # {modality: epsilon_m of the previous step (0 before the first)}
  coefficients: dict        # {modality: B_m of the last step}; the gradient scale is rho * B_m


_GUARDS = ("softmax", "clip", "none")


def _cggm_b(acc, prev, eps, guard, max_coefficient, min_total, temperature=0.2):
  delta = acc - prev
  if guard == "softmax":   # (M - 1) softmax(-d / T): positive, sums to M - 1 as the paper's B
    share = jax.nn.softmax(-delta / temperature)
    return jnp.maximum(delta.shape[0] - 1, 1) * share
  total = delta.sum() + eps
  if guard == "none":
    return (total - delta) / total
  tiny = jnp.abs(total) < min_total
  safe = jnp.where(tiny, 1.0, total)
  return jnp.where(tiny, 1.0, jnp.clip((safe - delta) / safe, 0.0, max_coefficient))


def cggm_coefficients(accuracy: Mapping[str, Any], previous_accuracy: Mapping[str, Any], *,
                      eps: float = 1e-8, guard: str = "softmax", max_coefficient: float = 1.0,
                      min_total: float = 1e-6, temperature: float = 0.2) -> dict:
  """CGGM's ``B_m`` from this step's and the previous step's unimodal accuracies.

  The formula and the guard are those of `cggm` (which calls this). Use it inside the
  loss to build the direction term with this step's coefficients (see `cggm`)::

      prev = optax.tree_utils.tree_get(opt_state, "previous_accuracy")
      b = cggm_coefficients(accuracy, prev)
  """
  if guard not in _GUARDS:
    raise ValueError(f"guard must be one of {_GUARDS}, got {guard!r}")
  names = tuple(previous_accuracy)
  acc = _stack(accuracy, names, "cggm_coefficients", "accuracy")
  prev = _stack(previous_accuracy, names, "cggm_coefficients", "previous_accuracy")
  return _by_name(names, _cggm_b(acc, prev, eps, guard, max_coefficient, min_total, temperature))


def cggm(labels, *, rho: float = 1.3, eps: float = 1e-8, guard: str = "softmax",
         max_coefficient: float = 1.0, min_total: float = 1e-6, temperature: float = 0.2,
         start_step: int = 0) -> optax.GradientTransformationExtraArgs:
  r"""CGGM magnitude modulation: scale each modality's gradient by ``rho * B_m``.

  Guo, Jin, Chen, Zhao, "Classifier-guided Gradient Modulation for Enhanced Multimodal
  Learning", NeurIPS 2024, arXiv:2411.01409.

  Extra argument ``unimodal_accuracy``: ``{modality: epsilon_m}``, the batch accuracy of
  each unimodal classifier (in mmbal the ``unimodal="probe"`` heads of
  `mmbal.models.MultimodalClassifier`, linear heads on stop-gradient features; see
  `mmbal.scores.accuracy`; any per-modality metric in [0, 1] works: the code uses the
  binary sign accuracy for MOSI and Dice for BraTS). The state keeps the previous step's
  accuracies (``epsilon^0 = 0``)::

      d_m = epsilon_m - epsilon_m^prev
      S   = sum_k d_k + eps
      B_m = (S - d_m) / S                  (M = 2: B_1 = d_2 / (d_1 + d_2))
      g_l <- rho * B_m * g_l               for every leaf l labelled m

  The modality that improved less gets the larger share. ``state.coefficients`` holds
  ``B_m`` (needed by the direction term), the applied factor is ``rho * B_m``.

  Guards. The paper's intent is to slow the modality whose classifier improves fastest and
  speed up the slow one; its formula does that only when all ``d_m`` share a sign (then
  ``B_m`` is in [0, 1] and sums to M - 1). With mixed signs, which batch accuracies give in
  about half of all steps, ``B_m`` leaves that range: negative values flip a modality's
  gradient, and ``S ~ 0`` makes them explode (``d = (0.125, -0.125)`` gives
  ``B = (-1.25e7, 1.25e7)``).

  * ``guard="softmax"`` (default; mmbal's): ``B_m = (M - 1) softmax_m(-d_m / temperature)``.
    Positive, bounded by M - 1, summing to M - 1 as the paper's ``B`` does; the fastest-
    improving modality gets the smallest share and no encoder is ever stopped (the paper's
    own formula stops modality m whenever the others did not improve, ``d_k = 0``).
    ``temperature`` (default 0.2) sets how sharply the shares follow the differences; at
    0.2 it gives the paper's proportions where the paper's formula is well defined, e.g.
    ``d = (0.3, 0.1)``: paper ``(0.25, 0.75)``, softmax ``(0.27, 0.73)``; ``d = 0``
    everywhere gives ``B_m = (M - 1) / M``.
  * ``guard="clip"``: falls back to ``B_m = 1`` when ``|S| < min_total`` (no progress
    signal) and otherwise clips ``B_m`` to ``[0, max_coefficient]``. Measured on mfeat it
    gave some encoder exactly zero gradient in 45% of steps (mmbal's default before).
  * ``guard="none"`` reproduces the official code exactly (the 1e-8 is ``eps``; the code
    bounds the result only by its later ``clip_grad_norm_(0.8)``); it flipped gradient
    signs in 55% of mfeat steps with ``|B|`` up to 7.8e6.

  ``start_step``: steps before it are not modulated (factor 1; the accuracies are still
  tracked), since the probes' early accuracy changes are noise.

  Direction term: CGGM also adds ``lambda * L_gm`` to the loss (`cggm_direction_loss`,
  with cosines from `cggm_cosines`). The official code adds ``L_gm`` of step ``t-1``
  (coefficients *and* cosines from the previous step, back-propagated through a stale
  graph at the previous weights) to the loss of step t. mmbal does not lag the graph:
  ``L_gm`` is evaluated at the current parameters with ``B`` held constant. For ``B``
  use this step's coefficients, ``cggm_coefficients(accuracy, previous_accuracy)``
  computed inside the loss from the same forward pass (no lag; recommended), or
  ``state.coefficients`` (the previous step's ``B``, the code's timing of ``B``).

  Args:
    labels: label pytree; its non-shared labels are the modalities.
    rho: the global factor (official default 1.3; 1.0 for BraTS).
    eps: added to ``S`` (official 1e-8).
    guard: ``"softmax"``, ``"clip"`` or ``"none"``.
    max_coefficient: upper clip of ``B_m`` under ``"clip"``.
    min_total: ``|S|`` below this falls back to ``B = 1`` under ``"clip"``.
    temperature: of ``"softmax"``.
    start_step: the first modulated step.
  """
  if guard not in _GUARDS:
    raise ValueError(f"guard must be one of {_GUARDS}, got {guard!r}")
  names = _modalities_of(labels)

  def init_fn(params):
    del params
    return CggmState(jnp.zeros((), jnp.int32), _zeros(names), _ones(names))

  def update_fn(updates, state, params=None, *, unimodal_accuracy=None, **extra_args):
    check_extra_args("cggm", extra_args, dict(unimodal_accuracy=unimodal_accuracy))
    leaf_labels = check_labels("cggm", labels, updates)
    check_per_parameter("cggm", updates, params)
    acc = _stack(unimodal_accuracy, names, "cggm", "unimodal_accuracy")
    prev = _stack(state.previous_accuracy, names, "cggm", "previous_accuracy")
    b = _cggm_b(acc, prev, eps, guard, max_coefficient, min_total, temperature)
    factor = jnp.where(state.count >= start_step, rho * b, jnp.ones_like(b))
    updates = _scale_by_label(leaf_labels, updates, _by_name(names, factor))
    return updates, CggmState(state.count + 1, _by_name(names, acc), _by_name(names, b))

  return optax.GradientTransformationExtraArgs(init_fn, update_fn)


def cggm_direction_loss(coefficients: Mapping[str, Any], cosines: Mapping[str, Any]):
  """CGGM's direction term ``L_gm = (sum_m |B_m| - sum_m B_m cos_m) / M``.

  ``coefficients``: ``{modality: B_m}`` (held constant: stop_gradient); ``cosines``:
  ``{modality: cos_m}`` from `cggm_cosines`. Add ``lambda * L_gm`` to the fused loss
  (official lambda: 0.2 MOSI/IEMOCAP, 0.05 Food-101, 0.1 BraTS). Minimising it raises
  ``cos_m`` for modalities with ``B_m > 0``.
  """
  names = tuple(coefficients)
  b = jax.lax.stop_gradient(_stack(coefficients, names, "cggm_direction_loss", "coefficients"))
  cos = _stack(cosines, names, "cggm_direction_loss", "cosines")
  return (jnp.abs(b).sum() - (b * cos).sum()) / len(names)


def cggm_cosines(unimodal: Mapping[str, Any], fused) -> dict:
  """``{m: cos(flatten(stop_gradient(unimodal[m])), flatten(fused[m] or fused))}``.

  The unimodal side is the guide and is held constant (in the official code its share
  of the gradient is discarded by ``cls_optimizer.zero_grad()``). ``fused`` is one array
  shared by every modality or a ``{modality: array}`` dict; each pair must have the same
  number of elements. Zero vectors give cosine 0 with finite gradients.

  The two cosine choices, for `mmbal.models.MultimodalClassifier` with probe heads
  (``feats = out.features`` ``[M, B, D]``, ``y`` the labels, head kernels ``[in, C]``):

  * released code: the output-layer *weights* of each unimodal
    classifier and of the fused head. The code's ``out_layer`` weights have equal shapes;
    here the fused kernel block that multiplies modality m's features plays that role
    (concat fusion; for the other fusions the head kernel is ``[D, C]`` like the probe's)::

        K = model.head.kernel[...]
        fused = dict(zip(names, K.reshape(M, D, C))) if concat else K
        cos = cggm_cosines({n: model.unimodal_heads[n].kernel[...] for n in names}, fused)

    Its gradient reaches only the fused head kernel (not the encoders).

  * paper's intent (mmbal's choice of parameters): the *gradients* of the same
    output-layer weights, unimodal loss on the unimodal head and fused loss on the fused
    head block, computed in closed form by `linear_head_gradient` so the loss stays
    first-order differentiable; the fused side depends on the encoders, the fusion and
    the head, so ``L_gm`` trains all of them (the code's variable names, ``fusion_grad``
    and ``cls_grad``, show this was intended)::

        uni = {n: linear_head_gradient(feats[i], out.unimodal_logits[i], y)
               for i, n in enumerate(names)}
        if concat:   # the fused head's kernel block m multiplies feats[m]
          fused = {n: linear_head_gradient(feats[i], out.logits, y)
                   for i, n in enumerate(names)}
        else:        # the head saw one [B, D] vector
          fused = linear_head_gradient(model.fusion(feats, present), out.logits, y)
        cos = cggm_cosines(uni, fused)

    (with ``present`` masks, concat fusion saw ``feats * present.T[..., None]``).
  """
  names = tuple(unimodal)
  out = {}
  for n in names:
    f = fused[n] if isinstance(fused, Mapping) else fused
    out[n] = _cosine(jax.lax.stop_gradient(jnp.asarray(unimodal[n])), jnp.asarray(f))
  return out


def linear_head_gradient(inputs, logits, labels):
  """``d/dW mean_i CE(inputs_i W + b, y_i) = inputs^T (softmax(logits) - onehot(y)) / B``.

  The gradient of a linear head's kernel (``[D, C]``, flax layout) under mean softmax
  cross-entropy, in closed form: differentiable once more without nested autodiff.
  ``inputs``: ``[B, D]`` what the head saw; ``logits``: ``[B, C]`` its output.
  """
  classes = logits.shape[-1]
  err = jax.nn.softmax(logits, axis=-1) - jax.nn.one_hot(labels, classes, dtype=logits.dtype)
  return inputs.T @ err / logits.shape[0]


__all__ = ["OgmGeState", "ogm_ge", "AgmState", "AgmShares", "agm", "agm_shares", "CggmState",
           "cggm", "cggm_coefficients", "cggm_direction_loss", "cggm_cosines",
           "linear_head_gradient"]
