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


def without_image(scale, tokens):
  """The image-reading model without its image: no evidence, uniform over the answers."""
  return _everywhere(jnp.zeros((tokens.shape[0], 3)), tokens)


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
                             text_only=(text_only_apply, jnp.float32(3.0)), no_image=without_image)


def test_model_ignoring_the_image(blind_model):
  r = blind_model
  # Predictions 5 (w1 = 3) / 7 (w1 = 4) vs Y: right on rows 0 and 2 only.
  assert r.count == 8 and r.accuracy == r.blind_accuracy == 0.25
  assert r.visual_dependency == 0 and r.visual_dependency_normalised == 0
  assert r.blind_kl == 0 and r.blind_information_gain == 0 and r.swap_change_rate == 0
  assert r.no_image_accuracy is r.multimodal_gain is r.visual_information_gain is r.leakage is None
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
  assert r.accuracy == r.blind_accuracy == 0.25 and r.blind_kl == 0
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
  assert r.visual_dependency == 0.5 and r.visual_dependency_normalised == 0.5
  assert r.prior_following == 2 / 8                              # y = prior on rows 0, 2
  assert r.blind_prior_following == 3 / 8                        # prior 7 on rows 2, 3, 7
  # No image: uniform logits, argmax 5: right on rows 0, 3; prior 5 on rows 0, 1, 4, 5, 6.
  assert r.no_image_accuracy == 0.25 and r.multimodal_gain == 0.75
  assert r.no_image_prior_following == 5 / 8 and r.no_image_loss == pytest.approx(math.log(3))
  # Full logits -10 (2c - k)^2: at c = 0 or 1 (rows 0, 1, 3, 7) the other answers get -10 and
  # -40; at c = 0.5, -10 and -10. VIG = log 3 - mean CE.
  ce = (math.log(1 + math.exp(-10) + math.exp(-40)) + math.log(1 + 2 * math.exp(-10))) / 2
  assert r.loss == pytest.approx(ce, abs=1e-7)   # float32 log-softmax near 1
  assert r.visual_information_gain == pytest.approx(math.log(3) - ce, rel=1e-5)
  # LM base S_t = 0.25: leakage max(0, S_ov - S_t) = 0.
  assert r.text_only_accuracy == 0.25 and r.leakage == 0.0
  # The mean image equals the blank one here (every pixel of channel 0 averages to 0.5).
  m = dd.diagnose_decoder(reads_image, jnp.float32(10.0), [make_batch()], answer_ids=IDS, blind="mean")
  assert m.blind_accuracy == 0.5 and m.blind_detail.startswith("mean: the mean image over the 8")


@pytest.mark.parametrize("scale", [0.0, 1e30])
def test_zero_and_huge_logits_stay_finite(scale):
  r = dd.diagnose_decoder(reads_image, jnp.float32(scale), [make_batch()], answer_ids=IDS)
  assert all(math.isfinite(getattr(r, k)) for k in ("loss", "blind_loss", "blind_kl"))
  if scale == 0:   # uniform over 3 answers: argmax picks 5 (right on rows 0, 3), CE log 3, no KL
    assert r.accuracy == 0.25 and r.loss == pytest.approx(math.log(3)) and r.blind_kl == 0
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
  assert r.blind_kl == 0 and r.num_answers == 3


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
  assert r.blind_kl == pytest.approx((kl(2.0) + kl(1.0)) / 2, rel=1e-5)
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
  r = dd.diagnose_decoder(reads_image, jnp.float32(10.0), [real_only], answer_ids=IDS, text_only=0.2,
                          no_image=without_image)
  same = ("accuracy", "blind_accuracy", "blind_kl", "visual_information_gain", "prior_following",
          "swap_count", "swap_unpaired", "swap_change_rate", "image_following_rate", "loss")
  assert all(getattr(r, k) == pytest.approx(getattr(visual_model, k)) for k in same)
  assert r.multimodal_gain == 0.75 and r.leakage == pytest.approx(0.05)   # max(0, 0.25 - 0.2)
  r = dd.diagnose_decoder(reads_image, jnp.float32(10.0), [real_only], answer_ids=IDS, text_only=0.9,
                          blank_value=[0.5, 0.25, 0.0], no_image=without_image)
  assert r.leakage == 0.0 and r.blind_accuracy == 0.5
  # Split into two padded batches (one pass, a generator): the counts add up.
  first, second = make_batch([0, 1, 2, 3, 8]), make_batch(slice(4, 9))   # same shape: one compile
  r = dd.diagnose_decoder(reads_image, jnp.float32(10.0), (b for b in (first, second)),
                          answer_ids=IDS, blank_value=[0.5, 0.25, 0.0])
  assert (r.count, r.accuracy, r.blind_accuracy) == (8, 1.0, 0.5)
  assert (r.swap_count, r.swap_unpaired) == (7, 1)


