"""LNLN: Language-dominated Noise-resistant Learning Network (Zhang, Wang, Yu; NeurIPS 2024,
arXiv 2409.20012, "Towards Robust Multimodal Sentiment Analysis with Incomplete Data"), in NNX.

Forward order (paper Eqs. 1-13; the official code's module names in brackets):

1. Embedding E^1_m [``proj_l/proj_a/proj_v``], Eq. 1: ``Linear(D_m -> d)``, ``T`` learnable
   tokens prepended (zeros at init), a positional embedding, a 2-layer pre-LN Transformer;
   ``H^1_m`` = the first ``T`` outputs, ``[B, T, d]``.
2. Dominant Modality Correction (DMC):

   * completeness check [``completeness_check``], Eqs. 5-6: a Transformer over ``H^1_l`` with
     one extra token ``H_cc``; that token's output -> ``Linear(d, d/2)`` -> LeakyReLU(0.1) ->
     ``Linear(d/2, 1)`` -> sigmoid gives ``w`` in [0, 1], trained towards ``1 - r_l``.
   * proxy dominant feature generator [``proxy_dominate_modality_generator``], Eq. 7: a
     Transformer (``T`` extra tokens of its own) over ``[H^0_p; H^1_a; H^1_v]`` (``H^0_p``
     learnable, ones at init as in the code); the first ``T`` outputs are ``H^1_p``.
   * corrected dominant feature, Eq. 8: ``H^1_d = (1 - w) H^1_p + w H^1_l``.
   * effectiveness discriminator D [``effective_discriminator``], Eqs. 9-10: ``Linear(d, 64)``
     -> LeakyReLU(0.1) -> ``Linear(64, 2)``, token-wise, on the generated side (label 1) and on
     the embedding of the *complete* language input ``E^1_l(U^0_l)`` (label 0). A gradient
     reversal layer (`gradient_reversal`, a ``jax.custom_vjp``) makes the generator maximise
     what D minimises.

3. Dominant Modality based Multimodal Learning (DMML, from ALMT):

   * language encoder [``dmml[0]``], Eq. 2: positional embedding + Transformer over ``H^1_d``
     keeping every hidden state: ``[H^1_d, H^2_d, H^3_d]`` (``hyper_depth - 1`` layers).
   * adaptive hyper-modality learning [``dmml[1]``], Eq. 3 (``hyper_depth`` = 3 layers):
     ``H^i_hyper = H^{i-1}_hyper + MHA(H^i_d, H^1_a) + MHA(H^i_d, H^1_v)`` with separate
     LayerNorms for the four inputs and one output projection of the sum; ``H^0_hyper``
     learnable (ones at init).
   * cross-modality fusion Transformer [``dmml[2]``], Eq. 4: target ``H^3_d``, source
     ``H^3_hyper``, a shared cls token prepended to each plus positional embeddings; each layer
     ``target += MHA(target, source, source)``, then an FFN.
   * head [``dmml[3]``]: ``Linear(d, 1)`` (regression) or ``Linear(d, C)`` (classification) on
     the mean of the fusion outputs 1: (not the cls token; the code's choice).

4. Reconstructor [``reconstructor``], Eqs. 11-12: three 2-layer Transformers, see
   ``LNLNConfig.reconstruction``.

Paper vs the official code (``Haoyu-ha/LNLN@80a052c``), each a config field; the defaults
follow the paper's text, `LNLNConfig.official_code` sets every field to the code's behaviour
(the reported numbers were produced by the code):

* ``grl``: ``"discriminator"`` (paper, Eq. 9: the GRL is part of D, which reads
  ``GRL(H^1_p)``; the sentiment loss reaches the generator un-reversed) or ``"proxy"`` (code:
  ``H^1_p <- GRL(H^1_p)`` *before* Eq. 8, D reads ``H^1_d``; every loss that flows through
  ``H^1_p``, the sentiment loss included, is reversed into the generator).
* ``reconstruction``: ``"input"`` (paper Eq. 11, ``U^0_m ~ E^rec_m(U^1_m)``: a Transformer over
  the per-position outputs of E^1_m followed by ``Linear(d, D_m)`` predicts the complete input
  sequence; the loss reads only the erased positions, as TFR-Net, which the paper follows) or
  ``"embedding"`` (code: a Transformer maps the incomplete ``H^1_m`` to the complete
  ``E^1_m(U^0_m)``, all ``T`` tokens, targets not stop-gradient unless
  ``stop_gradient_targets``).
* ``hyper_residual``: ``"raw"`` (Eq. 3, ``H^{i-1}_hyper + ...``) or ``"normed"`` (code: the
  residual adds to ``LayerNorm(H^{i-1}_hyper)``).
* ``mask_padding``: True lets no attention read padded positions (outputs do not depend on
  them); False is the code, whose Transformers attend to the padding of audio/vision and of the
  text features.

Code details kept in both: ``head_dim`` 64 in the Transformers (inner width ``heads * 64``,
not ``d``), ``d / heads`` in hyper-modality learning; exact GELU; LayerNorm eps 1e-5; positional
embeddings ``N(0, 1)`` at init; extra/cls tokens zeros; no dropout (the code's rates are 0).
Weights use PyTorch's default ``nn.Linear`` weight distribution (biases start at zero).

Text input: precomputed features ``[B, L, D_t]`` (the MMSA pickles' BERT ``text``; no hub
download) or, with ``text_vocab_size > 0``, token ids ``[B, L]`` read by a small trainable
text encoder (``Embed`` + ``text_encoder_depth`` Transformer layers at width ``text_dim``),
standing in for the code's fine-tuned BERT.

Usage::

    model = LNLN(LNLNConfig(text_dim=768, audio_dim=5, vision_dim=20, text_len=50,
                            audio_len=375, vision_len=500), rngs=nnx.Rngs(0))
    out = model(inputs, masks, complete=complete, missing=missing)   # training
    out = model(inputs, masks)                                       # evaluation

``inputs``/``masks``/``complete``/``missing`` are ``{"text"|"audio"|"vision": array}``;
`lnln_inputs` extracts them from a batch made by `mmbal.data.missing.random_missing`.
"""
from __future__ import annotations

