"""A tiny decoder-style vision-language model (the LLaVA recipe at toy scale).

``image -> vision (patch encoder) -> projector -> visual tokens``, placed as a prefix in
front of the text tokens of a small causal language model ``lm``; the LM's logits at the
text positions are the output (next-token prediction; for a VQA batch the answer is read at
the ``?`` position). Used to reproduce the modality-bias factors of Zheng et al., "MLLMs are
Deeply Affected by Modality Bias" (arXiv:2505.18657); see ``experiments/mllm_bias/``.

Attention pattern (prefix-LM, as PaliGemma): visual tokens attend to every visual token
(bidirectionally; a raster order has no meaning for an image) and never to text; text token
``t`` attends to every visual token and to text tokens ``<= t``. So a text position's logits
depend on the image and on earlier text only, and the visual tokens do not depend on the text.

Precision: parameters are always float32. With ``dtype=jnp.bfloat16`` matmuls and activations
are bfloat16, while attention scores/softmax, LayerNorm statistics and the output logits stay
float32.
"""
from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from mmbal.labels import SHARED, param_labels

VLM_GROUPS = ("vision", "projector", "lm")


def _check_positive(**values):
  for name, value in values.items():
    if not isinstance(value, (int, np.integer)) or value < 1:
      raise ValueError(f"TinyVLM: {name} must be a positive int, got {value!r}")


def attention_mask(num_prefix: int, num_text: int) -> np.ndarray:
  """``[S, S]`` bool, ``S = num_prefix + num_text``: True where query row may attend key column.

  Prefix rows see the whole prefix; text row ``t`` sees the prefix and text ``<= t``.
  """
  size = num_prefix + num_text
  mask = np.tril(np.ones((size, size), bool))
  mask[:num_prefix, :num_prefix] = True
  return mask


class MLP(nnx.Module):
  def __init__(self, dim: int, hidden: int, *, dtype, rngs: nnx.Rngs):
    self.up = nnx.Linear(dim, hidden, dtype=dtype, rngs=rngs)
    self.down = nnx.Linear(hidden, dim, dtype=dtype, rngs=rngs)

  def __call__(self, x):
    return self.down(jax.nn.gelu(self.up(x)))


