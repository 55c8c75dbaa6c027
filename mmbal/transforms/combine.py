"""Reduce stacked per-objective gradients to one parameter-shaped update."""
from __future__ import annotations

import jax
import jax.numpy as jnp
import optax


def combine_objectives(weights) -> optax.GradientTransformationExtraArgs:
  """``g = sum_k w_k g_k``: the last step of every stacked-gradient chain.

  ``updates`` leaves are ``[K, *param.shape]``; the output is param-shaped. Uses a
  leafwise ``tensordot`` so each leaf keeps its sharding (nothing is flattened).
  """
  weights = jnp.asarray(weights, jnp.float32)

  def update_fn(updates, state, params=None, **extra_args):
    del params, extra_args
    return jax.tree.map(lambda g: jnp.tensordot(weights.astype(g.dtype), g, axes=1), updates), state

  return optax.GradientTransformationExtraArgs(lambda params: optax.EmptyState(), update_fn)