import dataclasses
from typing import Mapping, NamedTuple

import jax
import jax.numpy as jnp
from flax import nnx

MODALITIES = ("text", "audio", "vision")
GRL_PLACEMENTS = ("discriminator", "proxy")
RECONSTRUCTIONS = ("input", "embedding")
HYPER_RESIDUALS = ("raw", "normed")

_LN_EPS = 1e-5
# PyTorch's nn.Linear weight init, U(-1/sqrt(fan_in), 1/sqrt(fan_in)).
_TORCH_KERNEL = nnx.initializers.variance_scaling(1.0 / 3.0, "fan_in", "uniform")


# ---------------------------------------------------------------- gradient reversal

@jax.custom_vjp
def gradient_reversal(x, alpha=1.0):
  """Gradient reversal layer (Ganin & Lempitsky, 2015): identity forward, ``-alpha * g``
  backward. ``x`` may be any pytree; ``alpha`` a float or a traced scalar (no gradient)."""
  del alpha
  return x


def _grl_fwd(x, alpha):
  return x, alpha


def _grl_bwd(alpha, g):
  return jax.tree.map(lambda t: (-alpha * t).astype(t.dtype), g), jnp.zeros_like(alpha)


gradient_reversal.defvjp(_grl_fwd, _grl_bwd)


def dominant_correction(h1_p, h1_l, w, grl: str = "discriminator", alpha=1.0):
  """Eq. 8 and the discriminator's generated-side input: ``(H^1_d, generated)``.

  ``H^1_d = (1 - w) H^1_p + w H^1_l`` (``w`` ``[B]``). ``grl="discriminator"`` (paper, the GRL
  inside D): ``H^1_d`` is plain and D reads ``GRL(H^1_p)``. ``grl="proxy"`` (code): ``H^1_p``
  passes the GRL *before* the mixing and D reads ``H^1_d``, so every loss behind ``H^1_d``
  (the sentiment loss too) reaches the generator reversed.
  """
  wb = w[:, None, None]
  if grl == "proxy":
    h1_d = (1.0 - wb) * gradient_reversal(h1_p, alpha) + wb * h1_l
    return h1_d, h1_d
  if grl != "discriminator":
    raise ValueError(f"grl must be one of {GRL_PLACEMENTS}, got {grl!r}")
  return (1.0 - wb) * h1_p + wb * h1_l, gradient_reversal(h1_p, alpha)


