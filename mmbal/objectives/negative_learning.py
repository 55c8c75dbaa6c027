"""MNL: Multimodal Negative Learning (Gong, Gao, Zhu, Hu, Cao; NeurIPS 2025, arXiv 2510.20877)."""
from __future__ import annotations

import jax
import jax.numpy as jnp

from mmbal.scores import dominant_modality


NORMALIZE = ("per_class", "per_sample")


def negative_learning(unimodal_logits, labels, *, weight: float = 0.7, competitor_logits=None,
                      released_code: bool = False, normalize: str = "per_class"):
  """MNL's guidance loss: the per-sample dominant modality teaches the others its
  distribution over the NON-target classes. Returns ``(loss, dominant [B])``.

  Per sample i, the robust dominant modality d (`mmbal.scores.dominant_modality`: the
  largest unimodal confidence margin ``xi_m = z^m_y - z^m_j`` and the largest target
  probability ``p^m_y`` must agree; otherwise the sample gets no guidance). Every other
  modality m (any number of modalities, not only two) is guided::

      MNL_i = - sum_{m != d} sum_{c != y} sg(p^d_c) log p^m_c
      loss  = weight * mean_i MNL_i / C     (normalize="per_class", the default)
      loss  = weight * mean_i MNL_i         (normalize="per_sample")

  The scale: the released code averages the guidance over B x C entries, so its strength at
  a given ``weight`` is that of ``per_class``; ``per_sample`` (the paper's formula read as a
  per-sample sum) is C times stronger at the same ``weight`` (10x on mfeat), so the paper's
  ``weight`` means what it does in the code only with ``per_class``.

  ``competitor_logits``: None = each modality's own strongest non-target class in the
  margin (the paper); the fused logits = the released code's choice.
  ``released_code=True`` reproduces ``train_latefusion.py``: the guided weak modality also
  gets its own cross-entropy and the sum is averaged over B x C (effective weight w / C)::

      loss = mean_i sum_{m != d} [ -log p^m_y - weight * sum_{c != y} sg(p^d_c) log p^m_c ] / C

  ``unimodal_logits``: ``[M, B, C]``; ``labels``: ``[B]`` integer classes.
  """
  if normalize not in NORMALIZE:
    raise ValueError(f"normalize must be one of {NORMALIZE}, got {normalize!r}")
  num, _, classes = unimodal_logits.shape
  dominant = dominant_modality(unimodal_logits, labels, competitor_logits)
  is_dominant = jax.nn.one_hot(dominant, num, axis=0)                      # [M, B]; 0 if undecided
  is_weak = (dominant >= 0)[None] * (1.0 - is_dominant)                    # guided modalities
  logp = jax.nn.log_softmax(unimodal_logits, axis=-1)
  teacher = jax.lax.stop_gradient(jnp.einsum("mb,mbc->bc", is_dominant, jnp.exp(logp)))
  non_target = 1.0 - jax.nn.one_hot(labels, classes)
  guidance = -jnp.einsum("bc,bc,mbc->mb", non_target, teacher, logp)       # [M, B]
  if not released_code:
    scale = 1.0 / classes if normalize == "per_class" else 1.0
    return weight * scale * (is_weak * guidance).sum(0).mean(), dominant
  target_nll = -jnp.take_along_axis(logp, labels[None, :, None], axis=-1)[..., 0]
  return (is_weak * (target_nll + weight * guidance)).sum(0).mean() / classes, dominant
