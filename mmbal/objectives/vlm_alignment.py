"""Cross-modal objectives added to a decoder VLM's next-token loss (factor 3 of Zheng et al.,
"MLLMs are Deeply Affected by Modality Bias", arXiv:2505.18657): next-token prediction alone
lets the model answer from the question; these terms make the image matter from step 1.

* `infonce_alignment`: CLIP's symmetric InfoNCE between image and text features (Radford et
  al., "Learning Transferable Visual Models From Natural Language Supervision", ICML 2021,
  arXiv:2103.00020), with soft targets so that duplicate captions in a batch are not
  negatives of each other.
* `counterfactual_hinge`: the answer must be more likely with the true image than with
  another sample's image (a counterfactual-image margin, in the spirit of counterfactual VQA
  training, e.g. Chen et al., "Counterfactual Samples Synthesizing", CVPR 2020,
  arXiv:2003.06576).
"""
from __future__ import annotations

import jax
import jax.numpy as jnp


def _unit_rows(x):
  """Rows scaled to unit L2 norm; a zero row stays zero. Rows are first divided by their
  (constant) max|x| so squares of huge (1e30) entries do not overflow."""
  x = x.astype(jnp.float32)
  peak = jax.lax.stop_gradient(jnp.max(jnp.abs(x), axis=-1, keepdims=True))
  x = x / jnp.where(peak > 0, peak, 1.0)
  norm2 = jnp.sum(x * x, axis=-1, keepdims=True)
  return x * jax.lax.rsqrt(jnp.where(norm2 > 0, norm2, 1.0))


def same_rows_targets(keys):
  """``[B, B]`` float32: 1 where rows ``i`` and ``j`` of ``keys`` (``[B, ...]``, e.g. caption
  token ids) are equal, else 0 (the identity when all rows differ)."""
  flat = keys.reshape(keys.shape[0], -1)
  return (flat[:, None, :] == flat[None, :, :]).all(-1).astype(jnp.float32)


def infonce_alignment(visual_features, text_features, *, temperature: float = 0.1, targets=None):
  r"""Symmetric InfoNCE (CLIP) between ``visual_features [B, D]`` and ``text_features [B, D]``.

  With ``v_i, t_j`` L2-normalised and ``s_ij = <v_i, t_j> / temperature``::

      L_v2t = -1/B sum_i sum_j T_ij        log softmax_j(s_i.)
      L_t2v = -1/B sum_j sum_i T'_ji       log softmax_i(s_.j)
      loss  = (L_v2t + L_t2v) / 2

  ``T`` = ``targets`` (``[B, B]``, non-negative, e.g. `same_rows_targets` of the captions:
  duplicates are positives) with rows normalised to sum 1, ``T'`` = ``targets.T`` likewise;
  default the identity (CLIP). A zero feature row gives uniform similarities (finite loss).
  Rows of ``targets`` must contain a positive entry (the diagonal, for equality targets).
  """
  if visual_features.ndim != 2 or visual_features.shape != text_features.shape:
    raise ValueError(f"infonce_alignment: visual_features and text_features must both be "
                     f"[B, D], got {visual_features.shape} and {text_features.shape}")
  if temperature <= 0:
    raise ValueError(f"infonce_alignment: temperature must be > 0, got {temperature}")
  batch = visual_features.shape[0]
  sim = _unit_rows(visual_features) @ _unit_rows(text_features).T / temperature
  if targets is None:
    targets = jnp.eye(batch, dtype=jnp.float32)
  elif targets.shape != (batch, batch):
    raise ValueError(f"infonce_alignment: targets must be [{batch}, {batch}], got {targets.shape}")
  targets = jnp.asarray(targets, jnp.float32)

  def direction(scores, weights):
    weights = weights / jnp.maximum(weights.sum(-1, keepdims=True), 1e-12)
    return -(weights * jax.nn.log_softmax(scores, axis=-1)).sum(-1).mean()

  return 0.5 * (direction(sim, targets) + direction(sim.T, targets.T))


def counterfactual_hinge(logp_true_with_image, logp_true_with_other_image, differs, *,
                         margin: float = 1.0):
  r"""Counterfactual-image hinge over pairs whose images differ::

      loss = sum_i d_i relu(margin - (log p(y_i|v_i, q_i) - log p(y_i|v'_i, q_i))) / max(sum_i d_i, 1)

  ``logp_true_with_image`` ``[B]``: log-probability of the true answer with the sample's own
  image; ``logp_true_with_other_image`` ``[B]``: the same answer and question with another
  sample's image ``v'_i`` (e.g. the batch rolled by one); ``differs`` ``[B]`` (bool or 0/1):
  whether ``v'_i`` differs from ``v_i`` in what the question asks (only those pairs count).
  0 when no pair differs. Finite for any log-probabilities (values <= 0).
  """
  a = jnp.asarray(logp_true_with_image, jnp.float32)
  b = jnp.asarray(logp_true_with_other_image, jnp.float32)
  if a.ndim != 1 or a.shape != b.shape or jnp.shape(differs) != a.shape:
    raise ValueError(f"counterfactual_hinge: the three inputs must be [B] vectors, got "
                     f"{a.shape}, {b.shape} and {jnp.shape(differs)}")
  d = jnp.asarray(differs).astype(jnp.float32)
  hinge = jax.nn.relu(margin - (a - b))
  return jnp.sum(jnp.where(d > 0, d * hinge, 0.0)) / jnp.maximum(jnp.sum(d), 1.0)