# ---------------------------------------------------------------- config and outputs

@dataclasses.dataclass(frozen=True)
class LNLNConfig:
  """LNLN's sizes and switches. Defaults: paper Table 1 / the MOSI config (T=8, d=128,
  8 heads) with the paper's fusion depth 4 (the code's MOSI config uses 2).

  ``*_dim``: input feature sizes; ``*_len``: the longest sequence each modality may have
  (positional embeddings). ``num_outputs``: 1 = regression (prediction ``[B]``), C > 1 =
  classification logits ``[B, C]``.
  """
  text_dim: int = 768
  audio_dim: int = 5
  vision_dim: int = 20
  text_len: int = 50
  audio_len: int = 375
  vision_len: int = 500
  dim: int = 128                 # d
  num_tokens: int = 8            # T
  heads: int = 8
  head_dim: int = 64             # Transformers' per-head width (the code's dim_head default)
  mlp_dim: int = 128
  embed_depth: int = 2
  cc_depth: int = 2              # completeness check
  proxy_depth: int = 2           # proxy dominant feature generator
  hyper_depth: int = 3           # hyper-modality layers; the language encoder has one fewer
  fusion_depth: int = 4          # paper 4; the code's MOSI config 2, MOSEI/SIMS 4
  rec_depth: int = 2
  disc_hidden: int = 64
  num_outputs: int = 1
  grl: str = "discriminator"
  grl_alpha: float = 1.0
  reconstruction: str = "input"
  stop_gradient_targets: bool = False
  hyper_residual: str = "raw"
  mask_padding: bool = True
  text_vocab_size: int = 0       # > 0: ``text`` is token ids read by a small text encoder
  text_encoder_depth: int = 1

  def __post_init__(self):
    for name, value, allowed in (("grl", self.grl, GRL_PLACEMENTS),
                                 ("reconstruction", self.reconstruction, RECONSTRUCTIONS),
                                 ("hyper_residual", self.hyper_residual, HYPER_RESIDUALS)):
      if value not in allowed:
        raise ValueError(f"LNLNConfig.{name} must be one of {allowed}, got {value!r}")
    if self.dim % self.heads:
      raise ValueError(f"LNLNConfig: dim {self.dim} must divide by heads {self.heads}")
    if self.hyper_depth < 1 or self.num_tokens < 1 or self.num_outputs < 1:
      raise ValueError("LNLNConfig: hyper_depth, num_tokens and num_outputs must be >= 1")

  @classmethod
  def official_code(cls, **overrides) -> "LNLNConfig":
    """The official code's behaviour: GRL before Eq. 8, reconstruction in embedding space,
    residual on the normalised hyper-modality feature, attention over padding."""
    settings = dict(grl="proxy", reconstruction="embedding", hyper_residual="normed",
                    mask_padding=False)
    settings.update(overrides)
    return cls(**settings)

  def replace(self, **changes) -> "LNLNConfig":
    return dataclasses.replace(self, **changes)


class LNLNOutputs(NamedTuple):
  """What `LNLN` returns; the training-only fields are None without complete inputs.

  prediction: ``[B]`` (regression) or ``[B, C]`` logits.
  completeness: ``w``, ``[B]``, the predicted completeness of the language input.
  discriminator_logits: ``[2, B, T, 2]``: ``[0]`` the generated side (label 1), ``[1]`` the
    complete language embedding (label 0).
  reconstruction / reconstruction_target: ``{modality: [B, P, F]}``; ``P, F`` = ``T, d``
    (embedding space) or ``L_m, D_m`` (input space).
  reconstruction_weight: ``{modality: [B, P]}``, which positions the reconstruction loss
    reads: the erased positions (input space, from ``missing``; the valid positions when no
    ``missing`` is given) or all ``T`` tokens (embedding space).
  """
  prediction: jax.Array
  completeness: jax.Array
  discriminator_logits: jax.Array | None = None
  reconstruction: dict | None = None
  reconstruction_target: dict | None = None
  reconstruction_weight: dict | None = None


# ---------------------------------------------------------------- layers

def _linear(din, dout, rngs, use_bias=True):
  return nnx.Linear(din, dout, use_bias=use_bias, kernel_init=_TORCH_KERNEL, rngs=rngs)


