"""LNLN (model, loss, random-missing protocol) at tiny sizes.

Expected numbers of the loss are worked out by hand in the comments, never by calling the
code under test.
"""
import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

from mmbal.data.missing import (EVAL_RATES, EVAL_SEEDS, UNK_ID, fixed_missing, length_mask,
                                missing_rng, random_missing)
from mmbal.models.lnln import (LNLN, CrossTransformer, HyperLayer, LNLNConfig, LNLNOutputs,
                               TokenTransformer, dominant_correction, gradient_reversal,
                               lnln_inputs)
from mmbal.objectives import LNLNLossWeights, SIMS_WEIGHTS, lnln_loss

LN2 = math.log(2.0)
SIZES = dict(text_dim=12, audio_dim=3, vision_dim=4, text_len=7, audio_len=9, vision_len=6,
             dim=16, num_tokens=4, heads=2, head_dim=8, mlp_dim=16, embed_depth=1, cc_depth=1,
             proxy_depth=1, hyper_depth=2, fusion_depth=1, rec_depth=1, disc_hidden=8)
TINY = LNLNConfig(**SIZES)
# The official code's variant, with classification logits and the small text encoder on ids.
VARIANT = LNLNConfig.official_code(**(SIZES | dict(text_dim=8, num_outputs=3,
                                                    text_vocab_size=300)))
B = 16          # one batch size everywhere: each jitted function compiles once


def _close(actual, expected, rtol=1e-5, atol=1e-6):
  np.testing.assert_allclose(np.asarray(actual), expected, rtol=rtol, atol=atol)


def _batch(seed=0, size=B, text_ids=False):
  r = np.random.default_rng(seed)
  text = (r.integers(101, 300, (size, 7)).astype(np.int32) if text_ids
          else r.normal(size=(size, 7, 12)).astype(np.float32))
  return {"text": text,
          "audio": r.normal(size=(size, 9, 3)).astype(np.float32),
          "vision": r.normal(size=(size, 6, 4)).astype(np.float32),
          "text_mask": length_mask(r.integers(3, 8, size), 7),
          "audio_mask": length_mask(r.integers(1, 10, size), 9),
          "vision_mask": length_mask(r.integers(1, 7, size), 6),
          "label": r.normal(size=size).astype(np.float32)}


# XLA's cheap CPU pipeline: the tiny model compiles in about half the time (tests only).
FAST_COMPILE = {"xla_backend_optimization_level": 0, "xla_llvm_disable_expensive_passes": True}


@functools.partial(jax.jit, static_argnums=(0, 3), compiler_options=FAST_COMPILE)
def _apply(graphdef, state, batch, train):
  return nnx.merge(graphdef, state)(**lnln_inputs(batch, train=train))


def _forward(model, batch, train=True):
  return _apply(*nnx.split(model), batch, train)


@pytest.fixture(scope="module")
def model():
  return LNLN(TINY, nnx.Rngs(0))


@pytest.fixture(scope="module")
def variant():
  return LNLN(VARIANT, nnx.Rngs(0))


# ---------------------------------------------------------------- shapes

def test_output_shapes_training_and_evaluation(model):
  batch = random_missing(_batch(), missing_rng(0))
  out = _forward(model, batch)
  assert out.prediction.shape == (B,) and out.completeness.shape == (B,)
  assert out.discriminator_logits.shape == (2, B, 4, 2)
  for m, (length, feat) in {"text": (7, 12), "audio": (9, 3), "vision": (6, 4)}.items():
    assert out.reconstruction[m].shape == (B, length, feat)          # input space (paper)
    assert out.reconstruction_target[m].shape == (B, length, feat)
    np.testing.assert_array_equal(out.reconstruction_weight[m], batch[f"{m}_missing"])
  assert np.all((np.asarray(out.completeness) >= 0) & (np.asarray(out.completeness) <= 1))
  graphdef, state = nnx.split(model)
  ev = jax.eval_shape(lambda st: nnx.merge(graphdef, st)(**lnln_inputs(batch, train=False)), state)
  assert ev.discriminator_logits is None and ev.reconstruction is None
  assert ev.reconstruction_target is None and ev.reconstruction_weight is None
  assert ev.prediction.shape == (B,) and ev.completeness.shape == (B,)


