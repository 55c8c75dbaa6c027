"""How each balancing method plugs into the trainer.

A method is a `MethodSpec`: which objectives it weighs, whether the optax chain gets
summed or stacked per-objective gradients, the mmbal transform placed before (and after)
the base optimizer, the scores it needs from the forward pass (extra args), and what it
updates between epochs. ``build_method(name, ctx)`` returns the spec for a config.
"""
from __future__ import annotations

import dataclasses
from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from flax import nnx

from mmbal import objectives, scores, transforms
from mmbal.tasks import REGRESSION_BINS, regression_classes, task_loss
from mmbal.labels import param_labels
from mmbal.models import LATE_FUSIONS
from mmbal.train.alternating import alternating_optimizer, make_alternating_step
from mmbal.train.step import classification_objectives, is_regression
from mmbal.transforms._state import find_state


@dataclasses.dataclass(frozen=True)
class MethodSpec:
  weights: np.ndarray                       # [K] objective weights ([fused, m_1..m_M])
  grad_mode: str = "sum"                    # "sum" | "stacked"
  transform: optax.GradientTransformation | None = None        # before the base optimizer
  after_optimizer: optax.GradientTransformation | None = None  # e.g. learning-rate scales
  extra_args: Callable[[dict, Any], dict] | None = None  # (aux, key) -> scores for the chain
  epoch_end: Callable[[Any, dict], Any] | None = None    # (opt_state, val report) -> opt_state
  losses: Callable | None = None            # objectives builder replacing the classification one
  objectives: tuple[str, ...] | None = None  # names of the K objectives (stacked mode)
  supports: dict | None = None              # {objective: labels it touches}, with `objectives`
  selection: str = "fused"                  # validation score: "fused" | "unimodal_mean"
  # A method with its own step (MLA): (make_optimizer, total_steps) -> (tx, step_fn).
  step_builder: Callable | None = None
  prepare_batch: Callable | None = None     # (host batch, step) -> batch, before the step (LNLN)
  log_names: tuple[str, ...] | None = None  # names of objectives 2..K in the logs
  extra_results: Callable | None = None     # (params, dataset, mesh, bins) -> more results


class MethodContext(NamedTuple):
  config: Any               # the method's own config block (method.<name>), or None
  model: Any                # the MultimodalClassifier
  labels: Any               # parameter labels (encoders and unimodal heads by modality)
  encoder_labels: Any       # only encoder leaves carry a modality; everything else "shared"
  apply_fn: Callable        # apply_fn(params, inputs, present=None) -> Outputs
  steps_per_epoch: int
  total_steps: int
  task: str = "classification"   # or "multilabel" (multi-hot labels), "regression[_mse]"
  regression_bins: str = "mosi"  # eval.regression_bins: PMR's classes on regression data


def joint_weights(model) -> np.ndarray:
  """Fused loss, plus the unimodal losses of probes or unimodal heads (not of a split head)."""
  uni = 0.0 if model.unimodal == "split_head" else 1.0
  return np.array([1.0] + [uni] * len(model.names), np.float32)


def _joint(ctx: MethodContext) -> MethodSpec:
  return MethodSpec(weights=joint_weights(ctx.model))


def _unimodal(ctx: MethodContext) -> MethodSpec:
  if ctx.model.unimodal != "heads":
    raise ValueError("method 'unimodal' needs model.unimodal='heads'")
  return MethodSpec(weights=np.array([0.0] + [1.0] * len(ctx.model.names), np.float32),
                    selection="unimodal_mean")


def _for_task(task: str, classification, multilabel, regression):
  """The per-modality score a method uses for the data set's task."""
  if is_regression(task):
    return regression
  return multilabel if task == "multilabel" else classification


