"""Decoder (VLM) diagnostics on hand-built models with hand-computed numbers."""
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mmbal.diagnostics import decoder as dd

V = 12                                   # vocabulary size
IDS = np.array([5, 7, 9])                # answer vocabulary
POS = 3                                  # tokens: BOS, w1, w2, "?", answer

# Real rows 0-7 and one padding row (mask 0) that would change every number if counted.
# Question = (w1, w2); image channel 0 is the constant c; y the answer; prior by w1.
W1 = [3, 3, 4, 4, 3, 3, 3, 4, 4]
W2 = [10, 10, 10, 10, 11, 11, 11, 11, 11]
C = [0.0, 1.0, 0.5, 0.0, 0.5, 0.5, 0.5, 1.0, 0.0]
Y = [5, 9, 7, 5, 7, 7, 7, 9, 9]
PRIOR = [5 if w == 3 else 7 for w in W1]
MASK = [1, 1, 1, 1, 1, 1, 1, 1, 0]
# Question groups among the real rows: {0, 1}, {2, 3}, {4, 5, 6}; row 7 is alone (the padding
# row shares its question and would pair with it if counted): 7 swaps, 1 unpaired.


def make_batch(rows=slice(None), prior=True):
  n = len(Y)
  tokens = np.stack([np.ones(n), W1, W2, np.full(n, 2), Y], 1).astype(np.int32)
  image = np.zeros((n, 2, 2, 3), np.float32)
  image[..., 0] = np.asarray(C)[:, None, None]
  image[..., 1] = 0.25
  batch = dict(image=image, tokens=tokens, answer=np.asarray(Y, np.int32),
               answer_position=np.full(n, POS, np.int32), mask=np.asarray(MASK, np.int32))
  if prior:
    batch["prior_answer"] = np.asarray(PRIOR, np.int32)
  return {k: v[rows] for k, v in batch.items()}


def _everywhere(answer_logits, tokens, ids=IDS):
  """``[B, T, V]`` logits: ``answer_logits [B, K]`` on the answer ids at every position."""
  full = jnp.zeros((tokens.shape[0], V)).at[:, ids].set(answer_logits)
  return jnp.broadcast_to(full[:, None], tokens.shape + (V,))


def ignores_image(scale, image, tokens):
  """Answers 5 for w1 = 3 and 7 otherwise, whatever the image."""
  pick = jnp.where(tokens[:, 1] == 3, 0, 1)
  return _everywhere(scale * jax.nn.one_hot(pick, 3), tokens)


def text_only_apply(scale, tokens):
  return ignores_image(scale, None, tokens)


def reads_image(scale, image, tokens):
  """Answer index round(2 * mean of channel 0): c = 0 -> 5, 0.5 -> 7, 1 -> 9."""
  c = 2 * image[..., 0].mean((1, 2))
  return _everywhere(-scale * (c[:, None] - jnp.arange(3)) ** 2, tokens)


@pytest.fixture(scope="module")
def blind_model():
  return dd.diagnose_decoder(ignores_image, jnp.float32(3.0), [make_batch()], answer_ids=IDS)


@pytest.fixture(scope="module")
def visual_model():
  return dd.diagnose_decoder(reads_image, jnp.float32(10.0), [make_batch()], answer_ids=IDS,
                             text_only=(text_only_apply, jnp.float32(3.0)))


def test_model_ignoring_the_image(blind_model):
  r = blind_model
  # Predictions 5 (w1 = 3) / 7 (w1 = 4) vs Y: right on rows 0 and 2 only.
  assert r.count == 8 and r.accuracy == r.blind_accuracy == 0.25
  assert r.visual_dependency == 0 and r.visual_dependency_normalised == 0
  assert r.visual_information_gain == 0 and r.swap_change_rate == 0
  assert (r.swap_count, r.swap_unpaired) == (7, 1)
  # Donors: 0<->1, 2<->3, a cycle in {4,5,6} (all y' = 7). Predictions equal y' on rows 1
  # (5 = y0) and 3 (7 = y2) only: 2/7 by coincidence.
  assert r.image_following_rate == pytest.approx(2 / 7)
  assert r.swap_own_answer_rate == pytest.approx(2 / 7)         # rows 0 and 2
  assert r.swap_answer_differs == pytest.approx(4 / 7)          # rows 0-3
  assert r.prior_following == r.blind_prior_following == 1.0
  assert r.blind == "blank" and "per-channel mean pixel value (0.5, 0.25, 0)" in r.blind_detail


