"""Visual contrastive decoding: an inference-time mitigation of the language prior.

Leng, Zhang, Chen, Li, Lu, Miao, Bing, "Mitigating Object Hallucinations in Large
Vision-Language Models through Visual Contrastive Decoding", CVPR 2024. The answer
distribution contrasts the logits with the real image against those with a distorted image
(or no image), which carry the language prior but not the visual evidence::

    z_vcd = (1 + alpha) z(y | v, q) - alpha z(y | v', q)
    z_vcd[y] = -inf  where  p(y | v, q) < beta * max_w p(w | v, q)   (adaptive plausibility)

so answers the image supports gain and answers the prior alone supports lose, while the
plausibility constraint keeps implausible answers (which the contrast could otherwise
inflate) out. ``alpha = 0`` is plain decoding. The paper distorts the image with diffusion
noise; any reference works here (a noised image, a blank one, the no-image pass).
"""
from __future__ import annotations

import jax
import jax.numpy as jnp


def contrastive_logits(full, reference, *, alpha: float = 1.0, beta: float = 0.1):
  """``[..., K]`` contrastive logits from the full and the reference logits (same shape).

  ``alpha >= 0``: contrast strength; ``beta`` in [0, 1]: the plausibility cut relative to the
  most probable answer under the full input (0: no cut). Pure jnp.
  """
  if alpha < 0 or not 0.0 <= beta <= 1.0:
    raise ValueError(f"contrastive_logits: expected alpha >= 0 and beta in [0, 1], got "
                     f"alpha={alpha}, beta={beta}")
  full, reference = jnp.asarray(full, jnp.float32), jnp.asarray(reference, jnp.float32)
  if full.shape != reference.shape:
    raise ValueError(f"contrastive_logits: full {full.shape} and reference {reference.shape} "
                     f"logits must have the same shape")
  contrast = (1.0 + alpha) * full - alpha * reference
  log_p = jax.nn.log_softmax(full, axis=-1)
  plausible = log_p >= jnp.log(beta) + log_p.max(-1, keepdims=True) if beta > 0 else True
  return jnp.where(plausible, contrast, -jnp.inf)
