"""Tests of the easy-VQA builder and the question-only baseline (`mmbal.data.easy_vqa`)."""

import json
import os
import sys

import numpy as np
import pytest
import tensorflow_datasets as tfds
from PIL import Image

from mmbal.data import easy_vqa as ev
from mmbal.data import pipeline
from mmbal.data.manual import ManualDirError


# ----------------------------------------------------------------------------- baseline


def _qa(rows):
  """Examples from (question token ids, answer id, type): tokens BOS q ? a, then junk (9s)
  after the answer, which the baseline must ignore."""
  tokens = np.full((len(rows), 8), 9, np.int32)
  position = np.zeros(len(rows), np.int32)
  for i, (question, answer, _) in enumerate(rows):
    ids = [1, *question, 3]
    tokens[i, :len(ids)] = ids
    tokens[i, len(ids)] = answer
    position[i] = len(ids) - 1
  return dict(tokens=tokens, answer_position=position,
              answer=np.array([r[1] for r in rows], np.int32),
              question_type=np.array([r[2] for r in rows], np.int32))


def test_question_only_baseline_hand_computed():
  a, b, c = (20, 21), (20, 22), (23,)  # Three questions; c is not in train.
  x, y = 5, 6  # Answer token ids.
  train = _qa([(a, x, 0), (a, x, 0), (a, y, 0), (b, y, 1), (b, x, 1)])
  test = _qa([(a, x, 0), (a, y, 0), (b, x, 1), (b, y, 1), (c, y, 1)])
  result = ev.question_only_baseline(train, test, type_names=("yes/no", "open"))
  # a -> x (2 of 3); b: x and y tie -> the smaller id x; c unseen -> the train majority x
  # (3 of 5). Right: test 0 (a, x) and 2 (b, x): 2 of 5.
  np.testing.assert_array_equal(result["predictions"], [x, x, x, x, x])
  assert result["accuracy"] == pytest.approx(2 / 5)
  assert result["per_type"] == {"yes/no": pytest.approx(1 / 2), "open": pytest.approx(1 / 3)}
  assert result["unseen"] == pytest.approx(1 / 5)
  # Questions are compared through "?" only: a longer question is a different one.
  longer = _qa([((20, 21, 24), x, 0)])
  assert ev.question_only_baseline(train, longer)["unseen"] == 1.0


def test_question_only_baseline_bad_input():
  train = _qa([((20,), 5, 0)])
  with pytest.raises(ValueError, match="test: missing keys \\['answer_position'\\]"):
    ev.question_only_baseline(train, {k: v for k, v in train.items() if k != "answer_position"})
  with pytest.raises(ValueError, match="train: expected at least one example"):
    ev.question_only_baseline({k: v[:0] for k, v in train.items()}, train)


# ----------------------------------------------------------------------------- tokens


def test_tokenisation_and_vocabulary():
  vocab = ev.build_vocabulary(["Is there a red shape?", "what color is the shape?"])
  assert vocab.words[:4] == ("<pad>", "<bos>", "<unk>", "?")
  assert vocab.words[4:] == tuple(sorted(
      {"is", "there", "a", "red", "shape", "what", "color", "the"} | set(ev.ANSWERS)))
  tokens, position = ev.encode(vocab, "is there a purple shape?", "no")
  words = [vocab.words[i] for i in tokens]
  assert words == ["<bos>", "is", "there", "a", "<unk>", "shape", "?", "no"] + ["<pad>"] * 4
  assert position == 6
  np.testing.assert_array_equal(vocab.answer_ids_for("yes/no"),
                                sorted([vocab.id("no"), vocab.id("yes")]))
  assert len(vocab.answer_ids) == 13
  with pytest.raises(ManualDirError, match="at most 9 fit"):
    ev.encode(vocab, "is " * 10 + "?", "no")


# ----------------------------------------------------------------------------- builder


def _write_layout(root, train, test, bad_image=None):
  """A tiny easy-VQA data dir: images are 64x64 fills with the image id in pixel [0, 0]."""
  os.makedirs(root)
  with open(os.path.join(root, "answers.txt"), "w") as f:
    f.write("\n".join(ev.ANSWERS) + "\n")
  for split, rows in (("train", train), ("test", test)):
    os.makedirs(os.path.join(root, split, "images"))
    with open(os.path.join(root, split, "questions.json"), "w") as f:
      json.dump(rows, f)
    for image_id in {r[2] for r in rows}:
      array = np.full((64, 64, 3), 100, np.uint8)
      array[0, 0] = (image_id, 1 if split == "train" else 2, 0)
      if (split, image_id) == bad_image:
        array = array[:32]
      Image.fromarray(array).save(os.path.join(root, split, "images", f"{image_id}.png"))


TRAIN_ROWS = ([["is there a red shape?", "no", i] for i in range(10)] +
              [["is there a red shape?", "yes", i] for i in range(3)] +
              [["what color is the shape?", "blue", i] for i in range(10)] +
              [["what color is the shape?", "red", 0]])