def test_markdown_names_the_blind_method(visual_model):
  md = visual_model.to_markdown()
  assert md.startswith("Image replaced for the blind scores: blank: constant image")
  assert "| blind accuracy Acc(blind,q) | 50.00 % |" in md and "| swap: follows" in md
  assert "| no-image accuracy S_ov (the model without its image) | 25.00 % |" in md
  assert "| KL(p(.\\|v,q) ‖ p(.\\|blind,q)) (nats) | " in md   # escaped pipes
  assert visual_model.to_dict()["leakage"] == 0.0


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


def test_diagnose_from_logits_matches_the_model_pass(visual_model):
  """Arrays of answer logits (as a PyTorch MLLM would give) -> the same diagnosis."""
  b = make_batch()
  answer_logits = lambda fn, image: np.asarray(fn(jnp.float32(10.0), jnp.asarray(image),
                                                  jnp.asarray(b["tokens"]))[:, POS][:, IDS])
  blank = np.broadcast_to(np.array([0.5, 0.25, 0.0], np.float32), b["image"].shape)
  donor, paired = dd.swap_donors(b["tokens"], b["answer_position"], b["mask"], seed=(0, 0))
  index = lambda tokens: np.searchsorted(IDS, tokens).astype(np.int32)
  r = dd.diagnose_from_logits(
      answer_logits(reads_image, b["image"]), index(b["answer"]), mask=b["mask"],
      blind=answer_logits(reads_image, blank), blind_detail="a blank image",
      no_image=np.zeros((len(Y), 3)), swapped=answer_logits(reads_image, b["image"][donor]),
      swap_donor=np.where(paired, donor, -1), prior_answer=index(b["prior_answer"]),
      text_only=answer_logits(ignores_image, b["image"]))
  mine, theirs = r.to_dict(), visual_model.to_dict()
  for k in theirs:
    if k not in ("blind", "blind_detail"):
      assert mine[k] == pytest.approx(theirs[k], abs=1e-6), k
  assert (r.blind, r.blind_detail) == ("given", "a blank image")
  # Only what is given is measured; S_t may be a number.
  r = dd.diagnose_from_logits(np.array([[2.0, 0.0], [0.0, 1.0]]), np.array([0, 0]),
                              no_image=np.array([[1.0, 0.0], [1.0, 0.0]]), text_only=0.5)
  assert (r.accuracy, r.no_image_accuracy, r.multimodal_gain, r.leakage) == (0.5, 1.0, -0.5, 0.5)
  assert r.blind_accuracy is None and r.swap_change_rate is None and r.swap_count == 0
  assert "blind" not in r.to_markdown()


@pytest.mark.parametrize("kwargs, message", [
    (dict(logits=np.zeros((3,)), answer=np.zeros(3, int)), r"logits: expected answer logits \[N, K\]"),
    (dict(logits=np.zeros((3, 2)), answer=np.array([0, 2, 1])), r"answer: expected \[3\] answer indices in \[0, 2\)"),
    (dict(logits=np.zeros((3, 2)), answer=np.zeros(3, int), no_image=np.zeros((2, 2))),
     r"no_image: expected answer logits \[N=3, K=2\]"),
    (dict(logits=np.array([[0.0, np.nan]] * 3), answer=np.zeros(3, int)), "NaN or \+inf logits .first at row 0"),
    (dict(logits=np.zeros((3, 2)), answer=np.zeros(3, int), swapped=np.zeros((3, 2))),
     "swapped and swap_donor go together"),
    (dict(logits=np.zeros((3, 2)), answer=np.zeros(3, int), blind_detail="blank"),
     "blind_detail describes the blind logits"),
    (dict(logits=np.zeros((3, 2)), answer=np.zeros(3, int), text_only=1.5), r"S_t must be in \[0, 1\]"),
])
def test_diagnose_from_logits_refuses_bad_arrays(kwargs, message):
  with pytest.raises(ValueError, match=message):
    dd.diagnose_from_logits(**kwargs)


