"""The pure functional train and eval steps.

A step computes the objective vector ``[L_fused, L_1, ..., L_M]`` from one forward pass
and either back-propagates its weighted sum once (``grad_mode="sum"``) or hands the
stacked per-objective gradients to the optax chain (``grad_mode="stacked"``), where
balancing transforms reduce them. Per-modality scores computed from the same forward
pass reach the transforms as extra args. Both run as one ``jax.jit`` over a mesh.
"""
from __future__ import annotations

from typing import Any, Callable

import flax.struct
import jax
import jax.numpy as jnp
import optax
from flax import nnx

from mmbal.grads import objective_grads
# The task's loss and correctness live in mmbal.tasks (the transforms use them too).
from mmbal.tasks import TASKS, is_regression, task_correct, task_loss  # noqa: F401


@flax.struct.dataclass
class TrainState:
  step: jax.Array
  params: Any
  opt_state: Any
  best_params: Any        # params with the best validation score so far
  best_score: jax.Array   # that score (-1 before the first evaluation)
  key: jax.Array          # raw PRNG key; step t uses fold_in(key, t)
  loss_sum: jax.Array     # [K] objective losses summed since the last evaluation
  loss_count: jax.Array   # steps in that sum (both checkpointed: resume stays exact)

  def advance(self, params, opt_state, losses) -> "TrainState":
    """The state after one train step with these ``losses`` (``[K]``, summed for the epoch)."""
    return self.replace(step=self.step + 1, params=params, opt_state=opt_state,
                        loss_sum=self.loss_sum + losses, loss_count=self.loss_count + 1)


def apply_optimizer(tx, grads, opt_state, params, **extra_args):
  """``(new params, new optimizer state)``: one optax update applied (every train step's core)."""
  updates, opt_state = tx.update(grads, opt_state, params, **extra_args)
  return optax.apply_updates(params, updates), opt_state


def init_train_state(params, tx: optax.GradientTransformation, *, seed: int,
                     num_objectives: int) -> TrainState:
  """A fresh state (jit it with the params' shardings)."""
  return TrainState(step=jnp.zeros((), jnp.int32), params=params, opt_state=tx.init(params),
                    best_params=params, best_score=jnp.full((), -1.0, jnp.float32),
                    key=jax.random.PRNGKey(seed), loss_sum=jnp.zeros((num_objectives,)),
                    loss_count=jnp.zeros((), jnp.int32))


def epoch_losses(state: TrainState):
  """``(mean train losses since the last evaluation, state with the sums reset)``."""
  mean = state.loss_sum / jnp.maximum(state.loss_count, 1)
  mean = jnp.where(state.loss_count > 0, mean, jnp.nan)
  return mean, state.replace(loss_sum=jnp.zeros_like(state.loss_sum),
                             loss_count=jnp.zeros_like(state.loss_count))


def classification_objectives(apply_fn: Callable, names: tuple[str, ...],
                              task: str = "classification"):
  """``losses(params, batch, opt_state) -> ([K] losses, aux)``, K = 1 + M (fused, then each modality).

  ``aux`` holds the outputs the balancing methods score: ``logits``, ``unimodal_logits``
  (``[M, B, C]``) and ``labels``. A ``batch["present"]`` mask (``[B, M]``, modality dropout)
  reaches the model. ``opt_state`` and ``step`` are there for methods whose
  loss reads their transform's state (e.g. CGGM's direction term) or has a warm-up; this
  one ignores them.
  """

  def losses(params, batch, opt_state=None, step=None):
    del opt_state, step
    out = apply_fn(params, {n: batch[n] for n in names}, batch.get("present"))
    labels = batch["label"]
    fused = task_loss(out.logits, labels, task).mean()
    uni = task_loss(out.unimodal_logits, labels[None], task).mean(-1)
    aux = dict(logits=out.logits, unimodal_logits=out.unimodal_logits, labels=labels,
               features=out.features)
    return jnp.concatenate([fused[None], uni]), aux

  return losses


def make_apply(graphdef, rest):
  def apply_fn(params, inputs, present=None):
    return nnx.merge(graphdef, params, rest)(inputs, present)
  return apply_fn


