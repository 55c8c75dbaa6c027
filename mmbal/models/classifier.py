"""The multimodal classifier every balancing method trains.

One forward pass returns the fused logits and per-modality (unimodal) logits, which
come in three flavours (``unimodal=``):

* ``"probe"``: a linear head per modality on ``stop_gradient(h_m)``. It measures how much
  each encoder has learned without changing training (a linear probe trained online).
* ``"heads"``: a linear head per modality on ``h_m``; its loss trains encoder m (unimodal
  auxiliary objectives, as in MMPareto / G-Blending / CGGM-style classifiers).
* ``"split_head"``: the fused head applied to one modality's features, as OGM-GE does:
  concat fusion ``z_m = W[:, block m] h_m + b / M``; sum fusion ``z_m = W h_m + b / M``,
  so that ``sum_m z_m`` equals the fused logits.
* ``"shared_head"``: one head ``h`` for every modality, ``z_m = h(h_m)`` (MLA's shared head);
  needs a late fusion.

``dtype="bfloat16"``: the encoders compute in bfloat16 (mixed precision: parameters, fusion,
heads and losses stay float32; the features are cast back before the fusion).

``missing="learned"``: where ``present`` marks a modality absent, its features are replaced by
a learned vector (trained when `train.modality_dropout` drops modalities); the default
``"zero"`` zeroes it in the fusion.

Late fusions combine the unimodal logits instead of features (``unimodal`` "heads" or
"shared_head"): ``fusion="late"`` averages them (MNL's late-fusion baseline);
``fusion="late_entropy"`` weights them per sample by ``softmax_m(-H(softmax(z_m)))``, MLA's
test-time fusion ``lambda_m = exp(max_k e_k - e_m) / sum_j exp(max_k e_k - e_j)``.
"""
from __future__ import annotations

from typing import Mapping, NamedTuple, Sequence

import jax
import jax.numpy as jnp
from flax import nnx

from mmbal.labels import SHARED, param_labels
from mmbal.modalities import Modality, as_modalities
from mmbal.models.encoders import make_encoder
from mmbal.models.fusion import FUSIONS

UNIMODAL_MODES = ("probe", "heads", "split_head", "shared_head")
LATE_FUSIONS = ("late", "late_entropy")
COMPUTE_DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16}


class Outputs(NamedTuple):
  logits: jax.Array            # [B, C] fused
  unimodal_logits: jax.Array   # [M, B, C], modalities in model order
  features: jax.Array          # [M, B, D] encoder outputs