def _norm(dim, rngs):
  return nnx.LayerNorm(dim, epsilon=_LN_EPS, rngs=rngs)


def _heads(x, heads):
  b, n, _ = x.shape
  return x.reshape(b, n, heads, -1).transpose(0, 2, 1, 3)        # [B, H, N, dh]


def _attend(q, k, v, heads, key_mask=None):
  """Scaled dot-product attention; ``key_mask`` ``[B, Nk]`` (True = may be read)."""
  q, k, v = (_heads(t, heads) for t in (q, k, v))
  logits = jnp.einsum("bhqd,bhkd->bhqk", q, k) * (q.shape[-1] ** -0.5)
  if key_mask is not None:
    logits = jnp.where(key_mask[:, None, None, :], logits, jnp.finfo(logits.dtype).min)
  out = jnp.einsum("bhqk,bhkd->bhqd", jax.nn.softmax(logits, axis=-1), v)
  b, _, n, _ = out.shape
  return out.transpose(0, 2, 1, 3).reshape(b, n, -1)


class Attention(nnx.Module):
  """Multi-head attention with separate bias-free q/k/v projections and an output Linear
  (omitted, as in the code, when ``heads == 1`` and ``head_dim == dim``)."""

  def __init__(self, dim, heads, head_dim, *, rngs):
    inner = heads * head_dim
    self.heads = heads
    self.to_q = _linear(dim, inner, rngs, use_bias=False)
    self.to_k = _linear(dim, inner, rngs, use_bias=False)
    self.to_v = _linear(dim, inner, rngs, use_bias=False)
    self.to_out = None if (heads == 1 and head_dim == dim) else _linear(inner, dim, rngs)

  def __call__(self, q, k, v, key_mask=None):
    out = _attend(self.to_q(q), self.to_k(k), self.to_v(v), self.heads, key_mask)
    return out if self.to_out is None else self.to_out(out)


class Block(nnx.Module):
  """Pre-LN layer: ``x += MHA(LN_q(x), LN_k(s), LN_v(s))`` (``s = x`` unless a source is
  given), then ``x += FFN(LN(x))`` with ``FFN = Linear -> GELU -> Linear``."""

  def __init__(self, dim, heads, head_dim, mlp_dim, *, rngs):
    self.norm_q, self.norm_k, self.norm_v = (_norm(dim, rngs) for _ in range(3))
    self.attn = Attention(dim, heads, head_dim, rngs=rngs)
    self.norm_ff = _norm(dim, rngs)
    self.ff1 = _linear(dim, mlp_dim, rngs)
    self.ff2 = _linear(mlp_dim, dim, rngs)

  def __call__(self, x, source=None, key_mask=None):
    s = x if source is None else source
    x = x + self.attn(self.norm_q(x), self.norm_k(s), self.norm_v(s), key_mask)
    return x + self.ff2(jax.nn.gelu(self.ff1(self.norm_ff(x)), approximate=False))


class TokenTransformer(nnx.Module):
  """The code's ``Transformer``: ``tokens`` learnable tokens (zeros) prepended, a learned
  positional embedding (``N(0, 1)``) over ``tokens + length`` positions, ``depth`` blocks.

  ``mask`` ``[B, N]`` marks the valid input positions (the extra tokens always are); padded
  positions are never read. ``hidden=True`` returns every hidden state (input included).
  """

  def __init__(self, length, tokens, dim, depth, heads, head_dim, mlp_dim, *, rngs):
    self.length, self.num_tokens = length, tokens
    self.tokens = nnx.Param(jnp.zeros((tokens, dim))) if tokens else None
    self.pos = nnx.Param(jax.random.normal(rngs.params(), (length + tokens, dim)))
    self.blocks = nnx.List([Block(dim, heads, head_dim, mlp_dim, rngs=rngs) for _ in range(depth)])

  def __call__(self, x, mask=None, hidden=False):
    b, n, _ = x.shape
    if n > self.length:
      raise ValueError(f"sequence of length {n} is longer than the configured {self.length}")
    if self.tokens is not None:
      x = jnp.concatenate([jnp.broadcast_to(self.tokens[...], (b,) + self.tokens.shape), x], 1)
      if mask is not None:
        mask = jnp.concatenate([jnp.ones((b, self.num_tokens), bool), mask.astype(bool)], 1)
    x = x + self.pos[...][: x.shape[1]]
    states = [x]
    for block in self.blocks:
      x = block(x, key_mask=mask)
      states.append(x)
    return states if hidden else x