def make_train_step(losses_fn, tx: optax.GradientTransformation, weights, *, grad_mode: str = "sum",
                    objectives: tuple[str, ...] = (), labels=None, supports=None,
                    extra_args: Callable[[dict, jax.Array], dict] | None = None,
                    backward: str = "unrolled", grads_fn: Callable | None = None,
                    task: str = "classification"):
  """Returns ``train_step(state, batch) -> (state, metrics)`` (not yet jitted).

  ``weights``: ``[K]`` weights of the objectives in the summed loss (``grad_mode="sum"``).
  ``extra_args(aux, key)``: the transforms' extra args (scores) from the forward pass.
  ``labels=None`` in stacked mode gives every objective its own backward pass.
  ``grads_fn(params, batch) -> (values, stacked grads, aux)`` replaces `objective_grads`.
  ``aux["method_metrics"]`` (a dict of scalars), if a method's losses set it, is logged.
  """
  weights = jnp.asarray(weights, jnp.float32)

  def gradients(params, batch, opt_state, step):
    """``(values, grads, aux)``: summed-loss or stacked per-objective gradients at ``params``."""
    if grad_mode == "sum":
      def total(params):
        values, aux = losses_fn(params, batch, opt_state, step)
        return weights @ values, (values, aux)
      (_, (values, aux)), grads = jax.value_and_grad(total, has_aux=True)(params)
      return values, grads, aux
    if grads_fn is not None:
      return grads_fn(params, batch)
    return objective_grads(losses_fn, params, batch, opt_state, step, objectives=objectives,
                           labels=labels, supports=supports, has_aux=True, backward=backward)

  def train_step(state: TrainState, batch):
    key = jax.random.fold_in(state.key, state.step)
    values, grads, aux = gradients(state.params, batch, state.opt_state, state.step)
    # Sharpness-aware transforms re-evaluate the gradient at perturbed parameters.
    grad_fn = lambda params: gradients(params, batch, state.opt_state, state.step)[1]
    extra = dict(objective_values=values, key=key, grad_fn=grad_fn)
    if grad_mode != "sum":   # transforms of stacked gradients read their rows by name
      extra["objectives"] = tuple(objectives)
    if extra_args is not None:
      extra.update(extra_args(aux, key))
    # Methods whose objectives are not cross-entropies (AGM's shares) report it in aux.
    values = aux.get("log_losses", values)
    params, opt_state = apply_optimizer(tx, grads, state.opt_state, state.params, **extra)
    correct = lambda logits: task_correct(logits, aux["labels"], task).mean(-1)
    metrics = dict(losses=values, fused_correct=correct(aux["logits"]),
                   unimodal_correct=correct(aux["unimodal_logits"]),
                   method=aux.get("method_metrics", {}))
    return state.advance(params, opt_state, values), metrics

  return train_step


def make_eval_step(apply_fn, names: tuple[str, ...], task: str = "classification"):
  """``eval_step(params, batch) -> sums`` over real (masked) examples.

  Sums of correct predictions and losses of the fused and unimodal outputs, and the fused
  correctness with each modality absent in turn (masked-modality dependence). For
  ``"multilabel"`` also per-class true/false positives and false negatives (``*_tp``,
  ``*_fp``, ``*_fn``: ``[C]`` fused, ``[M, C]`` unimodal and without-m) for F1 scores.
  """
  num = len(names)

  def eval_step(params, batch):
    # The modalities and their padding masks ("<m>_mask"), for models that read them.
    inputs = {k: batch[k] for k in batch if k in names or k[:-5] in names and k.endswith("_mask")}
    out = apply_fn(params, inputs)
    labels, mask = batch["label"], batch["mask"].astype(jnp.float32)
    # Row m: every modality present but m; evaluated in one vmapped forward.
    without = 1.0 - jnp.eye(num)
    logits_without = jax.vmap(lambda p: apply_fn(
        params, inputs, jnp.broadcast_to(p, (labels.shape[0], num))).logits)(without)
    correct = lambda logits: (task_correct(logits, labels, task) * mask).sum(-1)
    loss = lambda logits: (task_loss(logits, labels, task) * mask).sum(-1)
    sums = dict(count=mask.sum(), fused=correct(out.logits), unimodal=correct(out.unimodal_logits),
                fused_loss=loss(out.logits), unimodal_loss=loss(out.unimodal_logits),
                without=correct(logits_without))
    if is_regression(task):   # per-example outputs: the metrics need the whole split
      sums.update(pred_fused=out.logits[..., 0], pred_unimodal=out.unimodal_logits[..., 0],
                  pred_without=logits_without[..., 0], label=labels, mask=mask)
    if task == "multilabel":
      truth = (labels > 0) & (mask[:, None] > 0)
      for key, logits in (("fused", out.logits), ("unimodal", out.unimodal_logits),
                          ("without", logits_without)):
        guess = (logits > 0) & (mask[:, None] > 0)
        sums[f"{key}_tp"] = (guess & truth).sum(-2).astype(jnp.float32)
        sums[f"{key}_fp"] = (guess & ~truth).sum(-2).astype(jnp.float32)
        sums[f"{key}_fn"] = (~guess & truth).sum(-2).astype(jnp.float32)
    return sums

  return eval_step


def keep_best(state: TrainState, score) -> TrainState:
  """Replaces ``best_params`` when ``score`` beats ``best_score`` and the params are finite
  (on device; a GPU reads the `lax.cond` predicate once per evaluation): a diverged model is
  never selected.

  One finiteness reduction over all leaves concatenated and one `lax.cond` for the copy: a
  reduction and a select per leaf made XLA compile a kernel per leaf (83 s for 300 leaves on
  a loaded 2-core CPU; 0.7 s this way)."""
  leaves = jax.tree.leaves(state.params)
  finite = jnp.isfinite(jnp.concatenate([p.reshape(-1) for p in leaves])).all()
  better = (score > state.best_score) & finite
  best = jax.lax.cond(better, lambda: state.params, lambda: state.best_params)
  return state.replace(best_params=best, best_score=jnp.where(better, score, state.best_score))
