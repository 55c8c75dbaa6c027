"""MLA's gradient projection on the shared head (Zhang, Yoon, Bansal, Yao; CVPR 2024)."""
from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from mmbal.transforms._checks import TransformInputError, check_extra_args


class OwmState(NamedTuple):
  projector: jax.Array   # [D, D] P, shared by all modalities
  count: jax.Array       # updates seen; the first one is not projected


def owm_projection(mask: Any, dim: int, *, mode: str = "replace"
                   ) -> optax.GradientTransformationExtraArgs:
  """Orthogonal weight modification of the shared head's kernel between modality steps.

  MLA (Multimodal Learning with Alternating unimodal adaptation) trains one shared head
  on each modality in turn; to keep a step on modality m from erasing what the head
  learned from the others, the head's kernel gradient is projected with a recursive
  least-squares projector P built from the mean features of the steps so far::

      r = mean_batch(h_m)            alpha = 0.1 ** (1 + progress)
      k = P r                        P <- P - k k^T / (alpha + r . k);  P <- P / ||P||_F
      grad_K <- P grad_K             (torch: grad_W <- grad_W P^T with W = K^T)

  The very first update is neither recorded nor projected (the official ``exp_count == 0``).
  ``progress`` is the position in the epoch (batch index / batches per epoch).
  ``mode="replace"`` is the paper's projection; ``"add"`` reproduces BalanceBenchmark's
  ``grad += grad P^T``. The released MLA code never fires its projection (it matches the
  parameter name ``module.weight`` on a bare Linear); BalanceBenchmark's denominator
  ``alpha + k r`` is an outer product (a ``[D, D]`` elementwise division) where OWM has
  the scalar ``r . k`` used here.

  ``mask``: pytree of bools like the params (or a callable returning one); True leaves are
  ``[D, C]`` kernels to project. Extra args: ``feature_mean`` ``[D]``, ``progress`` scalar.
  """
  if mode not in ("replace", "add"):
    raise ValueError(f"mode must be 'replace' or 'add', got {mode!r}")

  def init(params):
    del params
    return OwmState(jnp.eye(dim, dtype=jnp.float32), jnp.zeros((), jnp.int32))

  def update(updates, state, params=None, *, feature_mean=None, progress=0.0, **extra):
    check_extra_args("owm_projection", extra, dict(feature_mean=feature_mean))
    if feature_mean is None:
      raise TransformInputError(f"owm_projection: pass the extra argument feature_mean=[{dim}] (the "
                                f"batch mean of the features the projected kernels read)")
    chosen = mask(params if params is not None else updates) if callable(mask) else mask
    alpha = 0.1 ** (1.0 + progress)
    r = jax.lax.stop_gradient(feature_mean).astype(jnp.float32)
    # With u = r / |r|: k k^T / (alpha + r.k) = (P u)(P u)^T / (alpha / |r|^2 + u.P u), which
    # neither overflows for huge features nor divides by zero for zero ones.
    largest = jnp.maximum(jnp.abs(r).max(), 1e-30)
    length = jnp.linalg.norm(r / largest)
    u = r / largest / jnp.maximum(length, 1e-30)
    size = largest * length                       # |r| (its square may overflow to inf: fine)
    pu = state.projector @ u
    denominator = jnp.maximum(alpha / jnp.maximum(size, 1e-30) ** 2 + u @ pu, 1e-30)
    moved = state.projector - jnp.outer(pu, pu) / denominator
    moved = moved / jnp.maximum(jnp.linalg.norm(moved), 1e-30)
    first = state.count == 0
    projector = jnp.where(first, state.projector, moved)

    def project(g, selected):
      if not selected:
        return g
      if g.ndim != 2 or g.shape[0] != dim:
        raise ValueError(f"owm_projection: masked leaves must be [{dim}, C] kernels, got {g.shape}")
      p = projector.astype(g.dtype) @ g
      return jnp.where(first, g, p if mode == "replace" else g + p)

    updates = jax.tree.map(project, updates, chosen)
    return updates, OwmState(projector, state.count + 1)

  return optax.GradientTransformationExtraArgs(init, update)