class MultimodalClassifier(nnx.Module):
  """Per-modality encoders -> fusion -> linear head, plus unimodal logits."""

  def __init__(self, modalities: Sequence[Modality] | Mapping[str, Sequence[int]], num_classes: int,
               *, feature_dim: int = 64, hidden_dim: int = 128, fusion: str = "concat",
               unimodal: str = "probe", image_encoder: str = "cnn", missing: str = "zero",
               dtype: str = "float32", rngs: nnx.Rngs):
    self.modalities = as_modalities(modalities)
    if fusion not in FUSIONS and fusion not in LATE_FUSIONS:
      raise ValueError(f"fusion must be one of {sorted(FUSIONS) + list(LATE_FUSIONS)}, "
                       f"got {fusion!r}")
    late = fusion in LATE_FUSIONS
    if late and unimodal not in ("heads", "shared_head"):
      raise ValueError(f"fusion={fusion!r} combines trained unimodal logits: it needs unimodal "
                       f"'heads' or 'shared_head', got {unimodal!r}")
    if unimodal == "shared_head" and not late:
      raise ValueError(f"unimodal='shared_head' needs fusion 'late' or 'late_entropy', got {fusion!r}")
    if unimodal not in UNIMODAL_MODES:
      raise ValueError(f"unimodal must be one of {UNIMODAL_MODES}, got {unimodal!r}")
    if unimodal == "split_head" and fusion not in ("concat", "sum"):
      raise ValueError(f"unimodal='split_head' needs fusion 'concat' or 'sum', got {fusion!r}")
    if dtype not in COMPUTE_DTYPES:
      raise ValueError(f"dtype must be one of {tuple(COMPUTE_DTYPES)}, got {dtype!r}")
    if missing not in ("zero", "learned"):
      raise ValueError(f"missing must be 'zero' or 'learned', got {missing!r}")
    if num_classes < 1:   # 1: a single regression output
      raise ValueError(f"num_classes must be >= 1, got {num_classes}")
    self.names = tuple(m.name for m in self.modalities)
    self.fusion_kind, self.unimodal, self.missing = fusion, unimodal, missing
    if missing == "learned":   # an absent modality's features: a learned vector per modality
      self.fill = nnx.Param(jnp.zeros((len(self.modalities), feature_dim)))
    self.num_classes, self.feature_dim = num_classes, feature_dim
    self.encoders = nnx.Dict({m.name: make_encoder(m, feature_dim, hidden_dim=hidden_dim,
                                                   image_encoder=image_encoder,
                                                   dtype=COMPUTE_DTYPES[dtype], rngs=rngs)
                              for m in self.modalities})
    if not late:
      self.fusion = FUSIONS[fusion](len(self.modalities), feature_dim, rngs=rngs)
      self.head = nnx.Linear(self.fusion.out_dim, num_classes, rngs=rngs)
    elif unimodal == "shared_head":
      self.head = nnx.Linear(feature_dim, num_classes, rngs=rngs)
    if unimodal in ("probe", "heads"):
      self.unimodal_heads = nnx.Dict({n: nnx.Linear(feature_dim, num_classes, rngs=rngs)
                                      for n in self.names})

  def __call__(self, inputs: Mapping[str, jax.Array], present: jax.Array | None = None) -> Outputs:
    """``inputs``: ``{modality: [B, *shape]}``; ``present``: optional ``[B, M]`` 0/1 mask."""
    per_modality = [self.encoders[n](inputs[n]).astype(jnp.float32) for n in self.names]
    features = jnp.stack(per_modality)
    if present is not None and self.missing == "learned":
      features = jnp.where(present.T[..., None] > 0, features, self.fill[...][:, None, :])
      per_modality, present = list(features), None   # the fill stands in for the modality
    unimodal = self._unimodal_logits(features, per_modality)
    if self.fusion_kind in LATE_FUSIONS:
      return Outputs(self.fuse_logits(unimodal, present), unimodal, features)
    return Outputs(self.head(self.fusion(features, present)), unimodal, features)

  def unimodal_forward(self, name: str, x: jax.Array) -> tuple[jax.Array, jax.Array]:
    """``(logits, features)`` of modality ``name`` from its input alone (one encoder, one head)."""
    if self.unimodal == "split_head":
      raise ValueError("unimodal_forward: a split head has no single-modality forward")
    h = self.encoders[name](x).astype(jnp.float32)   # as __call__: heads see float32
    return (self.head if self.unimodal == "shared_head" else self.unimodal_heads[name])(h), h

  def fuse_logits(self, unimodal, present=None):
    """Late fusion: ``sum_m w_{m,i} z_{m,i}`` with mean or entropy weights over the present modalities."""
    if self.fusion_kind == "late":
      scores = jnp.zeros(unimodal.shape[:2])
    else:
      logp = jax.nn.log_softmax(unimodal, axis=-1)
      scores = (jnp.exp(logp) * logp).sum(-1)          # -H(softmax(z_m)), [M, B]
    if present is not None:
      scores = jnp.where(present.T > 0, scores, -jnp.inf)
    anything = jnp.isfinite(scores).any(0)            # rows with no modality get zero logits
    weights = jax.nn.softmax(jnp.where(anything, scores, 0.0), axis=0)
    weights = jnp.where(anything, weights, 0.0)
    return jnp.einsum("mb,mbc->bc", weights, unimodal)

  def _unimodal_logits(self, features, per_modality):
    if self.unimodal == "shared_head":
      return jnp.stack([self.head(h) for h in per_modality])
    if self.unimodal == "split_head":
      kernel, bias = self.head.kernel[...], self.head.bias[...]
      num = len(self.names)
      if self.fusion_kind == "concat":
        blocks = kernel.reshape(num, self.feature_dim, self.num_classes)
        return jnp.einsum("mbd,mdc->mbc", features, blocks) + bias / num
      return jnp.einsum("mbd,dc->mbc", features, kernel) + bias / num
    # Heads read each encoder's output directly, not slices of the stacked features:
    # slicing puts M zero-padded cotangents into the backward pass (slow under vmap).
    if self.unimodal == "probe":
      per_modality = [jax.lax.stop_gradient(h) for h in per_modality]
    return jnp.stack([self.unimodal_heads[n](h) for n, h in zip(self.names, per_modality)])

  def owners(self) -> dict[str, list[nnx.Module]]:
    """Submodules that belong to each modality (the rest is ``shared``)."""
    heads = getattr(self, "unimodal_heads", None)
    return {n: [self.encoders[n]] + ([heads[n]] if heads is not None else []) for n in self.names}

  def objective_supports(self) -> dict[str, tuple[str, ...]]:
    """Which labels each unimodal objective touches (see `mmbal.objective_grads`)."""
    if self.unimodal in ("split_head", "shared_head"):
      return {n: (n, SHARED) for n in self.names}
    return {n: (n,) for n in self.names}


def split(model: nnx.Module):
  """``(graphdef, params, rest)`` with ``params`` a plain nested dict of arrays."""
  graphdef, params, rest = nnx.split(model, nnx.Param, ...)
  return graphdef, nnx.to_pure_dict(params), rest


def labels_for(model: MultimodalClassifier, params=None):
  """The parameter-label pytree of a `MultimodalClassifier`."""
  return param_labels(model, model.owners(), params)
