"""Tests of the prior-VQA generator (`mmbal.data.prior_vqa`)."""

import numpy as np
import pytest

from mmbal.data import easy_vqa
from mmbal.data import prior_vqa as pv

BASE = pv.PriorVQAConfig(num_train=6000, num_test=4000)


@pytest.fixture(scope="module")
def data():
  return {s: pv.generate(BASE, s) for s in pv.SPLITS}


def _shape_index(config, tokens, answer_position):
  """The queried shape of each example, read from its tokens (the word before "?", or
  before "the"/"many" ... : the only shape word in the question)."""
  vocab = pv.vocabulary(config)
  shape_ids = np.array([vocab.id(w) for w in pv.shape_words(config)])
  hits = tokens[:, :, None] == shape_ids[None, None, :]
  assert (hits.sum((1, 2)) == 1).all()
  return hits.any(1).argmax(1)


def test_keys_shapes_and_token_layout(data):
  vocab = pv.vocabulary(BASE)
  d = data["train"]
  n = BASE.num_train
  assert d["image"].shape == (n, 16, 16, 3) and d["image"].dtype == np.float32
  assert d["tokens"].shape == (n, 8) and d["tokens"].dtype == np.int32
  for k in ("answer", "answer_position", "question_type", "prior_answer"):
    assert d[k].shape == (n,) and d[k].dtype == np.int32
  assert 0.0 <= d["image"].min() and d["image"].max() <= 1.0
  rows = np.arange(n)
  assert (d["tokens"][:, 0] == vocab.BOS).all()
  assert (d["tokens"][rows, d["answer_position"]] == vocab.id("?")).all()
  assert (d["tokens"][rows, d["answer_position"] + 1] == d["answer"]).all()
  after = np.arange(8)[None] > d["answer_position"][:, None] + 1
  assert (d["tokens"][after] == vocab.PAD).all()
  # Every answer is an answer token of its own question type.
  for i, t in enumerate(BASE.question_types):
    assert np.isin(d["answer"][d["question_type"] == i], vocab.answer_ids_for(t)).all()
  # The colour question reads exactly as the template says.
  first = np.flatnonzero(d["question_type"] == 0)[0]
  words = [vocab.words[i] for i in d["tokens"][first]]
  assert words[:5] == ["<bos>", "what", "color", "is", "the"] and words[6] == "?"


def test_vocabulary_ids_and_answer_sets():
  vocab = pv.vocabulary(pv.PriorVQAConfig(num_colors=3, question_types=("color", "count")))
  assert vocab.words[:2] == ("<pad>", "<bos>") and vocab.PAD == 0 and vocab.BOS == 1
  assert vocab.size == len(vocab.words)
  colors = [vocab.id(w) for w in ("red", "green", "blue")]
  counts = [vocab.id(w) for w in ("1", "2", "3")]
  np.testing.assert_array_equal(vocab.answer_ids_for("color"), sorted(colors))
  np.testing.assert_array_equal(vocab.answer_ids, sorted(colors + counts))
  assert vocab.answer_ids.dtype == np.int32
  with pytest.raises(ValueError, match="question_type"):
    vocab.answer_ids_for("position")
  with pytest.raises(KeyError, match="'purple'"):
    vocab.id("purple")


def test_empirical_prior_in_train_and_test_id(data):
  # N = 6000 (train) / 4000: the std of a frequency near 0.8 is <= 0.0064, so 0.03 is > 4.5 std.
  for split in ("train", "test_id"):
    d = data[split]
    assert abs((d["answer"] == d["prior_answer"]).mean() - BASE.prior) < 0.03
  # The prior answer is a function of (type, shape), the same in every split.
  table = pv.prior_answer_index(BASE)
  for split in pv.SPLITS:
    d = data[split]
    shape = _shape_index(BASE, d["tokens"], d["answer_position"])
    vocab = pv.vocabulary(BASE)
    for i, t in enumerate(BASE.question_types):
      ids = np.array([vocab.id(w) for w in pv.answer_words(BASE, t)])
      rows = d["question_type"] == i
      np.testing.assert_array_equal(d["prior_answer"][rows], ids[table[t][shape[rows]]])