def _ogm_ge(ctx: MethodContext) -> MethodSpec:
  """OGM-GE: the dominant modality's encoder gradients are damped by 1 - tanh(alpha rho)."""
  c, names, epoch = ctx.config, ctx.model.names, ctx.steps_per_epoch
  tx = transforms.ogm_ge(ctx.encoder_labels, alpha=c.alpha, leaves=c.leaves, noise=c.noise,
                         start_step=c.start_epoch * epoch,
                         end_step=c.end_epoch * epoch if c.end_epoch else None, ratio=c.ratio)
  score = _for_task(ctx.task, scores.true_class_confidence, scores.multilabel_confidence,
                    scores.regression_confidence)
  confidence = lambda aux, key: dict(confidence=score(aux["unimodal_logits"], aux["labels"], names))
  return MethodSpec(weights=joint_weights(ctx.model), transform=tx, extra_args=confidence)


def _miles(ctx: MethodContext) -> MethodSpec:
  """MILES: per-encoder learning-rate scales from the epoch's conditional utilisation."""
  c = ctx.config
  tx = transforms.miles(ctx.encoder_labels, tau=c.tau, mu=c.mu, cumulative=c.cumulative)
  update = lambda opt_state, r: transforms.miles_update(opt_state, r["fused_accuracy"],
                                                        r["without_accuracy"])
  return MethodSpec(weights=joint_weights(ctx.model), after_optimizer=tx, epoch_end=update)


def _gradient_blending(ctx: MethodContext) -> MethodSpec:
  """G-Blending: fused and unimodal-head losses weighted by their generalisation/overfitting."""
  if ctx.model.unimodal != "heads":
    raise ValueError("method 'gradient_blending' needs model.unimodal='heads'")
  every = ctx.config.super_epoch

  def update(opt_state, r):
    blended = lambda: transforms.blending_update(opt_state, r["train_losses"], r["val_losses"])
    return jax.lax.cond(r["epoch"] % every == 0, blended, lambda: opt_state)

  num = len(ctx.model.names) + 1
  return MethodSpec(weights=np.full(num, 1.0 / num, np.float32), grad_mode="stacked",
                    transform=transforms.gradient_blending(("fused",) + ctx.model.names),
                    epoch_end=update)


def _subset_logits(apply_fn, params, batch, names, masks):
  """``[S, B, C]`` fused logits with only the modalities of each mask row present (one vmap)."""
  inputs = {n: batch[n] for n in names}
  size = batch["label"].shape[0]
  present = lambda mask: jnp.broadcast_to(mask, (size, len(names)))
  return jax.vmap(lambda mask: apply_fn(params, inputs, present(mask)).logits)(masks)


def _agm(ctx: MethodContext) -> MethodSpec:
  """AGM: Shapley-style unimodal outputs from all 2^M modality subsets, reweighted by kappa_m.

  On regression / multi-label data the shares and scores use the task's loss (scores: the
  floored task loss of each unimodal output; see `mmbal.transforms.agm_shares`)."""
  c, model = ctx.config, ctx.model
  names, num = model.names, len(model.names)
  if model.unimodal != "split_head":
    raise ValueError("method 'agm' needs model.unimodal='split_head' (AGM's unimodal outputs "
                     "come from the fused model)")
  masks = jnp.asarray(scores.subset_masks(num)[1:])   # the empty set is dropped, as in AGM

  def losses_builder(apply_fn, names):
    def losses(params, batch, opt_state=None, step=None):
      del opt_state, step
      labels = batch["label"]
      subset_logits = _subset_logits(apply_fn, params, batch, names, masks)
      res = transforms.agm_shares(subset_logits, labels, names, task=ctx.task)
      uni = task_loss(res.outputs, labels, ctx.task).mean(-1)
      aux = dict(logits=subset_logits[-1], unimodal_logits=res.outputs, labels=labels,
                 agm_scores=res.scores, log_losses=jnp.concatenate([res.loss[None], uni]))
      return res.shares, aux
    return losses

  epoch = ctx.steps_per_epoch
  tx = transforms.agm(names, alpha=c.alpha, clip=c.clip or None, start_step=c.start_epoch * epoch,
                      end_step=c.end_epoch * epoch if c.end_epoch else None)
  return MethodSpec(weights=np.array([1.0] + [0.0] * num, np.float32), grad_mode="stacked",
                    transform=tx, losses=losses_builder,
                    objectives=tuple(f"share_{n}" for n in names),
                    extra_args=lambda aux, key: dict(agm_scores=aux["agm_scores"]))