def test_official_code_variant_shapes_and_attention_to_padding(variant):
  """Embedding-space reconstruction ([B, T, d]), [B, C] logits with cross-entropy, token ids
  read by the text encoder; the code's Transformers read padding, so it changes the result."""
  batch = random_missing(_batch(text_ids=True), missing_rng(1))
  assert batch["text"].dtype == np.int32 and (batch["text"][batch["text_missing"]] == UNK_ID).all()
  batch["label"] = np.arange(B) % 3
  out = _forward(variant, batch)
  assert out.prediction.shape == (B, 3)
  for m in ("text", "audio", "vision"):
    assert out.reconstruction[m].shape == (B, 4, 16)
    assert out.reconstruction_target[m].shape == (B, 4, 16)
    assert out.reconstruction_weight[m].shape == (B, 4)
  loss, terms = lnln_loss(out, batch, task="ce")
  assert np.isfinite(float(loss)) and float(terms["task"]) > 0 and float(terms["rec"]) > 0
  scrambled = dict(batch, audio=np.where(batch["audio_mask"][..., None], batch["audio"], 50.0))
  assert not np.allclose(_forward(variant, scrambled).prediction, out.prediction, atol=1e-3)


def test_submodule_shapes():
  def build_and_apply():
    rngs = nnx.Rngs(2)
    x = jnp.ones((3, 5, 16))
    enc = TokenTransformer(6, 4, 16, 2, 2, 8, 16, rngs=rngs)
    with pytest.raises(ValueError, match="longer"):
      enc(jnp.ones((3, 7, 16)))
    hyper = HyperLayer(16, 2, residual="raw", rngs=rngs)
    cross = CrossTransformer(5, 5, 16, 1, 2, 8, 16, rngs=rngs)
    return enc(x, hidden=True), hyper(x, x, x, x), cross(x, x)

  states, hyper, cross = jax.eval_shape(build_and_apply)     # shapes only: nothing compiles
  assert len(states) == 3 and all(s.shape == (3, 9, 16) for s in states)
  assert hyper.shape == (3, 5, 16) and cross.shape == (3, 6, 16)
  with pytest.raises(ValueError, match="grl"):
    LNLNConfig(grl="nowhere")


# ---------------------------------------------------------------- padding

def _scramble_padding(batch, seed=7):
  r = np.random.default_rng(seed)
  out = dict(batch)
  for m in ("text", "audio", "vision"):
    pad = ~batch[f"{m}_mask"]
    for key in (m, f"{m}_complete"):
      noise = r.normal(size=batch[key].shape).astype(np.float32) * 50
      out[key] = np.where(pad[..., None], noise, batch[key])
  return out


def test_padded_positions_do_not_change_the_result(model):
  batch = random_missing(_batch(), missing_rng(3))
  other = _scramble_padding(batch)
  a, b = _forward(model, batch), _forward(model, other)
  for field in ("prediction", "completeness", "discriminator_logits"):
    _close(getattr(b, field), getattr(a, field), rtol=1e-4, atol=1e-5)
  for m in ("text", "audio", "vision"):
    valid = batch[f"{m}_mask"][..., None]
    _close(np.where(valid, b.reconstruction[m], 0), np.where(valid, a.reconstruction[m], 0),
           rtol=1e-4, atol=1e-5)
  _close(lnln_loss(b, other)[0], lnln_loss(a, batch)[0], rtol=1e-4)


# ---------------------------------------------------------------- gradient reversal