def test_prior_answers_are_distinct_per_shape_while_answers_last():
  table = pv.prior_answer_index(BASE)
  assert sorted(table["color"]) == list(range(6))  # 6 shapes, 6 colours: a permutation.
  assert sorted(table["count"]) == [0, 0, 1, 1, 2, 2]  # 3 answers tiled over 6 shapes.


def test_ood_split_never_gives_the_prior_answer_and_covers_the_others(data):
  d = data["test_ood"]
  assert not (d["answer"] == d["prior_answer"]).any()
  color = d["question_type"] == 0
  # Uniform over the 5 other colours: each about 1/5 of the colour questions given a prior.
  pri = d["prior_answer"][color]
  ans = d["answer"][color]
  one = pri == pri[0]
  counts = np.unique(ans[one], return_counts=True)[1]
  assert len(counts) == 5 and counts.min() > 0.5 * one.sum() / 5


def test_train_majority_per_question_is_the_prior_answer(data):
  d = data["train"]
  _, question = np.unique(d["tokens"][:, :7] * (np.arange(7) <= d["answer_position"][:, None]),
                          axis=0, return_inverse=True)
  for q in np.unique(question):
    rows = question == q
    values, counts = np.unique(d["answer"][rows], return_counts=True)
    assert values[np.argmax(counts)] == d["prior_answer"][rows][0]


def test_blind_majority_baseline_scores_prior_on_id_and_zero_on_ood(data):
  # Hand-derived: the blind classifier answers each question's train majority = its prior
  # answer, which is right with probability prior = 0.8 on test_id and never on test_ood.
  # (Pilot convention, "prior answer with prob. rho else uniform over all 6": rho + (1-rho)/6.)
  id_score = easy_vqa.question_only_baseline(data["train"], data["test_id"])
  ood_score = easy_vqa.question_only_baseline(data["train"], data["test_ood"])
  assert abs(id_score["accuracy"] - 0.8) < 0.03 and id_score["unseen"] == 0.0
  assert ood_score["accuracy"] == 0.0
  np.testing.assert_array_equal(id_score["predictions"], data["test_id"]["prior_answer"])


def test_prior_free_and_anti_prior_blind_scores():
  # prior = 1/K: no prior (blind ~ 1/K). prior = 0 with K = 2 counts: the other answer always.
  config = pv.PriorVQAConfig(question_types=("count",), max_count=2, prior=0.0, num_train=200,
                             num_test=100)
  train, test = pv.generate(config, "train"), pv.generate(config, "test_id")
  assert (train["answer"] != train["prior_answer"]).all()
  assert easy_vqa.question_only_baseline(train, test)["accuracy"] == 1.0


def _painted(image):
  """bool [N, H, W]: pixels that are not canvas grey."""
  return (np.abs(image - pv.CANVAS_GREY) > 1e-6).any(-1)


def test_colour_question_pixels_have_the_answer_colour():
  config = pv.PriorVQAConfig(question_types=("color",), color_similarity=0.5, num_train=300)
  d = pv.generate(config, "train")
  vocab = pv.vocabulary(config)
  shape = _shape_index(config, d["tokens"], d["answer_position"])
  masks = pv.shape_masks(config)
  # Hand-computed: red (0.9, 0.1, 0.1) blended half-way towards grey 0.5 -> (0.7, 0.3, 0.3).
  np.testing.assert_allclose(pv.palette(config)[0], [0.7, 0.3, 0.3], atol=1e-6)
  colours = dict(zip(pv.answer_words(config, "color"), pv.palette(config)))
  painted = _painted(d["image"])
  for i in range(300):
    pixels = d["image"][i][painted[i]]
    assert len(pixels) == masks[shape[i]].sum()
    np.testing.assert_allclose(pixels, np.broadcast_to(colours[vocab.words[d["answer"][i]]],
                                                       pixels.shape), atol=1e-6)


