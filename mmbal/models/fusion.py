"""Fusion modules: ``[M, B, D]`` stacked modality features -> ``[B, fused_dim]``.

All support any number of modalities M. ``present`` ([B, M], optional) marks which
modalities an example has; absent ones are zeroed (or masked out of attention).
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx


def _mask(features, present):
  return features if present is None else features * present.T[..., None]


class ConcatFusion(nnx.Module):
  """``[h_1; ...; h_M]`` (late fusion by concatenation, as in OGM-GE)."""

  def __init__(self, num_modalities: int, dim: int, *, rngs: nnx.Rngs):
    del rngs
    self.out_dim = num_modalities * dim

  def __call__(self, features, present=None):
    features = _mask(features, present)
    return jnp.transpose(features, (1, 0, 2)).reshape(features.shape[1], -1)


class SumFusion(nnx.Module):
  """``sum_m h_m``."""

  def __init__(self, num_modalities: int, dim: int, *, rngs: nnx.Rngs):
    del num_modalities, rngs
    self.out_dim = dim

  def __call__(self, features, present=None):
    return _mask(features, present).sum(axis=0)


class FiLMFusion(nnx.Module):
  """Feature-wise linear modulation (Perez et al., 2018), chained over modalities.

  ``h <- gamma(h_m) * h + beta(h_m)`` for m = 2..M, starting from ``h = h_1``.
  """

  def __init__(self, num_modalities: int, dim: int, *, rngs: nnx.Rngs):
    self.film = nnx.List([nnx.Linear(dim, 2 * dim, rngs=rngs) for _ in range(num_modalities - 1)])
    self.out_dim = dim

  def __call__(self, features, present=None):
    features = _mask(features, present)
    h = features[0]
    for m, layer in enumerate(self.film, start=1):
      gamma, beta = jnp.split(layer(features[m]), 2, axis=-1)
      h = (1.0 + gamma) * h + beta
    return h


class GatedFusion(nnx.Module):
  """Gated multimodal unit (Arevalo et al., 2017) for M modalities.

  ``z = softmax_m(W_g [h_1; ...; h_M])``, ``h = sum_m z_m * tanh(W_m h_m)``.
  """

  def __init__(self, num_modalities: int, dim: int, *, rngs: nnx.Rngs):
    self.num = num_modalities
    self.gate = nnx.Linear(num_modalities * dim, num_modalities * dim, rngs=rngs)
    self.proj = nnx.Param(nnx.initializers.lecun_normal(in_axis=-2, out_axis=-1)(
        rngs.params(), (num_modalities, dim, dim)))
    self.out_dim = dim

  def __call__(self, features, present=None):
    features = _mask(features, present)
    m, b, d = features.shape
    gates = self.gate(jnp.transpose(features, (1, 0, 2)).reshape(b, m * d)).reshape(b, m, d)
    if present is not None:
      gates = jnp.where(present[..., None] > 0, gates, -1e9)
    gates = jax.nn.softmax(gates, axis=1)
    values = jnp.tanh(jnp.einsum("mbd,mde->bme", features, self.proj[...]))
    return (gates * values).sum(axis=1)


class AttentionFusion(nnx.Module):
  """One self-attention layer over modality tokens (+ learned modality embeddings), mean-pooled."""

  def __init__(self, num_modalities: int, dim: int, *, num_heads: int = 4, rngs: nnx.Rngs):
    heads = num_heads if dim % num_heads == 0 else 1
    self.embed = nnx.Param(0.02 * jax.random.normal(rngs.params(), (num_modalities, dim)))
    self.attn = nnx.MultiHeadAttention(num_heads=heads, in_features=dim, decode=False, rngs=rngs)
    self.norm = nnx.LayerNorm(dim, rngs=rngs)
    self.out_dim = dim

  def __call__(self, features, present=None):
    tokens = jnp.transpose(features, (1, 0, 2)) + self.embed[...]   # [B, M, D]
    mask = None
    if present is not None:
      keep = present > 0
      mask = keep[:, None, None, :]                                 # [B, 1, Q, K]
      tokens = tokens * keep[..., None]
    h = self.norm(tokens + self.attn(tokens, mask=mask))
    if present is None:
      return h.mean(axis=1)
    weights = present[..., None]
    return (h * weights).sum(axis=1) / jnp.maximum(weights.sum(axis=1), 1.0)


FUSIONS = {"concat": ConcatFusion, "sum": SumFusion, "film": FiLMFusion,
           "gated": GatedFusion, "attention": AttentionFusion}