def _cggm(ctx: MethodContext) -> MethodSpec:
  """CGGM: classifiers on detached features steer each encoder's gradient magnitude (and,
  with ``lam > 0``, direction)."""
  c, model = ctx.config, ctx.model
  names = model.names
  if model.unimodal != "probe":
    raise ValueError("method 'cggm' needs model.unimodal='probe' (classifiers on detached "
                     "features, as CGGM's)")
  if c.lam and model.fusion_kind != "concat":
    raise ValueError("method.cggm.lam > 0 (the direction term) needs model.fusion='concat'")
  if c.lam and c.direction == "gradient" and ctx.task != "classification":
    raise ValueError("method.cggm.direction='gradient' uses softmax head gradients; for "
                     f"{ctx.task} data set method.cggm.direction='weights' or method.cggm.lam=0")
  if c.direction not in ("gradient", "weights"):
    raise ValueError(f"method.cggm.direction must be 'gradient' or 'weights', got {c.direction!r}")
  score = _for_task(ctx.task, scores.accuracy, scores.multilabel_f1, scores.sign_agreement)
  accuracy = lambda aux: score(aux["unimodal_logits"], aux["labels"], names)
  tx = transforms.cggm(ctx.encoder_labels, rho=c.rho, guard=c.guard)

  def losses_builder(apply_fn, names):
    base = classification_objectives(apply_fn, names, ctx.task)

    def losses(params, batch, opt_state=None, step=None):
      values, aux = base(params, batch)
      if not c.lam or opt_state is None:
        return values, aux
      # Direction term with this step's B (no lag) at the current parameters.
      previous = find_state(opt_state, transforms.CggmState, "cggm").previous_accuracy
      b = transforms.cggm_coefficients(accuracy(aux), previous, guard=c.guard)
      num, dim = len(names), model.feature_dim
      blocks = params["head"]["kernel"].reshape(num, dim, -1)
      if c.direction == "weights":   # the released code: cosine of output-layer weights
        uni = {n: params["unimodal_heads"][n]["kernel"] for n in names}
        fused = {n: blocks[i] for i, n in enumerate(names)}
      else:                          # the paper's intent: cosine of their gradients
        feats, y = aux["features"], aux["labels"]
        uni = {n: transforms.linear_head_gradient(feats[i], aux["unimodal_logits"][i], y)
               for i, n in enumerate(names)}
        fused = {n: transforms.linear_head_gradient(feats[i], aux["logits"], y)
                 for i, n in enumerate(names)}
      direction = transforms.cggm_direction_loss(b, transforms.cggm_cosines(uni, fused))
      return values.at[0].add(c.lam * direction), aux
    return losses

  return MethodSpec(weights=joint_weights(model), transform=tx, losses=losses_builder,
                    extra_args=lambda aux, key: dict(unimodal_accuracy=accuracy(aux)))


def _sam(ctx: MethodContext) -> MethodSpec:
  """SAM: the gradient is taken at the worst-case point within radius rho."""
  c = ctx.config
  return MethodSpec(weights=joint_weights(ctx.model),
                    transform=transforms.sam(rho=c.rho, normalize=c.normalize))