TEST_ROWS = [["is there a red shape?", "yes", 0], ["is there a red shape?", "no", 1],
             ["what color is the shape?", "blue", 0], ["what shape is present?", "circle", 1]]


@pytest.fixture(scope="module")
def manual_builder(tmp_path_factory):
  base = tmp_path_factory.mktemp("easy_vqa_manual")
  _write_layout(str(base / "manual" / "easy_vqa" / "data"), TRAIN_ROWS, TEST_ROWS)
  builder = ev.EasyVqa(data_dir=str(base / "tfds"), manual_dir=str(base / "manual"))
  builder.download_and_prepare()
  return builder


def test_builder_on_a_manual_dir(manual_builder):
  b = manual_builder
  arrays = {s: ev.arrays(b, s) for s in ("train", "validation", "test")}
  # 10 train images: round(0.1 * 10) = 1 image (all its questions) is validation.
  val_images = set(arrays["validation"]["image_id"].tolist())
  assert len(val_images) == 1 and not val_images & set(arrays["train"]["image_id"].tolist())
  assert len(arrays["train"]["answer"]) + len(arrays["validation"]["answer"]) == len(TRAIN_ROWS)
  assert len(arrays["test"]["answer"]) == 4
  vocab = ev.vocabulary(b)
  test = arrays["test"]
  # Stored images are the PNGs (pixel [0, 0] = (image id, split, 0)).
  assert test["image"].dtype == np.uint8 and test["image"].shape == (4, 64, 64, 3)
  np.testing.assert_array_equal(test["image"][:, 0, 0], [[0, 2, 0], [1, 2, 0], [0, 2, 0],
                                                         [1, 2, 0]])
  # "shape", "present" are not in the train questions... "present" becomes <unk>.
  words = [vocab.words[i] for i in test["tokens"][3] if i]
  assert words == ["<bos>", "what", "shape", "is", "<unk>", "?", "circle"]
  np.testing.assert_array_equal(test["question_type"], [0, 0, 1, 1])
  np.testing.assert_array_equal(test["answer"], [vocab.id(w) for w in
                                                 ("yes", "no", "blue", "circle")])
  # Train majority: "is there a red shape?" -> "no"; "what color ..." -> "blue"; the unseen
  # question -> the most frequent train answer, whichever image went to validation: "no"
  # (9-10 of the train rows) vs "blue" (9-10): check against the train split itself.
  train = arrays["train"]
  counts = {w: int((train["answer"] == vocab.id(w)).sum()) for w in ("no", "blue")}
  fallback = min(counts, key=lambda w: (-counts[w], vocab.id(w)))
  np.testing.assert_array_equal(test["prior_answer"], [vocab.id(w) for w in
                                                       ("no", "no", "blue", fallback)])
  result = ev.question_only_baseline(train, test, ev.QUESTION_TYPES)
  np.testing.assert_array_equal(result["predictions"], test["prior_answer"])
  assert result["per_type"]["yes/no"] == 0.5
  assert b.info.metadata["unseen_questions"]["test"] == 1


def test_builder_is_registered_and_aliased(manual_builder):
  assert pipeline.data_names.DATA_SETS["easy_vqa"] == "mmbal_easy_vqa"
  assert tfds.builder_cls("mmbal_easy_vqa") is ev.EasyVqa


def test_builder_errors(tmp_path, monkeypatch):
  missing = tmp_path / "nothing"
  missing.mkdir()
  (missing / "other.txt").write_text("x")
  with pytest.raises(ManualDirError, match="expected easy-VQA's data layout"):
    ev.EasyVqa(data_dir=str(tmp_path / "t1"), manual_dir=str(missing)).download_and_prepare()
  bad = tmp_path / "bad"
  _write_layout(str(bad), TRAIN_ROWS, [["is there a red shape?", "maybe", 0]])
  with pytest.raises(ManualDirError, match="questions.json: row 0: expected"):
    ev.EasyVqa(data_dir=str(tmp_path / "t2"), manual_dir=str(bad)).download_and_prepare()
  small = tmp_path / "small"
  _write_layout(str(small), TRAIN_ROWS, TEST_ROWS, bad_image=("test", 1))
  with pytest.raises(ManualDirError, match="1.png: expected a 64x64 image, got 64x32"):
    ev.EasyVqa(data_dir=str(tmp_path / "t3"), manual_dir=str(small)).download_and_prepare()
  monkeypatch.setitem(sys.modules, "easy_vqa", None)  # As if the package were not installed.
  with pytest.raises(ModuleNotFoundError, match=r"pip install mmbal\[vqa\]"):
    ev.EasyVqa(data_dir=str(tmp_path / "t4")).download_and_prepare()