def test_counts_match_the_painted_objects_with_distractors():
  config = pv.PriorVQAConfig(question_types=("count",), distractors=2, num_train=300)
  d = pv.generate(config, "train")
  vocab = pv.vocabulary(config)
  shape = _shape_index(config, d["tokens"], d["answer_position"])
  masks = pv.shape_masks(config)
  grey = (np.abs(d["image"] - pv.DISTRACTOR_GREY) < 1e-6).all(-1)
  coloured = _painted(d["image"]) & ~grey
  count = np.array([int(vocab.words[a]) for a in d["answer"]])
  np.testing.assert_array_equal(coloured.sum((1, 2)), count * masks[shape].sum((1, 2)))
  assert grey.any((1, 2)).all()  # Every scene shows its distractors.
  assert set(count) == {1, 2, 3}


def test_position_answers_match_the_object_quadrant():
  config = pv.PriorVQAConfig(question_types=("position",), image_size=15, object_size=3,
                             distractors=1, num_train=300)
  d = pv.generate(config, "train")
  vocab = pv.vocabulary(config)
  coloured = _painted(d["image"]) & ~(np.abs(d["image"] - pv.DISTRACTOR_GREY) < 1e-6).all(-1)
  for i in range(300):
    rows, cols = np.nonzero(coloured[i])
    quadrant = vocab.words[d["answer"][i]]
    top, left = quadrant.startswith("top"), quadrant.endswith("left")
    # Half = 15 // 2 = 7: top rows 0..6, bottom rows 8..14; the middle row 7 is neither.
    assert (rows <= 6).all() if top else (rows >= 8).all()
    assert (cols <= 6).all() if left else (cols >= 8).all()


def test_upsample_duplicates_pixels_exactly():
  small = pv.PriorVQAConfig(noise=0.2, distractors=1, num_train=64)
  big = pv.PriorVQAConfig(noise=0.2, distractors=1, num_train=64, upsample=3)
  a, b = pv.generate(small, "train"), pv.generate(big, "train")
  assert b["image"].shape == (64, 48, 48, 3)
  np.testing.assert_array_equal(b["image"], np.repeat(np.repeat(a["image"], 3, 1), 3, 2))
  np.testing.assert_array_equal(a["tokens"], b["tokens"])


def test_visual_knobs_leave_the_text_side_unchanged():
  plain = pv.generate(pv.PriorVQAConfig(num_train=100), "train")
  knobs = pv.generate(pv.PriorVQAConfig(num_train=100, image_size=32, noise=0.5, distractors=3,
                                        color_similarity=0.6), "train")
  for k in ("tokens", "answer", "prior_answer", "question_type", "answer_position"):
    np.testing.assert_array_equal(plain[k], knobs[k])
  assert knobs["image"].shape == (100, 32, 32, 3)


def test_deterministic_per_seed_and_split():
  config = pv.PriorVQAConfig(num_train=50, num_test=50, noise=0.1, distractors=1)
  a, b = pv.generate(config, "train"), pv.generate(config, "train")
  for k in a:
    np.testing.assert_array_equal(a[k], b[k])
  other = pv.generate(pv.PriorVQAConfig(num_train=50, noise=0.1, distractors=1, seed=1), "train")
  assert not np.array_equal(a["image"], other["image"])
  assert not np.array_equal(a["answer"], other["answer"])
  test = pv.generate(config, "test_id")
  assert not np.array_equal(a["image"], test["image"])
  assert not np.array_equal(pv.shape_masks(config), pv.shape_masks(pv.PriorVQAConfig(seed=1)))