def test_gradient_reversal_forward_identity_backward_minus_alpha():
  x = jnp.array([1.0, -2.0, 3.0])
  c = jnp.array([0.5, 2.0, -1.0])
  np.testing.assert_array_equal(gradient_reversal(x, 0.7), x)
  # d/dx sum(c * x) = c; through the GRL: -alpha * c.
  _close(jax.grad(lambda v: jnp.sum(c * gradient_reversal(v, 0.7)))(x), [-0.35, -1.4, 0.7])
  _close(jax.grad(lambda v: jnp.sum(c * gradient_reversal(v)))(x), -c)
  # d/dx sum(GRL(x)^2) = -alpha * 2x; alpha traced under jit, pytree input.
  g = jax.jit(jax.grad(lambda t, a: jnp.sum(gradient_reversal(t, a)["x"] ** 2)))({"x": x}, 2.0)
  _close(g["x"], [-4.0, 8.0, -12.0])


def test_grl_placement_code_reverses_the_sentiment_path_paper_only_the_discriminator():
  """Eq. 8 with w = 0.25: d H^1_d / d H^1_p = 0.75 (paper) or -0.75 (code, GRL before the
  mixing); the discriminator's input: d GRL(H^1_p) / d H^1_p = -1 (paper) or d H^1_d / d H^1_p
  = -0.75 (code). d H^1_d / d H^1_l = w = 0.25 in both."""
  h_p, h_l, w = jnp.ones((1, 2, 3)), jnp.zeros((1, 2, 3)), jnp.array([0.25])
  for grl, main, disc in (("discriminator", 0.75, -1.0), ("proxy", -0.75, -0.75)):
    h_d, gen = dominant_correction(h_p, h_l, w, grl)
    _close(h_d, 0.75)                                             # forward: Eq. 8 either way
    _close(jax.grad(lambda p: dominant_correction(p, h_l, w, grl)[0].sum())(h_p), main)
    _close(jax.grad(lambda p: dominant_correction(p, h_l, w, grl)[1].sum())(h_p), disc)
    _close(jax.grad(lambda l: dominant_correction(h_p, l, w, grl)[0].sum())(h_l), 0.25)


# ---------------------------------------------------------------- loss

def _outputs():
  # prediction [1, -2] vs labels [0.5, 0]: squared errors 0.25, 4; absolute 0.5, 2.
  # completeness w [0.8, 0.5] vs targets [1.0, 0.3]: squared errors 0.04, 0.04.
  # discriminator logits all zero: every token's CE is ln 2.
  # reconstruction, audio: zeros vs target; erased positions (0, 0) and (1, 1) hold [1, 3]
  #   (mean square 5) and [2, 0] (mean square 2); all other targets are 100 (must be ignored).
  #   vision: nothing erased -> 0. L_rec = mean(audio 3.5, vision 0) = 1.75.
  target = np.full((2, 3, 2), 100.0, np.float32)
  target[0, 0] = [1.0, 3.0]
  target[1, 1] = [2.0, 0.0]
  miss = np.array([[1, 0, 0], [0, 1, 0]], np.float32)
  return LNLNOutputs(
      prediction=jnp.array([1.0, -2.0]), completeness=jnp.array([0.8, 0.5]),
      discriminator_logits=jnp.zeros((2, 2, 1, 2)),
      reconstruction={"audio": jnp.zeros((2, 3, 2)), "vision": jnp.zeros((2, 3, 2))},
      reconstruction_target={"audio": jnp.asarray(target), "vision": jnp.ones((2, 3, 2))},
      reconstruction_weight={"audio": jnp.asarray(miss), "vision": jnp.zeros((2, 3))})


LOSS_BATCH = {"label": np.array([0.5, 0.0], np.float32),
              "completeness": np.array([1.0, 0.3], np.float32)}


