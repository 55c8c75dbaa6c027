"""The pure functional train and eval steps.

A step computes the objective vector ``[L_fused, L_1, ..., L_M]`` from one forward pass
and either back-propagates its weighted sum once (``grad_mode="sum"``) or hands the
stacked per-objective gradients to the optax chain (``grad_mode="stacked"``), where
balancing transforms reduce them. Both run as one ``jax.jit`` over a mesh.
"""
from __future__ import annotations

from typing import Any, Callable

import flax.struct
import jax
import jax.numpy as jnp
import optax
from flax import nnx

from mmbal.grads import objective_grads


@flax.struct.dataclass
class TrainState:
  step: jax.Array
  params: Any
  opt_state: Any
  best_params: Any        # params with the best validation accuracy so far
  best_score: jax.Array   # that accuracy (-1 before the first evaluation)


def classification_objectives(apply_fn: Callable, names: tuple[str, ...]):
  """``losses(params, batch) -> ([K] losses, aux)`` with K = 1 + M (fused, then each modality)."""

  def losses(params, batch):
    out = apply_fn(params, {n: batch[n] for n in names})
    labels = batch["label"]
    fused = optax.softmax_cross_entropy_with_integer_labels(out.logits, labels).mean()
    uni = optax.softmax_cross_entropy_with_integer_labels(out.unimodal_logits, labels[None]).mean(-1)
    aux = dict(fused_correct=(out.logits.argmax(-1) == labels).mean(),
               unimodal_correct=(out.unimodal_logits.argmax(-1) == labels[None]).mean(-1))
    return jnp.concatenate([fused[None], uni]), aux

  return losses


def make_apply(graphdef, rest):
  def apply_fn(params, inputs):
    return nnx.merge(graphdef, params, rest)(inputs)
  return apply_fn


def make_train_step(losses_fn, tx: optax.GradientTransformation, weights, *, grad_mode: str = "sum",
                    objectives: tuple[str, ...] = (), labels=None, supports=None):
  """Returns ``train_step(state, batch) -> (state, metrics)`` (not yet jitted).

  ``weights``: ``[K]`` weights of the objectives in the summed loss.
  """
  weights = jnp.asarray(weights, jnp.float32)

  def train_step(state: TrainState, batch):
    if grad_mode == "sum":
      def total(params):
        values, aux = losses_fn(params, batch)
        return weights @ values, (values, aux)
      (_, (values, aux)), grads = jax.value_and_grad(total, has_aux=True)(state.params)
      extra = {}
    else:
      values, grads, aux = objective_grads(losses_fn, state.params, batch, objectives=objectives,
                                           labels=labels, supports=supports, has_aux=True)
      extra = dict(objective_values=values)
    updates, opt_state = tx.update(grads, state.opt_state, state.params, **extra)
    params = optax.apply_updates(state.params, updates)
    metrics = dict(losses=values, **aux)
    return state.replace(step=state.step + 1, params=params, opt_state=opt_state), metrics

  return train_step


def make_eval_step(apply_fn, names: tuple[str, ...]):
  """``eval_step(params, batch) -> counts`` of correct predictions over real (masked) examples."""

  def eval_step(params, batch):
    out = apply_fn(params, {n: batch[n] for n in names})
    mask = batch["mask"].astype(jnp.float32)
    labels = batch["label"]
    return dict(count=mask.sum(),
                fused=((out.logits.argmax(-1) == labels) * mask).sum(),
                unimodal=((out.unimodal_logits.argmax(-1) == labels[None]) * mask).sum(-1))

  return eval_step


def keep_best(state: TrainState, score) -> TrainState:
  """Replaces ``best_params`` when ``score`` beats ``best_score`` (on device, no host sync)."""
  better = score > state.best_score
  best = jax.tree.map(lambda new, old: jnp.where(better, new, old), state.params, state.best_params)
  return state.replace(best_params=best, best_score=jnp.maximum(score, state.best_score))