@pytest.mark.parametrize("blind", ["mean", "noise", "permuted"])
def test_model_ignoring_the_image_any_blind(blind):
  r = dd.diagnose_decoder(ignores_image, jnp.float32(3.0), [make_batch()], answer_ids=IDS,
                          blind=blind, seed=3)
  assert r.blind == blind and r.blind_detail.startswith(blind)
  assert r.accuracy == r.blind_accuracy == 0.25 and r.visual_information_gain == 0
  if blind == "noise":   # channel 0 over the real rows: mean 0.5, E[x^2] = 3/8, std sqrt(1/8)
    assert "mean (0.5, 0.25, 0)" in r.blind_detail and "std (0.3536, 0, 0)" in r.blind_detail


def test_model_reading_the_image(visual_model):
  r = visual_model
  assert r.accuracy == 1.0 and r.image_following_rate == 1.0
  assert r.swap_change_rate == pytest.approx(4 / 7) == r.swap_answer_differs
  assert r.swap_own_answer_rate == pytest.approx(3 / 7)          # the {4,5,6} swaps
  # Blank image: channel 0 = its mean over the real rows, 4/8 = 0.5 -> answers 7: right on
  # rows 2, 4, 5, 6.
  assert r.blind_accuracy == 0.5
  assert r.visual_dependency == r.multimodal_gain == 0.5 and r.visual_dependency_normalised == 0.5
  assert r.prior_following == 2 / 8                              # y = prior on rows 0, 2
  assert r.blind_prior_following == 3 / 8                        # prior 7 on rows 2, 3, 7
  # LM base (the image-free model) S_t = 0.25: leakage max(0, 0.5 - 0.25).
  assert r.text_only_accuracy == 0.25 and r.leakage == 0.25
  # The mean image equals the blank one here (every pixel of channel 0 averages to 0.5).
  m = dd.diagnose_decoder(reads_image, jnp.float32(10.0), [make_batch()], answer_ids=IDS, blind="mean")
  assert m.blind_accuracy == 0.5 and m.blind_detail.startswith("mean: the mean image over the 8")


@pytest.mark.parametrize("scale", [0.0, 1e30])
def test_zero_and_huge_logits_stay_finite(scale):
  r = dd.diagnose_decoder(reads_image, jnp.float32(scale), [make_batch()], answer_ids=IDS)
  assert all(math.isfinite(getattr(r, k)) for k in ("loss", "blind_loss", "visual_information_gain"))
  if scale == 0:   # uniform over 3 answers: argmax picks 5 (right on rows 0, 3), CE log 3, no KL
    assert r.accuracy == 0.25 and r.loss == pytest.approx(math.log(3)) and r.visual_information_gain == 0
  else:
    assert r.accuracy == 1.0 and r.blind_accuracy == 0.5


def test_permuted_blind_on_two_examples():
  # Two examples: the derangement is the swap; each then sees the other's image -> both wrong.
  r = dd.diagnose_decoder(reads_image, jnp.float32(10.0), [make_batch(slice(0, 2))],
                          answer_ids=IDS, blind="permuted")
  assert r.accuracy == 1.0 and r.blind_accuracy == 0.0


def test_answer_vocabulary_restriction():
  def loves_pad(scale, image, tokens):   # logit 50 on PAD (0), answer logits (1, 0, 0)
    out = _everywhere(jnp.array([1.0, 0.0, 0.0]) * scale, tokens)
    return out.at[..., 0].set(50.0)

  r = dd.diagnose_decoder(loves_pad, jnp.float32(1.0), [make_batch()], answer_ids=IDS,
                          blank_value=0.0)
  assert r.accuracy == 0.25                     # always 5 over the answers: right on rows 0, 3
  # CE over the answer vocabulary: -log(e / (e + 2)) for y = 5, -log(1 / (e + 2)) otherwise.
  assert r.loss == pytest.approx(math.log(math.e + 2) - 2 / 8, rel=1e-6)
  assert r.visual_information_gain == 0 and r.num_answers == 3