def test_loss_terms_hand_computed():
  loss, terms = lnln_loss(_outputs(), LOSS_BATCH)
  _close(terms["task"], 2.125)                  # (0.25 + 4) / 2
  _close(terms["cc"], 0.04)
  _close(terms["adv"], LN2)
  _close(terms["rec"], 1.75)
  _close(loss, 0.9 * 0.04 + 0.8 * LN2 + 0.1 * 1.75 + 1.0 * 2.125)
  _, terms = lnln_loss(_outputs(), LOSS_BATCH, task="l1")
  _close(terms["task"], 1.25)                   # (0.5 + 2) / 2
  loss, _ = lnln_loss(_outputs(), LOSS_BATCH, SIMS_WEIGHTS)
  _close(loss, 0.9 * 0.04 + 0.6 * LN2 + 0.1 * 1.75 + 2.125)
  loss, _ = lnln_loss(_outputs(), LOSS_BATCH, LNLNLossWeights(0, 0, 1, 0))
  _close(loss, 1.75)


def test_loss_example_mask_and_evaluation_outputs():
  # Only example 0 counts: task 0.25, cc 0.04, adv ln 2, rec mean(audio 5, vision 0) = 2.5.
  _, terms = lnln_loss(_outputs(), dict(LOSS_BATCH, mask=np.array([True, False])))
  _close([terms["task"], terms["cc"], terms["adv"], terms["rec"]], [0.25, 0.04, LN2, 2.5])
  ev = _outputs()._replace(discriminator_logits=None, reconstruction=None)
  loss, terms = lnln_loss(ev, LOSS_BATCH)
  assert float(terms["adv"]) == 0.0 and float(terms["rec"]) == 0.0
  _close(loss, 0.9 * 0.04 + 2.125)
  # Discriminator: logits favouring the right label (1 for the generated side, 0 for language).
  right = jnp.stack([jnp.tile(jnp.array([0.0, 3.0]), (2, 1, 1)),
                     jnp.tile(jnp.array([3.0, 0.0]), (2, 1, 1))])
  _, terms = lnln_loss(ev._replace(discriminator_logits=right), LOSS_BATCH)
  _close(terms["adv"], math.log(1 + math.exp(-3.0)))


# ---------------------------------------------------------------- protocol

def _big_batch(size=2000, length=40, seed=0):
  r = np.random.default_rng(seed)
  lens = r.integers(5, length + 1, size)
  return {m: r.normal(size=(size, length, 2)).astype(np.float32) + 5.0
          for m in ("text", "audio", "vision")} | {
              f"{m}_mask": length_mask(lens, length) for m in ("text", "audio", "vision")}


def test_fixed_rate_erases_that_fraction_of_valid_positions():
  batch = _big_batch()
  for rate in (0.0, 0.3, 0.9):
    out = fixed_missing(batch, missing_rng(1111, 0, 0), rate)
    miss, valid = out["audio_missing"], batch["audio_mask"]
    assert not np.any(miss & ~valid)                                # padding never erased
    assert abs(miss.sum() / valid.sum() - rate) < 0.01
    np.testing.assert_array_equal(out["audio"][miss], 0.0)          # erased -> 0
    np.testing.assert_array_equal(out["audio"][~miss], batch["audio"][~miss])
    np.testing.assert_array_equal(out["audio_complete"], batch["audio"])
    _close(out["missing_rate"], rate)
    _close(out["completeness"], 1.0 - rate)
  assert EVAL_RATES == (0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)
  assert EVAL_SEEDS == (1111, 1112, 1113)


def test_training_rates_half_complete_and_uniform():
  batch = _big_batch()
  out = random_missing(batch, missing_rng(0, 0, 0))
  rates = out["missing_rate"]
  complete = rates == 0
  assert (complete.sum(0) == 1000).all()                          # half, per modality
  assert not np.array_equal(complete[:, 1], complete[:, 2])       # drawn independently
  assert abs(rates[~complete].mean() - 0.5) < 0.03                # U(0, 1) on the rest
  for i, m in enumerate(("text", "audio", "vision")):
    assert not out[f"{m}_missing"][complete[:, i]].any()
    if m != "text":                                                # text keeps [CLS]/[SEP]
      frac = out[f"{m}_missing"].sum() / batch[f"{m}_mask"].sum()
      assert abs(frac - 0.25) < 0.02                               # E[r] = 0.5 * 0.5
  _close(out["completeness"], 1.0 - rates[:, 0])
  realized = random_missing(batch, missing_rng(0, 0, 0), completeness="realized")
  frac = realized["text_missing"].sum(1) / batch["text_mask"].sum(1)
  _close(realized["completeness"], 1.0 - frac, rtol=1e-6)
  ranged = random_missing(batch, missing_rng(0), rate=(0.2, 0.4), complete_fraction=0.0)
  assert ranged["missing_rate"].min() >= 0.2 and ranged["missing_rate"].max() <= 0.4