class SelfAttention(nnx.Module):
  """Multi-head self-attention with a static boolean mask; returns ``(out, probs)``,
  ``probs`` float32 ``[B, heads, S, S]`` (masked entries exactly 0)."""

  def __init__(self, dim: int, heads: int, *, dtype, rngs: nnx.Rngs):
    self.heads, self.dtype = heads, dtype
    self.qkv = nnx.Linear(dim, 3 * dim, dtype=dtype, rngs=rngs)
    self.out = nnx.Linear(dim, dim, dtype=dtype, rngs=rngs)

  def __call__(self, x, mask):
    b, s, d = x.shape
    q, k, v = jnp.moveaxis(self.qkv(x).reshape(b, s, 3, self.heads, d // self.heads), 2, 0)
    scores = jnp.einsum("bqhd,bkhd->bhqk", q, k, preferred_element_type=jnp.float32)
    scores = jnp.where(mask, scores / math.sqrt(d // self.heads), -jnp.inf)
    probs = jax.nn.softmax(scores, axis=-1)   # every row attends somewhere: no all -inf row
    out = jnp.einsum("bhqk,bkhd->bqhd", probs.astype(self.dtype), v).reshape(b, s, d)
    return self.out(out), probs


class Block(nnx.Module):
  """Pre-LN transformer block: ``x + attn(LN(x))``, then ``x + mlp(LN(x))``."""

  def __init__(self, dim: int, heads: int, mlp_ratio: int, *, dtype, rngs: nnx.Rngs):
    self.norm1 = nnx.LayerNorm(dim, dtype=dtype, rngs=rngs)
    self.attn = SelfAttention(dim, heads, dtype=dtype, rngs=rngs)
    self.norm2 = nnx.LayerNorm(dim, dtype=dtype, rngs=rngs)
    self.mlp = MLP(dim, mlp_ratio * dim, dtype=dtype, rngs=rngs)

  def __call__(self, x, mask):
    h, probs = self.attn(self.norm1(x), mask)
    x = x + h
    return x + self.mlp(self.norm2(x)), probs


class PatchEncoder(nnx.Module):
  """Vision encoder: non-overlapping ``p x p`` patches (raster order) flattened -> Linear
  -> + learned positions -> a pre-LN residual MLP applied per patch -> LayerNorm.
  ``[B, H, W, C] -> [B, N, dim]``, ``N = (H / p) * (W / p)``. (A per-patch encoder, as the
  pilot: patches are mixed only by the LM's attention.)"""

  def __init__(self, image_size: int, patch_size: int, channels: int, dim: int, mlp_ratio: int,
               *, dtype, rngs: nnx.Rngs):
    self.patch_size, self.dtype = patch_size, dtype
    self.num_patches = (image_size // patch_size) ** 2
    self.embed = nnx.Linear(patch_size * patch_size * channels, dim, dtype=dtype, rngs=rngs)
    self.position = nnx.Param(nnx.initializers.normal(0.02)(rngs.params(), (self.num_patches, dim)))
    self.norm1 = nnx.LayerNorm(dim, dtype=dtype, rngs=rngs)
    self.mlp = MLP(dim, mlp_ratio * dim, dtype=dtype, rngs=rngs)
    self.norm2 = nnx.LayerNorm(dim, dtype=dtype, rngs=rngs)

  def __call__(self, image):
    b, h, w, c = image.shape
    p = self.patch_size
    patches = image.reshape(b, h // p, p, w // p, p, c).transpose(0, 1, 3, 2, 4, 5)
    x = self.embed(patches.reshape(b, self.num_patches, p * p * c).astype(self.dtype))
    x = x + self.position[...].astype(self.dtype)
    x = x + self.mlp(self.norm1(x))
    return self.norm2(x)


class CausalLM(nnx.Module):
  """Token embedding (tied read-out) + learned positions + pre-LN blocks + final LayerNorm.

  ``lm(tokens, prefix=None)``: logits ``[B, T, vocab]`` (float32) of the text positions;
  ``prefix`` ``[B, N, dim]`` (visual tokens) is prepended without positions of its own
  (they carry the vision encoder's). ``return_attention=True`` adds the text-query rows of
  every layer's attention, ``[L, B, heads, T, N + T]``.
  """

  def __init__(self, vocab_size: int, dim: int, depth: int, heads: int, max_text_len: int,
               mlp_ratio: int, *, dtype, rngs: nnx.Rngs):
    self.dtype, self.max_text_len = dtype, max_text_len
    self.embed = nnx.Embed(vocab_size, dim, dtype=dtype, rngs=rngs)
    self.position = nnx.Param(nnx.initializers.normal(0.02)(rngs.params(), (max_text_len, dim)))
    self.blocks = nnx.List([Block(dim, heads, mlp_ratio, dtype=dtype, rngs=rngs)
                            for _ in range(depth)])
    self.norm = nnx.LayerNorm(dim, dtype=dtype, rngs=rngs)

  def token_embedding(self, tokens):
    """float32 ``[..., dim]`` rows of the (tied) embedding table."""
    return jnp.take(self.embed.embedding[...], tokens, axis=0)

  def __call__(self, tokens, prefix=None, *, return_attention: bool = False):
    _check_tokens(tokens, self.max_text_len)
    num_text = tokens.shape[1]
    x = self.embed(tokens) + self.position[...][:num_text].astype(self.dtype)
    num_prefix = 0
    if prefix is not None:
      num_prefix = prefix.shape[1]
      x = jnp.concatenate([prefix.astype(self.dtype), x], axis=1)
    mask = jnp.asarray(attention_mask(num_prefix, num_text))
    attention = []
    for block in self.blocks:
      x, probs = block(x, mask)
      attention.append(probs[:, :, num_prefix:, :])
    h = self.norm(x[:, num_prefix:])
    table = self.embed.embedding[...].astype(self.dtype)
    logits = jnp.einsum("btd,vd->btv", h, table, preferred_element_type=jnp.float32)
    return (logits, jnp.stack(attention)) if return_attention else logits


def _check_tokens(tokens, max_text_len):
  if tokens.ndim != 2:
    raise ValueError(f"tokens must be [batch, text_len], got shape {tokens.shape}")
  if not jnp.issubdtype(tokens.dtype, jnp.integer):
    raise ValueError(f"tokens must be integer token ids, got dtype {tokens.dtype}")
  if not 1 <= tokens.shape[1] <= max_text_len:
    raise ValueError(f"tokens has text_len {tokens.shape[1]}; the model's max_text_len is "
                     f"{max_text_len} (and at least 1 token is needed)")


class TinyVLM(nnx.Module):
  """Patch-encoder vision side + linear projector + causal LM; visual tokens are a prefix.

  ``model(image [B, H, W, C] float, tokens [B, T] int)`` -> float32 logits ``[B, T, vocab]``
  (text positions), or ``(logits, attention)`` with ``return_attention=True``,
  ``attention [L, B, heads, T, N_vis + T]`` (text-query rows; key columns visual first).
  """

  def __init__(self, *, vocab_size: int, image_size: int, patch_size: int = 4, channels: int = 3,
               dim: int = 64, depth: int = 2, heads: int = 4, max_text_len: int = 16,
               mlp_ratio: int = 4, dtype=jnp.float32, rngs: nnx.Rngs):
    _check_positive(vocab_size=vocab_size, image_size=image_size, patch_size=patch_size,
                    channels=channels, dim=dim, depth=depth, heads=heads,
                    max_text_len=max_text_len, mlp_ratio=mlp_ratio)
    if image_size % patch_size:
      raise ValueError(f"TinyVLM: image_size={image_size} must be divisible by "
                       f"patch_size={patch_size}")
    if dim % heads:
      raise ValueError(f"TinyVLM: dim={dim} must be divisible by heads={heads}")
    if not jnp.issubdtype(dtype, jnp.floating):
      raise ValueError(f"TinyVLM: dtype must be a float dtype (float32 or bfloat16), got {dtype}")
    self.image_size, self.channels, self.vocab_size = image_size, channels, vocab_size
    self.vision = PatchEncoder(image_size, patch_size, channels, dim, mlp_ratio, dtype=dtype,
                               rngs=rngs)
    self.projector = nnx.Linear(dim, dim, dtype=dtype, rngs=rngs)
    self.lm = CausalLM(vocab_size, dim, depth, heads, max_text_len, mlp_ratio, dtype=dtype,
                       rngs=rngs)
    self.num_visual_tokens = self.vision.num_patches

  def check_image(self, image):
    want = (self.image_size, self.image_size, self.channels)
    if image.ndim != 4 or tuple(image.shape[1:]) != want:
      raise ValueError(f"image must be [batch, {want[0]}, {want[1]}, {want[2]}] (the model's "
                       f"image_size and channels), got shape {tuple(image.shape)}")
    if not jnp.issubdtype(image.dtype, jnp.floating):
      raise ValueError(f"image must be float (pixels in [0, 1]; divide uint8 images by 255), "
                       f"got dtype {image.dtype}")

  def encode_image(self, image):
    """Visual tokens ``[B, N, dim]``: the projector applied to the vision encoder's output."""
    self.check_image(image)
    return self.projector(self.vision(image))

  def decode(self, visual_tokens, tokens, *, return_attention: bool = False):
    """The LM over ``[visual_tokens; embed(tokens)]``; logits of the text positions."""
    if visual_tokens.shape[0] != tokens.shape[0]:
      raise ValueError(f"image batch {visual_tokens.shape[0]} != tokens batch {tokens.shape[0]}")
    return self.lm(tokens, visual_tokens, return_attention=return_attention)

  def __call__(self, image, tokens, *, return_attention: bool = False):
    _check_tokens(tokens, self.lm.max_text_len)
    return self.decode(self.encode_image(image), tokens, return_attention=return_attention)


def lm_only_logits(model: TinyVLM | CausalLM, tokens):
  """The language model alone on ``tokens`` (no image, no prefix): ``[B, T, vocab]``.

  The text-only path, e.g. to pretrain the LM on question -> answer text before plugging it
  into a VLM. (Positions are the same as in the VLM: text positions start at 0.)
  """
  lm = model.lm if isinstance(model, TinyVLM) else model
  return lm(tokens)


def vlm_groups(model: TinyVLM, params=None):
  """Label pytree over the params (default: ``nnx.to_pure_dict(nnx.state(model, nnx.Param))``,
  as `make_vlm_apply` returns them): ``"vision" | "projector" | "lm"`` per leaf."""
  labels = param_labels(model, {g: getattr(model, g) for g in VLM_GROUPS}, params)
  if SHARED in jax.tree.leaves(labels):
    raise ValueError("vlm_groups: some parameters belong to no group")
  return labels


def vlm_modality_labels(model: TinyVLM, params=None, *, text: str = "embedding"):
  """Labels for mmbal's balancing transforms: ``"vision"`` (vision encoder + projector),
  ``"text"`` and ``"shared"``, e.g. for
  ``mmbal.transforms.ogm_ge(vlm_modality_labels(model), alpha=...)``.

  ``text="embedding"``: the token embedding is the text 'encoder' (tied with the read-out);
  the rest of the LM, which fuses both, is shared. ``text="lm"``: the whole LM is ``"text"``,
  so a modulation of the text side reaches the transformer blocks, where a language prior is
  stored (damping only the embeddings leaves it untouched)."""
  if text not in ("embedding", "lm"):
    raise ValueError(f"text: expected 'embedding' or 'lm', got {text!r}")
  owner = model.lm.embed if text == "embedding" else model.lm
  return param_labels(model, {"vision": [model.vision, model.projector], "text": owner}, params)


def make_vlm_apply(model: TinyVLM):
  """``(apply, params)``: ``apply(params, image, tokens, *, return_attention=False)`` is the
  pure functional form of ``model`` (``params`` a nested dict of arrays)."""
  graphdef, params, rest = nnx.split(model, nnx.Param, ...)

  def apply(params, image, tokens, *, return_attention: bool = False):
    return nnx.merge(graphdef, params, rest)(image, tokens, return_attention=return_attention)

  return apply, nnx.to_pure_dict(params)


def load_pretrained(model: TinyVLM, **sources) -> TinyVLM:
  """Copies pretrained weights into ``model`` in place: ``load_pretrained(vlm, lm=other.lm,
  vision=clf.vision)``; each keyword is a group (``vision | projector | lm``) and its value a
  module of the same architecture (or its ``nnx.state``). Returns ``model``.

  The values are copied (not shared), so training ``model`` leaves the source untouched.
  Raises if a group is unknown or a parameter's path or shape differs.
  """
  for group, source in sources.items():
    if group not in VLM_GROUPS:
      raise ValueError(f"load_pretrained: unknown group {group!r}; expected one of {VLM_GROUPS}")
    target = getattr(model, group)
    new = source if isinstance(source, nnx.State) else nnx.state(source)
    new_flat = dict(nnx.to_flat_state(new))
    old_flat = dict(nnx.to_flat_state(nnx.state(target)))
    if set(new_flat) != set(old_flat):
      diff = sorted(set(new_flat) ^ set(old_flat))[:5]
      raise ValueError(f"load_pretrained: {group} parameters differ in structure, e.g. {diff}")
    for path, var in old_flat.items():
      got = new_flat[path][...]
      if got.shape != var[...].shape:
        raise ValueError(f"load_pretrained: {group} parameter {'/'.join(map(str, path))} has "
                         f"shape {got.shape}, the model expects {var[...].shape}")
    nnx.update(target, jax.tree.map(jnp.array, new))   # jnp.array copies
  return model