def _msam(ctx: MethodContext) -> MethodSpec:
  """M-SAM: SAM on the share of the loss owned by the batch's dominant modality (Shapley).

  Subset values on regression / multi-label data: ``value="accuracy"`` is the task's
  correctness (regression: sign agreement; multi-label: Hamming accuracy), ``"loss"`` the
  negative task loss (`mmbal.transforms.subset_values`)."""
  c, model = ctx.config, ctx.model
  names, num = model.names, len(model.names)
  masks = jnp.asarray(scores.subset_masks(num))

  def losses_builder(apply_fn, names):
    base = classification_objectives(apply_fn, names, ctx.task)

    def losses(params, batch, opt_state=None, step=None):
      values, aux = base(params, batch)
      # The 2^M subset forwards only score the modalities: no gradient flows through them.
      frozen = jax.lax.stop_gradient(params)
      subset_logits = _subset_logits(apply_fn, frozen, batch, names, masks)
      subset = transforms.subset_values(subset_logits, batch["label"], value=c.value,
                                        task=ctx.task)
      return values, dict(aux, shapley_values=transforms.modality_shapley(subset, names))
    return losses

  tx = transforms.msam(names, rho=c.rho, normalize=c.normalize, value=c.value, task=ctx.task)
  return MethodSpec(weights=joint_weights(model), transform=tx, losses=losses_builder,
                    extra_args=lambda aux, key: dict(shapley_values=aux["shapley_values"]))


def _needs_heads(ctx: MethodContext, name: str):
  if ctx.model.unimodal != "heads":
    raise ValueError(f"method {name!r} needs model.unimodal='heads' (unimodal losses that train "
                     f"their encoders)")


def _pcgrad(ctx: MethodContext) -> MethodSpec:
  """PCGrad over the fused and unimodal objectives (2 backward passes for any M)."""
  _needs_heads(ctx, "pcgrad")
  c, num = ctx.config, len(ctx.model.names) + 1
  tx = transforms.pcgrad(reduction=c.reduction, order=c.order, project=c.project,
                         labels=ctx.labels if c.project == "shared" else None, num_objectives=num)
  return MethodSpec(weights=np.ones(num, np.float32), grad_mode="stacked", transform=tx)


def _mmpareto(ctx: MethodContext) -> MethodSpec:
  """MMPareto: per modality, the fused and unimodal gradients' min-norm Pareto direction."""
  _needs_heads(ctx, "mmpareto")
  c, num = ctx.config, len(ctx.model.names) + 1
  tx = transforms.mmpareto(ctx.model.names, labels=ctx.labels, gamma=c.gamma, rescale=c.rescale)
  return MethodSpec(weights=np.ones(num, np.float32), grad_mode="stacked", transform=tx)


def _balgrad(ctx: MethodContext) -> MethodSpec:
  """BalGrad: reweighted inter-modality KL gradients; the task gradient projected off them.

  On regression / multi-label data the task and unimodal losses are the task's, and the KL
  is between the predictive distributions those losses are the NLL of (regression: unit
  Laplace for L1, unit Gaussian for MSE; multi-label: per-class Bernoulli); see
  `mmbal.transforms.balgrad_kl_losses`."""
  _needs_heads(ctx, "balgrad")
  c, names = ctx.config, ctx.model.names

  def losses_builder(apply_fn, names):
    base = classification_objectives(apply_fn, names, ctx.task)

    def losses(params, batch, opt_state=None, step=None):
      values, aux = base(params, batch)
      kl = transforms.balgrad_kl_losses(aux["unimodal_logits"], task=ctx.task)
      stacked = jnp.concatenate([values[:1], kl, values[1:]])   # [task, kl_1..kl_M, uni_1..uni_M]
      return stacked, dict(aux, log_losses=values)
    return losses

  objectives = tuple(transforms.balgrad_objective_names(names))
  supports = {o: (n,) for o, n in zip(objectives[1:], names + names)}
  unimodal_losses = lambda aux, key: dict(unimodal_losses={
      n: l for n, l in zip(names, aux["log_losses"][1:])})
  return MethodSpec(weights=np.ones(len(names) + 1, np.float32), grad_mode="stacked",
                    transform=transforms.balgrad(names, reweight=c.reweight, project=c.project),
                    losses=losses_builder, objectives=objectives, supports=supports,
                    extra_args=unimodal_losses)


def _warmed_up(step, ctx: MethodContext, epochs: int):
  """1.0 once ``epochs`` epochs have passed (0.0 before; 1.0 when ``step`` is unknown)."""
  return 1.0 if step is None else (step >= epochs * ctx.steps_per_epoch).astype(jnp.float32)