def test_contrastive_logits_by_hand():
  from mmbal.diagnostics.contrastive import contrastive_logits
  # Full (2, 1, -5), reference (no image) (2, 0, 0): alpha 1 -> 2 z - z' = (2, 2, -10);
  # p_full = softmax(2, 1, -5): answer 2 has p/p_max = e^-7 < beta 0.1 -> cut.
  out = np.asarray(contrastive_logits(jnp.array([2.0, 1.0, -5.0]), jnp.array([2.0, 0.0, 0.0])))
  np.testing.assert_allclose(out[:2], [2.0, 2.0])
  assert out[2] == -np.inf
  # Without the cut the contrast alone: (2, 2, -10); alpha 0 is plain decoding.
  np.testing.assert_allclose(contrastive_logits(jnp.array([2.0, 1.0, -5.0]),
                                                jnp.array([2.0, 0.0, 0.0]), beta=0.0), [2, 2, -10])
  np.testing.assert_allclose(contrastive_logits(jnp.array([2.0, 1.0, -5.0]),
                                                jnp.array([9.0, 0.0, 0.0]), alpha=0.0, beta=0.0),
                             [2.0, 1.0, -5.0])
  with pytest.raises(ValueError, match="alpha >= 0 and beta in"):
    contrastive_logits(jnp.zeros(3), jnp.zeros(3), alpha=-1.0)


def test_contrastive_decoding_scored_through_diagnose_from_logits():
  from mmbal.diagnostics.contrastive import contrastive_logits
  # Two questions whose prior answer is 0. With the image the model leans to the prior on row 1
  # (right answer 1); the no-image logits hold the prior alone. Contrasting removes it.
  full = np.array([[3.0, 0.0], [1.0, 0.8]])
  no_image = np.array([[1.0, 0.0], [1.0, 0.0]])
  answer, prior = np.array([0, 1]), np.array([0, 0])
  plain = dd.diagnose_from_logits(full, answer, prior_answer=prior)
  vcd = dd.diagnose_from_logits(np.asarray(contrastive_logits(full, no_image, alpha=1.0, beta=0.1)),
                                answer, prior_answer=prior)
  # Row 1: 2 * (1, 0.8) - (1, 0) = (1, 1.6) -> answer 1; row 0: (5, 0) stays 0.
  assert (plain.accuracy, plain.prior_following) == (0.5, 1.0)
  assert (vcd.accuracy, vcd.prior_following) == (1.0, 0.5)


def test_pope_scores_by_hand():
  from mmbal.diagnostics.pope import pope_scores
  # truth  Y Y Y N N N ; predicted Y Y N Y Y N ; a padding row (predicted Y, truth N) ignored.
  # tp 2, fp 2, fn 1, tn 1: accuracy 3/6, precision 2/4, recall 2/3, F1 2 pr / (p + r) = 4/7.
  pred = np.array([1, 1, 0, 1, 1, 0, 1], bool)
  true = np.array([1, 1, 1, 0, 0, 0, 0], bool)
  s = pope_scores(pred, true, mask=np.array([1] * 6 + [0]))
  assert (s.count, s.accuracy, s.precision, s.recall) == (6, 0.5, 0.5, pytest.approx(2 / 3))
  assert s.f1 == pytest.approx(4 / 7) and s.yes_ratio == pytest.approx(4 / 6) and s.true_yes_ratio == 0.5
  never = pope_scores(np.zeros(4, bool), np.array([1, 0, 1, 0], bool))
  assert never.precision is None and never.f1 is None and never.yes_ratio == 0.0
  with pytest.raises(ValueError, match="two \\[N\\] bool arrays"):
    pope_scores(np.zeros(3), np.zeros(3, bool))