class HyperLayer(nnx.Module):
  """One adaptive hyper-modality learning layer (Eq. 3, the code's ``HhyperLearningLayer``
  behind ``PreNorm_hyper``)."""

  def __init__(self, dim, heads, *, residual, rngs):
    head_dim = dim // heads
    self.heads, self.residual = heads, residual
    self.norm_d, self.norm_a, self.norm_v, self.norm_h = (_norm(dim, rngs) for _ in range(4))
    self.to_q = _linear(dim, dim, rngs, use_bias=False)
    self.to_k_a = _linear(dim, dim, rngs, use_bias=False)
    self.to_k_v = _linear(dim, dim, rngs, use_bias=False)
    self.to_v_a = _linear(dim, dim, rngs, use_bias=False)
    self.to_v_v = _linear(dim, dim, rngs, use_bias=False)
    self.to_out = None if (heads == 1 and head_dim == dim) else _linear(dim, dim, rngs)

  def __call__(self, h_d, h_a, h_v, h_hyper):
    q = self.to_q(self.norm_d(h_d))
    a, v = self.norm_a(h_a), self.norm_v(h_v)
    shift = (_attend(q, self.to_k_a(a), self.to_v_a(a), self.heads)
             + _attend(q, self.to_k_v(v), self.to_v_v(v), self.heads))
    if self.to_out is not None:
      shift = self.to_out(shift)
    base = self.norm_h(h_hyper) if self.residual == "normed" else h_hyper
    return base + shift


class CrossTransformer(nnx.Module):
  """Cross-modality fusion Transformer (Eq. 4; the code's ``CrossTransformer``)."""

  def __init__(self, source_len, target_len, dim, depth, heads, head_dim, mlp_dim, *, rngs):
    self.cls = nnx.Param(jnp.zeros((1, dim)))
    self.pos_s = nnx.Param(jax.random.normal(rngs.params(), (source_len + 1, dim)))
    self.pos_t = nnx.Param(jax.random.normal(rngs.params(), (target_len + 1, dim)))
    self.blocks = nnx.List([Block(dim, heads, head_dim, mlp_dim, rngs=rngs) for _ in range(depth)])

  def __call__(self, source, target):
    b = source.shape[0]
    cls = jnp.broadcast_to(self.cls[...], (b,) + self.cls.shape)
    source = jnp.concatenate([cls, source], 1) + self.pos_s[...][: source.shape[1] + 1]
    target = jnp.concatenate([cls, target], 1) + self.pos_t[...][: target.shape[1] + 1]
    for block in self.blocks:
      target = block(target, source=source)
    return target


class MLP2(nnx.Module):
  """``Linear -> LeakyReLU(0.1) -> Linear``."""

  def __init__(self, din, hidden, dout, *, rngs):
    self.fc1 = _linear(din, hidden, rngs)
    self.fc2 = _linear(hidden, dout, rngs)

  def __call__(self, x):
    return self.fc2(jax.nn.leaky_relu(self.fc1(x), 0.1))


class Embedding(nnx.Module):
  """E^1_m (Eq. 1): ``Linear(D_m, d)`` + `TokenTransformer` with ``T`` tokens; returns all
  ``T + L`` outputs (the first ``T`` are ``H^1_m``)."""

  def __init__(self, in_dim, length, c: LNLNConfig, *, rngs):
    self.proj = _linear(in_dim, c.dim, rngs)
    self.encoder = TokenTransformer(length, c.num_tokens, c.dim, c.embed_depth, c.heads,
                                    c.head_dim, c.mlp_dim, rngs=rngs)

  def __call__(self, x, mask=None):
    return self.encoder(self.proj(x), mask)