def test_builder_on_the_installed_package(tmp_path):
  pytest.importorskip("easy_vqa")
  builder = ev.EasyVqa(data_dir=str(tmp_path))
  builder.download_and_prepare(
      download_config=tfds.download.DownloadConfig(max_examples_per_split=40))
  assert {k: v.num_examples for k, v in builder.info.splits.items()} == dict(
      train=40, validation=40, test=40)
  meta = builder.info.metadata
  assert meta["validation"]["images"] == 400 and meta["unseen_questions"]["test"] == 0
  vocab = ev.vocabulary(builder)
  assert vocab.size == 31  # <pad> <bos> <unk> ? + 26 question words + "yes".
  test = ev.arrays(builder, "test")
  # The first test question of easy-vqa 1.0, and its image.
  root = ev.package_data_dir()
  question, answer, image_id = ev.read_questions(root, "test")[0]
  assert test["question_index"][0] == 0 and test["image_id"][0] == image_id
  words = [vocab.words[i] for i in test["tokens"][0] if i]
  assert words == ["<bos>"] + ev.words_of(question) + [answer]
  png = np.asarray(Image.open(os.path.join(root, "test", "images", f"{image_id}.png")))
  np.testing.assert_array_equal(test["image"][0], png)
  # The language prior of the templates (mllm_bias.md §5.6): "is there a <shape>?" is "no"
  # 2 times in 3, "is there a <colour> shape?" 7 in 8; negated questions flip to "yes". So
  # the train-majority (prior) answer of a yes/no question is "yes" iff it is negated.
  rows = ev.read_questions(root, "test")[:40]
  yes_no = test["question_type"] == 0
  assert yes_no.sum() > 10
  negated = np.array([bool({"not", "no"} & set(ev.words_of(q))) for q, _, _ in rows])
  np.testing.assert_array_equal(test["prior_answer"][yes_no],
                                np.where(negated[yes_no], vocab.id("yes"), vocab.id("no")))


def test_changing_priors_split_inverts_each_questions_answer_prior():
  # Two questions with 3 answers each, 100 examples per (question, answer); the majority answer
  # per question in the new train split must be a minority answer in the new test split.
  rng = np.random.default_rng(0)
  question = np.repeat([0, 1], 300)
  answer = np.concatenate([np.repeat([10, 11, 12], 100), np.repeat([20, 21, 22], 100)])
  tokens = np.stack([np.ones(600), 5 + question, np.full(600, 3), answer], 1).astype(np.int32)
  data = dict(tokens=tokens, answer=answer.astype(np.int32), answer_position=np.full(600, 2, np.int32),
              question_type=np.zeros(600, np.int32), prior_answer=np.zeros(600, np.int32),
              image_id=rng.integers(1000, size=600))
  train, test = ev.changing_priors_split(data, skew=0.9, test_fraction=0.3, seed=1)
  assert len(test["answer"]) == 180 and len(train["answer"]) > 300      # 30 % of 600 in test
  assert set(np.unique(train["answer"])) == set(answer.tolist())        # every answer trainable
  blind = ev.question_only_baseline(train, test)
  assert blind["accuracy"] < 0.1     # the train prior is a test minority (0.9 vs 0.1 shares)
  assert ev.question_only_baseline(train, train)["accuracy"] > 0.45
  np.testing.assert_array_equal(test["prior_answer"], blind["predictions"])
  with pytest.raises(ValueError, match="skew in"):
    ev.changing_priors_split(data, skew=0.4)


def test_vcd_experiment_on_the_cp_split_writes_its_report(tmp_path):
  # experiments.mllm_bias.easy_vqa_cp --tiny on a fixture: seeds saved and skipped when run
  # again, the three read-outs scored, the paired tests reported.
  from experiments.mllm_bias import easy_vqa_cp  # pylint: disable=import-outside-toplevel
  _write_layout(str(tmp_path / "manual" / "easy_vqa" / "data"), TRAIN_ROWS * 2, TEST_ROWS * 3)
  argv = ["--data-dir", str(tmp_path / "tfds"), "--manual-dir", str(tmp_path / "manual"),
          "--out", str(tmp_path / "out"), "--seeds", "0", "1", "--tiny"]
  result = easy_vqa_cp.main(argv)
  assert [r["seed"] for r in result["runs"]] == [0, 1]
  for r in result["runs"]:
    assert set(r["accuracy"]) == {"full", "no_image", "vcd"}
    assert all(0.0 <= a <= 1.0 for a in r["accuracy"].values())
  assert set(result["tests"]) == {"vcd - full", "vcd - no_image"}
  assert 0.0 <= result["tests"]["vcd - full"]["wilcoxon_p"] <= 1.0
  report = (tmp_path / "out" / "easy_vqa_cp" / "report.md").read_text()
  assert "question-only baseline" in report and "Wilcoxon" in report
  saved = (tmp_path / "out" / "easy_vqa_cp" / "runs" / "seed0.json").read_text()
  assert easy_vqa_cp.main(argv + ["--report-only"])["runs"][0] == json.loads(saved)
