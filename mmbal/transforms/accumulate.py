"""Gradient accumulation that understands stacked per-objective gradients."""
from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from mmbal.transforms._checks import TransformInputError, check_static


class AccumulateState(NamedTuple):
  mini_step: jax.Array   # micro-batches accumulated since the last emitted update (int32)
  mean: Any              # their running mean, stacked [K, ...] or parameter-shaped
  inner: Any             # the wrapped transformation's state


def accumulate_objectives(inner: optax.GradientTransformation, every_k: int, *,
                          num_objectives: int) -> optax.GradientTransformationExtraArgs:
  """``optax.MultiSteps`` for a chain that starts with a stacked-gradient transform.

  Averages the stacked ``[K, ...]`` gradients of ``every_k`` micro-batches and applies
  ``inner`` (e.g. ``chain(pcgrad(num_objectives=K), adam)``) once to the mean; the other
  micro-steps return zero updates and leave ``inner``'s state untouched, as MultiSteps
  does. So PCGrad, MMPareto or BalGrad see the gradients of the whole accumulated batch,
  exactly as with one large batch; ``MultiSteps`` after the transform instead averages
  the projections of the micro-batches, which differ since projection is not linear.
  (``optax.MultiSteps`` wrapped around such a chain fails: its buffers are shaped like the
  parameters.)

  ``num_objectives``: K, fixed so the state never changes shape. The extra args (scores,
  keys) of the micro-step that completes the group are the ones passed to ``inner``.
  SAM-style transforms are refused (their ``grad_fn`` would re-evaluate only the last
  micro-batch): accumulate outside them or use a larger batch.
  """
  check_static("accumulate_objectives", every_k=every_k, num_objectives=num_objectives)
  if not isinstance(every_k, int) or every_k < 1:
    raise TransformInputError(f"accumulate_objectives: every_k must be an int >= 1, got {every_k!r}")
  if not isinstance(num_objectives, int) or num_objectives < 1:
    raise TransformInputError(f"accumulate_objectives: num_objectives must be an int >= 1, got "
                              f"{num_objectives!r}")
  inner = optax.with_extra_args_support(inner)

  def init_fn(params):
    mean = jax.tree.map(lambda p: jnp.zeros((num_objectives,) + jnp.shape(p), jnp.result_type(p)),
                        params)
    return AccumulateState(jnp.zeros((), jnp.int32), mean, inner.init(params))

  def update_fn(updates, state, params=None, **extra_args):
    if "grad_fn" in extra_args:
      raise TransformInputError(
          "accumulate_objectives: got grad_fn (a SAM-style transform inside): it would "
          "re-evaluate the gradient on the last micro-batch only; put sam/msam outside the "
          "accumulation or use a larger batch")
    if jax.tree.structure(updates) != jax.tree.structure(state.mean):
      raise TransformInputError("accumulate_objectives: the gradients' tree differs from the "
                                "parameters' given to init")
    for (path, g), m in zip(jax.tree_util.tree_flatten_with_path(updates)[0],
                            jax.tree.leaves(state.mean)):
      if jnp.shape(g) != m.shape:
        raise TransformInputError(
            f"accumulate_objectives: expected stacked gradients [K={num_objectives}, ...]; the leaf "
            f"{jax.tree_util.keystr(path)} has shape {jnp.shape(g)} for a parameter of shape "
            f"{m.shape[1:]} (for per-parameter gradients use optax.MultiSteps)")
    n = state.mini_step
    mean = jax.tree.map(lambda m, g: m + (g.astype(m.dtype) - m) / (n + 1).astype(m.dtype),
                        state.mean, updates)

    def emit():
      out, inner_state = inner.update(mean, state.inner, params, **extra_args)
      return out, AccumulateState(jnp.zeros_like(n), jax.tree.map(jnp.zeros_like, mean),
                                  inner_state)

    out_shape = jax.eval_shape(lambda: emit()[0])

    def hold():
      return (jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), out_shape),
              AccumulateState(n + 1, mean, state.inner))

    return jax.lax.cond(n + 1 >= every_k, emit, hold)

  return optax.GradientTransformationExtraArgs(init_fn, update_fn)