def test_text_keeps_cls_and_sep_and_token_ids_get_unk():
  r = np.random.default_rng(0)
  lens = r.integers(2, 11, 300)
  batch = {"text": r.integers(101, 999, (300, 10)), "text_mask": length_mask(lens, 10),
           "audio": np.ones((300, 4, 1), np.float32), "vision": np.ones((300, 3, 1), np.float32)}
  out = fixed_missing(batch, missing_rng(0), 0.9)
  miss = out["text_missing"]
  assert not miss[:, 0].any() and not miss[np.arange(300), lens - 1].any()
  assert miss.any()
  np.testing.assert_array_equal(out["text"][miss], UNK_ID)
  np.testing.assert_array_equal(out["text"][~miss], batch["text"][~miss])


def test_protocol_is_deterministic_per_key_and_fresh_per_epoch():
  batch = _big_batch(size=64)
  before = {k: v.copy() for k, v in batch.items()}
  a = random_missing(batch, missing_rng(1111, 3, 7))
  b = random_missing(batch, missing_rng(1111, 3, 7))
  c = random_missing(batch, missing_rng(1111, 4, 7))
  for m in ("text", "audio", "vision"):
    np.testing.assert_array_equal(a[f"{m}_missing"], b[f"{m}_missing"])
    assert not np.array_equal(a[f"{m}_missing"], c[f"{m}_missing"])
  np.testing.assert_array_equal(a["missing_rate"], b["missing_rate"])
  for k, v in before.items():                                      # input not modified
    np.testing.assert_array_equal(batch[k], v)


# ---------------------------------------------------------------- training

def test_jitted_training_with_random_missing_lowers_the_loss(model):
  """Label = 2 * mean of the first text feature over the valid positions; 30 adam steps on
  fresh random-missing batches lower the sentiment loss on a held-out (complete) batch."""
  def make(seed):
    b = _batch(seed)
    b["text"][..., 0] += 1.5 * np.random.default_rng(seed + 100).normal(size=(B, 1))
    m = b["text_mask"]
    b["label"] = (2 * (b["text"][..., 0] * m).sum(1) / m.sum(1)).astype(np.float32)
    return b

  graphdef, params, rest = nnx.split(model, nnx.Param, ...)
  tx = optax.adam(3e-3)
  opt_state = tx.init(params)

  @functools.partial(jax.jit, compiler_options=FAST_COMPILE)
  def step(p, opt_state, batch):
    def loss_fn(p):
      return lnln_loss(nnx.merge(graphdef, p, rest)(**lnln_inputs(batch)), batch)
    (_, terms), grads = jax.value_and_grad(loss_fn, has_aux=True)(p)
    updates, opt_state = tx.update(grads, opt_state, p)
    return optax.apply_updates(p, updates), opt_state, terms

  def held_out_error(p):
    held = fixed_missing(make(999), missing_rng(0), 0.0)
    pred = _forward(nnx.merge(graphdef, p, rest), held).prediction
    return float(np.mean((np.asarray(pred) - held["label"]) ** 2))

  start = held_out_error(params)
  for i in range(30):
    batch = random_missing(make(i), missing_rng(0, 0, i))
    params, opt_state, terms = step(params, opt_state, batch)
    assert np.isfinite(float(terms["task"]))
  end = held_out_error(params)
  assert end < 0.6 * start, (start, end)