class TextEncoder(nnx.Module):
  """The small trainable text encoder (token ids -> ``[B, L, text_dim]`` features)."""

  def __init__(self, c: LNLNConfig, *, rngs):
    heads = c.heads if c.text_dim % c.heads == 0 else 1
    self.embed = nnx.Embed(c.text_vocab_size, c.text_dim, rngs=rngs)
    self.encoder = TokenTransformer(c.text_len, 0, c.text_dim, c.text_encoder_depth, heads,
                                    c.text_dim // heads, c.text_dim, rngs=rngs)
    self.norm = _norm(c.text_dim, rngs)

  def __call__(self, ids, mask=None):
    return self.norm(self.encoder(self.embed(ids), mask))


# ---------------------------------------------------------------- the model

class LNLN(nnx.Module):
  """The full LNLN model; see the module docstring."""

  def __init__(self, config: LNLNConfig | None = None, rngs: nnx.Rngs | None = None, **overrides):
    c = (config or LNLNConfig()).replace(**overrides) if overrides else (config or LNLNConfig())
    if rngs is None:
      raise ValueError("LNLN needs rngs (e.g. nnx.Rngs(0))")
    self.config = c
    dims = {"text": c.text_dim, "audio": c.audio_dim, "vision": c.vision_dim}
    lens = {"text": c.text_len, "audio": c.audio_len, "vision": c.vision_len}
    t, d = c.num_tokens, c.dim
    self.text_encoder = TextEncoder(c, rngs=rngs) if c.text_vocab_size > 0 else None
    self.embed = nnx.Dict({m: Embedding(dims[m], lens[m], c, rngs=rngs) for m in MODALITIES})
    # DMC
    self.completeness_check = TokenTransformer(t, 1, d, c.cc_depth, c.heads, c.head_dim,
                                               c.mlp_dim, rngs=rngs)
    self.completeness_head = MLP2(d, d // 2, 1, rngs=rngs)
    self.h_p = nnx.Param(jnp.ones((t, d)))
    self.proxy_generator = TokenTransformer(3 * t, t, d, c.proxy_depth, c.heads, c.head_dim,
                                            c.mlp_dim, rngs=rngs)
    self.discriminator = MLP2(d, c.disc_hidden, 2, rngs=rngs)
    # DMML
    self.language_encoder = TokenTransformer(t, 0, d, c.hyper_depth - 1, c.heads, c.head_dim,
                                             c.mlp_dim, rngs=rngs)
    self.h_hyper = nnx.Param(jnp.ones((t, d)))
    self.hyper = nnx.List([HyperLayer(d, c.heads, residual=c.hyper_residual, rngs=rngs)
                           for _ in range(c.hyper_depth)])
    self.fusion = CrossTransformer(t, t, d, c.fusion_depth, c.heads, c.head_dim, c.mlp_dim,
                                   rngs=rngs)
    self.head = _linear(d, c.num_outputs, rngs)
    # Reconstructor
    rec_len = {m: (t if c.reconstruction == "embedding" else lens[m]) for m in MODALITIES}
    self.reconstructor = nnx.Dict({
        m: TokenTransformer(rec_len[m], 0, d, c.rec_depth, c.heads, c.head_dim, c.mlp_dim,
                            rngs=rngs) for m in MODALITIES})
    self.reconstruct_out = (nnx.Dict({m: _linear(d, dims[m], rngs) for m in MODALITIES})
                            if c.reconstruction == "input" else None)

  # -- pieces

  def _features(self, m, x, mask):
    """The modality's input features U_m (the text encoder's output for token ids)."""
    if m == "text" and self.text_encoder is not None:
      return self.text_encoder(x, mask)
    return x

  def _embed(self, m, x, mask):
    return self.embed[m](self._features(m, x, mask), mask)

  def __call__(self, inputs: Mapping[str, jax.Array], masks: Mapping[str, jax.Array] | None = None,
               complete: Mapping[str, jax.Array] | None = None,
               missing: Mapping[str, jax.Array] | None = None) -> LNLNOutputs:
    """``inputs``: the (possibly incomplete) ``{text, audio, vision}`` sequences ``[B, L_m,
    D_m]`` (text ids ``[B, L]`` with a text encoder); ``masks``: ``{m: bool [B, L_m]}`` valid
    positions (absent = all valid); ``complete``: the complete inputs (training only: targets
    of the reconstruction, negatives of the discriminator); ``missing``: ``{m: bool [B, L_m]}``
    erased positions, read by the input-space reconstruction loss."""
    c, t = self.config, self.config.num_tokens
    masks = dict(masks or {})
    pad = {m: (masks.get(m) if c.mask_padding else None) for m in MODALITIES}
    full = {m: self._embed(m, inputs[m], pad[m]) for m in MODALITIES}
    h1 = {m: full[m][:, :t] for m in MODALITIES}
    b = h1["text"].shape[0]

    # DMC. Completeness check (Eq. 5): w in [0, 1], [B].
    w = jax.nn.sigmoid(self.completeness_head(self.completeness_check(h1["text"])[:, 0]))[:, 0]
    # Proxy dominant feature generator (Eq. 7).
    h0_p = jnp.broadcast_to(self.h_p[...], (b, t, c.dim))
    h1_p = self.proxy_generator(jnp.concatenate([h0_p, h1["audio"], h1["vision"]], 1))[:, :t]
    h1_d, generated = dominant_correction(h1_p, h1["text"], w, c.grl, c.grl_alpha)

    # DMML (Eqs. 2-4).
    h_d = self.language_encoder(h1_d, hidden=True)
    h_hyper = jnp.broadcast_to(self.h_hyper[...], (b, t, c.dim))
    for i, layer in enumerate(self.hyper):
      h_hyper = layer(h_d[i], h1["audio"], h1["vision"], h_hyper)
    fused = self.fusion(h_hyper, h_d[-1])
    prediction = self.head(fused[:, 1:].mean(axis=1))
    if c.num_outputs == 1:
      prediction = prediction[:, 0]
    if complete is None:
      return LNLNOutputs(prediction, w)

    # Training only: the discriminator (Eqs. 9-10) and the reconstructor (Eqs. 11-12).
    complete_text = self._embed("text", complete["text"], pad["text"])[:, :t]
    disc = self.discriminator(jnp.stack([generated, complete_text]))            # [2, B, T, 2]

    rec, target, weight = {}, {}, {}
    for m in MODALITIES:
      if c.reconstruction == "embedding":
        rec[m] = self.reconstructor[m](h1[m])
        target[m] = (complete_text if m == "text"
                     else self._embed(m, complete[m], pad[m])[:, :t])
        weight[m] = jnp.ones((b, t), jnp.float32)
      else:
        rec[m] = self.reconstruct_out[m](self.reconstructor[m](full[m][:, t:], pad[m]))
        target[m] = (self._features(m, complete[m], masks.get(m))
                     if m == "text" else complete[m])
        target[m] = jax.lax.stop_gradient(target[m]).astype(rec[m].dtype)
        if missing is not None and m in missing:
          weight[m] = missing[m].astype(jnp.float32)
        elif masks.get(m) is not None:
          weight[m] = masks[m].astype(jnp.float32)
        else:
          weight[m] = jnp.ones(rec[m].shape[:2], jnp.float32)
      if c.stop_gradient_targets:
        target[m] = jax.lax.stop_gradient(target[m])
    return LNLNOutputs(prediction, w, disc, rec, target, weight)

  def owners(self) -> dict[str, list[nnx.Module]]:
    """Per-modality submodules (embeddings, text encoder, reconstructors); the rest is shared."""
    own = {m: [self.embed[m], self.reconstructor[m]] for m in MODALITIES}
    if self.reconstruct_out is not None:
      for m in MODALITIES:
        own[m].append(self.reconstruct_out[m])
    if self.text_encoder is not None:
      own["text"].append(self.text_encoder)
    return own


def lnln_inputs(batch: Mapping, *, train: bool = True) -> dict:
  """The keyword arguments of `LNLN.__call__` from a flat batch in the layout of
  `mmbal.data.missing.random_missing`: ``m``, ``m_mask``, ``m_complete``, ``m_missing`` for m
  in text/audio/vision. ``train=False`` leaves out the complete inputs (evaluation)."""
  kwargs = {"inputs": {m: batch[m] for m in MODALITIES},
            "masks": {m: batch[f"{m}_mask"] for m in MODALITIES if f"{m}_mask" in batch}}
  if train:
    kwargs["complete"] = {m: batch.get(f"{m}_complete", batch[m]) for m in MODALITIES}
    kwargs["missing"] = {m: batch[f"{m}_missing"] for m in MODALITIES if f"{m}_missing" in batch}
  return kwargs