def test_visual_information_gain_two_answers():
  def two(scale, image, tokens):           # answer logits (2 * mean image, 0)
    s = scale * image.mean((1, 2, 3))
    return _everywhere(jnp.stack([s, jnp.zeros_like(s)], -1), tokens, ids=np.array([5, 7]))

  image = np.stack([np.ones((2, 2, 1)), np.full((2, 2, 1), 0.5)]).astype(np.float32)
  batch = dict(image=image, tokens=np.array([[1, 3, 2, 5], [1, 3, 2, 7]], np.int32),
               answer=np.array([5, 7], np.int32), answer_position=np.array([2, 2], np.int32))
  r = dd.diagnose_decoder(two, jnp.float32(2.0), [batch], answer_ids=[5, 7], blank_value=0.0)
  # Full logits (2, 0) and (1, 0); the blank image (0) gives (0, 0): q = (1/2, 1/2).
  kl = lambda a: sum(p * math.log(2 * p) for p in (1 / (1 + math.exp(-a)), 1 / (1 + math.exp(a))))
  assert r.visual_information_gain == pytest.approx((kl(2.0) + kl(1.0)) / 2, rel=1e-5)
  assert r.blind_detail == "blank: constant image of the given pixel value 0"
  # Same question (the answer token after "?" is not part of it): one swap pair. Both still
  # predict 5 on the other's image (logits (1, 0) and (2, 0)); only row 1's donor answer is 5.
  assert (r.swap_count, r.swap_unpaired, r.swap_change_rate, r.image_following_rate) == (2, 0, 0.0, 0.5)


def test_swap_donors_groups_and_padding():
  b = make_batch()
  donor, paired = dd.swap_donors(b["tokens"], b["answer_position"], b["mask"], seed=5)
  assert paired.tolist() == [True] * 7 + [False, False]
  assert donor[0] == 1 and donor[1] == 0 and donor[2] == 3 and donor[3] == 2
  assert sorted(donor[4:7]) == [4, 5, 6] and all(donor[i] != i for i in range(4, 7))
  assert donor[7] == 7 and donor[8] == 8
  # Without the mask the padding row pairs with row 7 (same question).
  donor, paired = dd.swap_donors(b["tokens"], b["answer_position"])
  assert paired.all() and donor[7] == 8 and donor[8] == 7


def test_masks_and_given_leakage(visual_model):
  real_only = make_batch(slice(0, 8))
  del real_only["mask"]
  r = dd.diagnose_decoder(reads_image, jnp.float32(10.0), [real_only], answer_ids=IDS, text_only=0.2)
  same = ("accuracy", "blind_accuracy", "visual_information_gain", "prior_following", "swap_count",
          "swap_unpaired", "swap_change_rate", "image_following_rate", "loss")
  assert all(getattr(r, k) == pytest.approx(getattr(visual_model, k)) for k in same)
  assert r.multimodal_gain == 0.5 and r.leakage == pytest.approx(0.3)   # max(0, 0.5 - 0.2)
  r = dd.diagnose_decoder(reads_image, jnp.float32(10.0), [real_only], answer_ids=IDS, text_only=0.9,
                          blank_value=[0.5, 0.25, 0.0])
  assert r.leakage == 0.0 and r.blind_accuracy == 0.5
  # Split into two padded batches (one pass, a generator): the counts add up.
  first, second = make_batch([0, 1, 2, 3, 8]), make_batch(slice(4, 9))   # same shape: one compile
  r = dd.diagnose_decoder(reads_image, jnp.float32(10.0), (b for b in (first, second)),
                          answer_ids=IDS, blank_value=[0.5, 0.25, 0.0])
  assert (r.count, r.accuracy, r.blind_accuracy) == (8, 1.0, 0.5)
  assert (r.swap_count, r.swap_unpaired) == (7, 1)


def test_markdown_names_the_blind_method(visual_model):
  md = visual_model.to_markdown()
  assert md.startswith("Image removed for blind scores: blank: constant image")
  assert "| blind accuracy Acc(∅,q) | 50.00 % |" in md and "| swap: follows" in md
  assert "| visual information gain KL(p(.\\|v,q) ‖ p(.\\|∅,q)) (nats) | " in md   # escaped pipes
  assert visual_model.to_dict()["leakage"] == 0.25


def test_attention_share_hand_case():
  att = np.full((2, 3, 2, 3, 5), 0.2, np.float32)     # rows not at the query: ignored
  # Layer 0: example 0 (query row 1, 2 text keys visible), both heads A_V = 0.4, A_T = 0.6;
  # example 1 (row 2, 3 visible), heads A_V = 0.2 and 0.6; example 2 is padding (mask 0).
  att[0, 0, :, 1] = [0.3, 0.1, 0.4, 0.2, 0.0]
  att[0, 1, 0, 2] = [0.1, 0.1, 0.2, 0.3, 0.3]
  att[0, 1, 1, 2] = [0.3, 0.3, 0.2, 0.1, 0.1]
  att[:, 2] = [1.0, 0, 0, 0, 0]
  out = dd.attention_share(att, 2, [1, 2, 0], mask=[1, 1, 0])
  # Layer 0 share: mean(0.4, mean(0.2, 0.6)) = 0.4. Per token: visual mean(0.2, 0.2) = 0.2;
  # text mean(0.6 / 2, mean(0.8, 0.4) / 3) = mean(0.3, 0.2) = 0.25 -> ratio 0.8.
  # Layer 1 (uniform 0.2 rows): A_V = 0.4; visual 0.2, text mean(0.6/2, 0.6/3) = 0.25 -> 0.8.
  np.testing.assert_allclose(out.share, [0.4, 0.4], rtol=1e-6)
  np.testing.assert_allclose(out.per_token_ratio, [0.8, 0.8], rtol=1e-6)
  jitted = jax.jit(lambda a, q: dd.attention_share(a, 2, q, mask=jnp.array([1, 1, 0])))(att, jnp.array([1, 2, 0]))
  np.testing.assert_allclose(jitted.share, out.share)
  with pytest.raises(ValueError, match="query_positions"):
    dd.attention_share(att, 2, [1, 2, 3])
  with pytest.raises(ValueError, match="num_visual"):
    dd.attention_share(att, 5, [1, 2, 0])