@pytest.mark.parametrize("kwargs, field", [
    (dict(object_size=20), "object_size"),
    (dict(object_size=9), "object_size"),  # Position questions: must fit a quadrant (8).
    (dict(prior=1.5), "prior"),
    (dict(prior=-0.1), "prior"),
    (dict(question_types=("color", "size")), "question_types"),
    (dict(question_types="color"), "question_types"),
    (dict(question_types=()), "question_types"),
    (dict(noise=-1.0), "noise"),
    (dict(noise=float("nan")), "noise"),
    (dict(color_similarity=1.2), "color_similarity"),
    (dict(upsample=0), "upsample"),
    (dict(distractors=-1), "distractors"),
    (dict(distractors=10), "distractors"),  # Too crowded for a 16x16 canvas.
    (dict(num_colors=11), "num_colors"),
    (dict(num_colors=1), "num_colors"),
    (dict(max_count=1), "max_count"),
    (dict(num_shapes=1, distractors=1), "num_shapes"),
    (dict(object_size=1, question_types=("color",), image_size=8), "num_shapes"),
    (dict(image_size=16.0), "image_size"),
    (dict(num_train=0), "num_train"),
])
def test_bad_config_fields_raise_naming_the_field(kwargs, field):
  with pytest.raises(ValueError, match=f"^{field}:"):
    pv.PriorVQAConfig(**kwargs)


def test_unknown_split_raises():
  with pytest.raises(ValueError, match="split: expected one of"):
    pv.generate(pv.PriorVQAConfig(num_train=10), "validation")


def test_exists_questions_show_the_shape_exactly_when_the_answer_is_yes():
  config = pv.PriorVQAConfig(question_types=("exists",), prior=0.5, num_train=400)
  d = pv.generate(config, "train")
  vocab = pv.vocabulary(config)
  assert [vocab.words[i] for i in d["tokens"][0, :6]] == ["<bos>", "is", "there", "a",
                                                         vocab.words[d["tokens"][0, 4]], "?"]
  shape = _shape_index(config, d["tokens"], d["answer_position"])
  masks = pv.shape_masks(config)
  painted = _painted(d["image"])
  yes = d["answer"] == vocab.id("yes")
  assert 0.4 < yes.mean() < 0.6          # prior 0.5 over two answers: balanced, as in POPE
  def trim(a):   # to the bounding box of the True pixels
    rows, cols = np.nonzero(a)
    return a[rows.min():rows.max() + 1, cols.min():cols.max() + 1]

  for i in range(400):   # one object; its painted pattern is the queried shape's mask iff yes
    box, mask = trim(painted[i]), trim(masks[shape[i]])
    assert (box.shape == mask.shape and (box == mask).all()) == yes[i], i
  # Opt-in: the default question types and vocabulary are unchanged.
  assert pv.PriorVQAConfig().question_types == ("color", "count", "position")
  assert "yes" not in pv.vocabulary(pv.PriorVQAConfig()).words


def test_multiple_choice_lists_the_true_and_the_prior_colour_and_answers_a_letter():
  config = pv.PriorVQAConfig(question_types=("color",), num_test=50)
  data = pv.generate(config, "test_ood")          # the true colour is never the prior one here
  mc = pv.multiple_choice(config, data, num_options=4)
  vocab = pv.choice_vocabulary(config, 4)
  words = lambda row: [vocab.words[t] for t in row]
  first = words(mc["tokens"][0][:mc["answer_position"][0] + 2])
  question = words(data["tokens"][0][:data["answer_position"][0] + 1])
  assert first[:len(question)] == question and first[len(question)::2][:4] == ["A", "B", "C", "D"]
  for i in range(50):
    row = words(mc["tokens"][i][:mc["answer_position"][i] + 2])
    listed = dict(zip(row[len(question)::2][:4], row[len(question) + 1::2][:4]))
    assert row[-1] == vocab.words[mc["answer"][i]]                 # the answer letter follows
    assert listed[vocab.words[mc["answer"][i]]] == vocab.words[data["answer"][i]]
    assert listed[vocab.words[mc["prior_answer"][i]]] == vocab.words[data["prior_answer"][i]]
    assert len(set(listed.values())) == 4
  assert pv.vocabulary(config).words == vocab.words[:pv.vocabulary(config).size]   # ids kept
  with pytest.raises(ValueError, match="num_options"):
    pv.multiple_choice(config, data, num_options=9)