def _mnl(ctx: MethodContext) -> MethodSpec:
  """MNL: the per-sample dominant modality guides the others on the non-target classes.

  Classification only: the guidance is a distribution over the classes other than the one
  target class, which a regression target or a multi-hot label does not have (see
  `TASK_LIMITS`)."""
  _needs_heads(ctx, "mnl")
  c = ctx.config
  if c.competitor not in ("own", "fused"):
    raise ValueError(f"method.mnl.competitor must be 'own' or 'fused', got {c.competitor!r}")

  def losses_builder(apply_fn, names):
    base = classification_objectives(apply_fn, names)

    def losses(params, batch, opt_state=None, step=None):
      values, aux = base(params, batch)
      rival = aux["logits"] if c.competitor == "fused" else None
      guidance, dominant = objectives.negative_learning(
          aux["unimodal_logits"], aux["labels"], weight=c.weight, competitor_logits=rival,
          released_code=c.released_code)
      guidance = guidance * _warmed_up(step, ctx, c.warmup_epochs)
      shares = {n: (dominant == i).mean() for i, n in enumerate(names)}
      logged = dict(dominant_share=shares, undecided_share=(dominant < 0).mean())
      return values.at[0].add(guidance), dict(aux, log_losses=values, method_metrics=logged)
    return losses

  return MethodSpec(weights=joint_weights(ctx.model), losses=losses_builder)


def _pmr(ctx: MethodContext) -> MethodSpec:
  """PMR: prototype cross-entropy for the modalities whose prototype score lags behind.

  Regression (mmbal's variant; PMR is a classification method): the prototypes are the
  feature means of binned labels, MMSA's finest metric bins of the data set
  (`mmbal.tasks.regression_classes` with ``eval.regression_bins``: MOSI/MOSEI's Acc-7
  classes ``round(clip(y, -3, 3))``, SIMS's Acc-5 bins), and the prototype cross-entropy
  and scores are over those bins. The task loss stays the regression loss."""
  c, model = ctx.config, ctx.model
  if c.coefficient not in ("continuous", "binary"):
    raise ValueError(f"method.pmr.coefficient must be 'continuous' or 'binary', got {c.coefficient!r}")
  if not 0 < c.fraction <= 1:
    raise ValueError(f"method.pmr.fraction must be in (0, 1], got {c.fraction}")
  if is_regression(ctx.task):
    num_classes = REGRESSION_BINS[ctx.regression_bins]
    classes = lambda labels: regression_classes(labels, ctx.regression_bins)
  else:
    num_classes, classes = model.num_classes, lambda labels: labels
  memory = objectives.prototype_memory(len(model.names), num_classes, model.feature_dim,
                                       steps_per_epoch=ctx.steps_per_epoch, fraction=c.fraction,
                                       momentum=c.momentum)

  def losses_builder(apply_fn, names):
    base = classification_objectives(apply_fn, names, ctx.task)

    def losses(params, batch, opt_state=None, step=None):
      values, aux = base(params, batch)
      if opt_state is None:
        return values, aux
      state = find_state(opt_state, objectives.PrototypeState, "pmr")
      entropy_weight = c.entropy_weight and c.entropy_weight * (
          1.0 - _warmed_up(step, ctx, c.entropy_epochs))   # only for the first epochs
      pmr = objectives.prototype_rebalance(
          aux["features"], classes(aux["labels"]), state.prototypes, alpha=c.alpha,
          coefficient=c.coefficient, entropy_weight=entropy_weight, seen=state.seen)
      ready = state.seen.any()
      return (values.at[0].add(jnp.where(ready, pmr.loss, 0.0)),
              dict(aux, log_losses=values, pmr_coefficients=pmr.coefficients * ready))
    return losses

  def extra(aux, key):
    del key
    return dict(features=aux["features"], labels=classes(aux["labels"]),
                coefficients=aux.get("pmr_coefficients"))

  return MethodSpec(weights=joint_weights(model), transform=memory, losses=losses_builder,
                    extra_args=extra)