def test_gradient_norm_shares_hand_tree():
  grads = {"enc": {"w": jnp.array([3.0, 0.0])}, "proj": {"b": jnp.array([4.0])},
           "lm": {"e": jnp.array([[0.0, 12.0], [5.0, 0.0]])}}
  labels = {"enc": {"w": "vision"}, "proj": {"b": "projector"}, "lm": {"e": "lm"}}
  out = dd.gradient_norm_shares(grads, labels)
  assert {k: float(v) for k, v in out["norms"].items()} == {"vision": 3, "projector": 4, "lm": 13}
  np.testing.assert_allclose([out["shares"][k] for k in ("vision", "projector", "lm")],
                             np.array([9, 16, 169]) / 194, rtol=1e-6)
  assert float(out["total"]) == pytest.approx(math.sqrt(194))
  assert float(out["vision_side"]) == pytest.approx(5) and float(out["vision_language_ratio"]) == pytest.approx(5 / 13)
  huge = jax.jit(lambda g: dd.gradient_norm_shares(g, labels))(jax.tree.map(lambda x: x * 1e30, grads))
  assert float(huge["total"]) == pytest.approx(math.sqrt(194) * 1e30, rel=1e-5)
  assert float(huge["vision_language_ratio"]) == pytest.approx(5 / 13, rel=1e-5)
  zero = dd.gradient_norm_shares(jax.tree.map(jnp.zeros_like, grads), labels)
  assert all(float(v) == 0 for v in zero["shares"].values()) and float(zero["vision_language_ratio"]) == 0
  with pytest.raises(ValueError, match="labels"):
    dd.gradient_norm_shares(grads, {"enc": "vision"})


def _never(*args):
  raise AssertionError("apply must not be called for invalid inputs")


@pytest.mark.parametrize("change, kwargs, match", [
    (dict(answer_position=np.full(9, 5, np.int32)), {}, r"'answer_position' must be in \[0, T=5\)"),
    (dict(answer=None), {}, r"missing \['answer'\]"),
    ({}, dict(blind="zero_tokens"), "blind: expected one of"),
    (dict(answer=np.full(9, 6, np.int32)), {}, r"'answer' has token ids \[6\]"),
    ({}, dict(answer_ids=[5, 5]), "answer_ids: expected"),
    ({}, dict(blank_value=[0.1, 0.2]), "blank_value: expected a scalar or"),
    ({}, dict(text_only=1.5), "text_only"),
    ({}, dict(blind="mean", blank_value=0.0), "blank_value: only used"),
])
def test_clear_errors_before_anything_runs(change, kwargs, match):
  batch = make_batch()
  for k, v in change.items():
    if v is None:
      del batch[k]
    else:
      batch[k] = v
  kwargs = dict(dict(answer_ids=IDS), **kwargs)
  with pytest.raises(ValueError, match=match):
    dd.diagnose_decoder(_never, 1.0, [batch], **kwargs)


def test_errors_on_logits_and_one_pass():
  with pytest.raises(ValueError, match="outside apply's vocabulary of 12"):
    dd.diagnose_decoder(ignores_image, 1.0, [make_batch()], answer_ids=[5, 7, 9, 12])
  with pytest.raises(ValueError, match=r"apply: expected logits \[B=9, T=5, V\]"):
    dd.diagnose_decoder(lambda p, i, t: t.astype(jnp.float32), 1.0, [make_batch()], answer_ids=IDS)
  with pytest.raises(ValueError, match="pass a list"):
    dd.diagnose_decoder(ignores_image, 1.0, iter([make_batch()]), answer_ids=IDS, blind="noise")