def _mla(ctx: MethodContext) -> MethodSpec:
  """MLA: alternating unimodal steps through a shared head (OWM-projected), entropy fusion."""
  c, model = ctx.config, ctx.model
  if model.unimodal != "shared_head" or model.fusion_kind not in LATE_FUSIONS:
    raise ValueError("method 'mla' needs model.unimodal='shared_head' and model.fusion="
                     "'late_entropy' (MLA's test-time fusion) or 'late'")
  if c.projection not in ("replace", "add", "none"):
    raise ValueError(f"method.mla.projection must be 'replace', 'add' or 'none', got {c.projection!r}")
  graphdef, _, rest = nnx.split(model, nnx.Param, ...)
  names, num = model.names, len(model.names)

  def forward(params, name, x):
    return nnx.merge(graphdef, params, rest).unimodal_forward(name, x)

  def step_builder(make_optimizer, total_steps):
    encoder_tx = make_optimizer(total_steps, 1)   # (steps, updates per step)
    kernel_only = {"kernel": True, "bias": False}
    head_tx = make_optimizer(total_steps * num, num)
    if c.projection != "none":
      head_tx = optax.chain(
          transforms.owm_projection(kernel_only, model.feature_dim, mode=c.projection), head_tx)
    step = make_alternating_step(forward, names, encoder_tx, head_tx, task=ctx.task,
                                 steps_per_epoch=ctx.steps_per_epoch,
                                 fuse=model.fuse_logits)  # uses no parameters
    return alternating_optimizer(encoder_tx, head_tx), step

  return MethodSpec(weights=np.array([0.0] + [1.0] * num, np.float32), step_builder=step_builder)


BUILDERS: dict[str, Callable[[MethodContext], MethodSpec]] = {
    "pcgrad": _pcgrad,
    "mmpareto": _mmpareto,
    "balgrad": _balgrad,
    "sam": _sam,
    "msam": _msam,
    "agm": _agm,
    "cggm": _cggm,
    "joint": _joint,
    "unimodal": _unimodal,
    "ogm_ge": _ogm_ge,
    "miles": _miles,
    "gradient_blending": _gradient_blending,
    "mnl": _mnl,
    "pmr": _pmr,
    "mla": _mla,
}


def encoder_labels(model):
  """Labels where only encoder parameters belong to a modality (heads/probes are shared)."""
  return param_labels(model, {n: model.encoders[n] for n in model.names})


# Methods that run on some tasks only ("regression" covers both regression losses), and why.
TASK_LIMITS = {
    "mnl": (("classification",), "its negative learning guides the distribution over the "
            "non-target classes of one target class, which a regression target or a multi-hot "
            "label does not have"),
    "pmr": (("classification", "regression"), "its prototypes are feature means of one class "
            "per example (regression labels are binned), and a multi-hot example has several"),
}


def task_kind(task: str) -> str:
  """``"classification"``, ``"multilabel"`` or ``"regression"`` (either regression loss)."""
  return "regression" if is_regression(task) else task


def methods_for(task: str) -> list[str]:
  """The methods that run on a task."""
  kind = task_kind(task)
  return sorted(n for n in BUILDERS if n not in TASK_LIMITS or kind in TASK_LIMITS[n][0])


def build_method(name: str, ctx: MethodContext) -> MethodSpec:
  if name not in BUILDERS:
    raise ValueError(f"config field 'method.name' must be one of {sorted(BUILDERS)}, got {name!r}")
  if name not in methods_for(ctx.task):
    tasks, why = TASK_LIMITS[name]
    spell = lambda kind: "multi-label" if kind == "multilabel" else kind
    raise ValueError(f"method.name={name!r} runs on {' and '.join(map(spell, tasks))} data "
                     f"only: {why}. This data set is {spell(task_kind(ctx.task))}; methods for "
                     f"it: {methods_for(ctx.task)}")
  return BUILDERS[name](ctx)
