"""TFDS builder `mmbal_easy_vqa`: easy-VQA (coloured shapes, templated questions) and the
question-only baseline.

easy-VQA (Victor Zhou, 2019; https://github.com/vzhou842/easy-VQA, MIT licence) is a
small VQA set with a strong language prior: 64x64 images of one coloured shape, and
templated questions ("what color is the triangle?", "is there a red shape?", "does the
image not contain a circle?") with 13 possible answers. The PyPI package `easy-vqa`
(1.0) ships the data: `pip install mmbal[vqa]`. Registered with TFDS as
`mmbal_easy_vqa`; `mmbal.data.load("easy_vqa", ...)` resolves to it.

Source. By default the builder reads the installed package's `data/` directory. A
manual directory with the same layout is used instead when given (`manual_dir=` or
TFDS's `<data_dir>/downloads/manual`), either the data directory itself or one of
`<manual_dir>/easy_vqa/data`, `<manual_dir>/easy_vqa`, `<manual_dir>/data`:

    answers.txt                      the 13 answers, one a line (`ANSWERS`)
    {train,test}/questions.json      [[question, answer, image id], ...]
    {train,test}/images/<id>.png     64x64 RGB

Splits. `test` = the package's test set (1,000 images, 9,673 questions). `validation`
= the questions of a fixed 10% of the train IMAGES (`VALIDATION_FRACTION`, drawn with
`np.random.default_rng(VALIDATION_SEED)` from the sorted train image ids: 400 of the
4,000), so no image is in two splits; `train` = the other train questions.

Tokens. The vocabulary (`vocabulary(builder)`, a `prior_vqa.Vocabulary`): `<pad>` 0,
`<bos>` 1, `<unk>` 2, `?` 3, then the sorted words of the TRAIN questions and the
answers (answer tokens share ids with the same question words). Questions are
lower-cased, "?" is split off, words are split on white space; words not seen in the
train questions become `<unk>`. `tokens` = `<bos> words ? answer <pad>...`, length
`SEQ_LEN` (12: the longest template has 9 words); `answer_position` = index of "?".

Features per question: `image` uint8 [64, 64, 3], `tokens` int32 [12], `answer` int32
(token id), `answer_position`, `question_type` (0 "yes/no": the answer is yes or no, i.e.
the question starts with "is"/"does"; 1 "open": a colour or shape), `prior_answer`
(token id of the question's majority answer in `train`, see `question_only_baseline`),
`image_id`, `question_index` (row in its questions.json), `question` (text), and
`label` (the answer's index in `ANSWERS`, so `mmbal.data.load` can use the set as
classification of `image` / `tokens`; it casts both to float32 without rescaling, so
pixels stay in [0, 255]). `arrays(builder, split)` gives a whole split as numpy arrays in
file order (reading all 48k questions takes ~20 s; building them once ~2 min on 2 cores).

Measured question-only baseline (`question_only_baseline`, majority answer per question
string, ties to the smallest token id): package train -> test 66.94% overall, 82.54% on
yes/no, 23.06% on open questions; this builder's train split (validation images held
out) -> test: 67.06%, 82.54% and 23.53%. The reference's 67.0% / 82.5% / 23.3% broke the
two tied questions ("what shape is present?", "what color is the circle?") by first
occurrence instead.
"""

from __future__ import annotations

import collections
import functools
import json
import os
from typing import Mapping, Sequence

import numpy as np
import tensorflow_datasets as tfds
from PIL import Image

from mmbal.data import manual
from mmbal.data.manual import ManualDirError
from mmbal.data.prior_vqa import Vocabulary

ANSWERS = ("circle", "green", "red", "gray", "yes", "teal", "black", "rectangle", "yellow",
           "triangle", "brown", "blue", "no")  # The package's answers.txt order.
QUESTION_TYPES = ("yes/no", "open")
YES_NO = ("no", "yes")
IMAGE_SHAPE = (64, 64, 3)
SEQ_LEN = 12
UNK = "<unk>"
SPECIAL_WORDS = (UNK, "?")  # After <pad> and <bos>.
VALIDATION_FRACTION = 0.1
VALIDATION_SEED = 0
SOURCE_SPLITS = ("train", "test")
_INSTALL_HINT = "pip install mmbal[vqa] (or pip install easy-vqa==1.0)"

_CITATION = """\
@misc{zhou2019easyvqa,
  author = {Zhou, Victor},
  title = {easy-{VQA}: a simple visual question answering dataset},
  year = {2019},
  howpublished = {\\url{https://github.com/vzhou842/easy-VQA}}
}"""


# ----------------------------------------------------------------------------- baseline


def question_only_baseline(train: Mapping[str, np.ndarray], test: Mapping[str, np.ndarray],
                           type_names: Sequence[str] | None = None) -> dict:
  """Accuracy of the blind majority-answer-per-question classifier.

  A question is its token sequence up to and including "?" (`tokens[:answer_position+1]`),
  i.e. the question string. The classifier predicts, for each test question, the answer
  most frequent for that question in `train` (ties: the smallest answer token id);
  questions not in `train` get the most frequent train answer overall. Accuracy =
  mean over test examples of [prediction == answer] (Agrawal et al., "Don't just assume;
  look and answer", CVPR 2018, use this kind of baseline to expose language priors).

  Args:
    train: a dict with `tokens` [N, T], `answer_position` [N], `answer` [N] and
      `question_type` [N] (as `prior_vqa.generate` and `arrays` give them).
    test: a dict with the same keys, scored against the answers seen in `train`.
    type_names: names of the question types (keys of `per_type`); default: the ints.

  Returns:
    `{"accuracy": float, "per_type": {type: float}, "unseen": fraction of test
    questions not in train, "predictions": int32 [N_test]}`.
  """
  for name, data in (("train", train), ("test", test)):
    missing = [k for k in ("tokens", "answer_position", "answer", "question_type")
               if k not in data]
    if missing:
      raise ValueError(f"{name}: missing keys {missing}")
    if len(data["answer"]) == 0:
      raise ValueError(f"{name}: expected at least one example, got none")
  train_q, test_q = _question_ids(train, test)
  answers = np.asarray(train["answer"], np.int64)
  # Majority per question: sort by (question, -count, answer) and take each question's first.
  pairs, counts = np.unique(np.stack([train_q, answers], 1), axis=0, return_counts=True)
  order = np.lexsort((pairs[:, 1], -counts, pairs[:, 0]))
  pairs = pairs[order]
  first = np.ones(len(pairs), bool)
  first[1:] = pairs[1:, 0] != pairs[:-1, 0]
  table = dict(zip(pairs[first, 0].tolist(), pairs[first, 1].tolist()))
  values, value_counts = np.unique(answers, return_counts=True)
  fallback = int(values[np.argmax(value_counts)])
  seen = np.array([q in table for q in test_q.tolist()], bool)
  predictions = np.array([table.get(q, fallback) for q in test_q.tolist()], np.int32)
  correct = predictions == np.asarray(test["answer"])
  types = np.asarray(test["question_type"])
  per_type = {}
  for t in np.unique(types).tolist():
    per_type[type_names[t] if type_names is not None else t] = float(correct[types == t].mean())
  return dict(accuracy=float(correct.mean()), per_type=per_type,
              unseen=float(1.0 - seen.mean()), predictions=predictions)


def _question_ids(train, test) -> tuple[np.ndarray, np.ndarray]:
  """Integer ids of the question token prefixes (through "?"), shared by train and test."""
  keys = []
  for data in (train, test):
    tokens = np.asarray(data["tokens"], np.int64)
    position = np.asarray(data["answer_position"], np.int64)
    keep = np.arange(tokens.shape[1])[None, :] <= position[:, None]
    keys.append(np.where(keep, tokens, -1))
  width = max(k.shape[1] for k in keys)
  keys = [np.pad(k, ((0, 0), (0, width - k.shape[1])), constant_values=-1) for k in keys]
  _, ids = np.unique(np.concatenate(keys), axis=0, return_inverse=True)
  ids = ids.reshape(-1)
  return ids[:len(keys[0])], ids[len(keys[0]):]


def changing_priors_split(data: Mapping[str, np.ndarray], *, skew: float = 0.9,
                          test_fraction: float = 0.3, seed: int = 0) -> tuple[dict, dict]:
  """A VQA-CP-style re-split (Agrawal et al., CVPR 2018): per question, the answer
  distribution of `train` is inverted in `test`.

  ``data``: examples as `arrays` gives them (e.g. the package's train and test concatenated).
  Per question (the token prefix through "?", as `question_only_baseline` groups them), its
  answers are shuffled (``np.random.default_rng(seed)``) and dealt alternately into a
  *train-heavy* and a *test-heavy* half. A fraction ``skew`` of a train-heavy answer's
  examples goes to train and ``1 - skew`` to test; the reverse for a test-heavy answer. Then
  test is subsampled to ``test_fraction`` of all examples where it holds more (the rows
  dropped are in neither split). So the
  answers the prior learns from train are the minority answers of test, while every answer
  of a question is still seen in train (unless it has a single example). Questions with a
  single answer cannot be inverted and go to train.

  Returns ``(train, test)`` dicts with the same keys, ``prior_answer`` recomputed as each
  question's majority answer in the new train split.
  """
  if not 0.5 < skew <= 1.0 or not 0.0 < test_fraction < 1.0:
    raise ValueError(f"expected skew in (0.5, 1] and test_fraction in (0, 1), got skew={skew}, "
                     f"test_fraction={test_fraction}")
  rng = np.random.default_rng(seed)
  question, _ = _question_ids(data, data)
  answer = np.asarray(data["answer"], np.int64)
  to_test = np.zeros(len(answer), bool)
  for q in np.unique(question):
    rows = np.flatnonzero(question == q)
    answers = rng.permutation(np.unique(answer[rows]))
    if len(answers) < 2:
      continue
    for i, a in enumerate(answers):
      group = rng.permutation(rows[answer[rows] == a])
      share = 1.0 - skew if i % 2 == 0 else skew   # even: train-heavy, odd: test-heavy
      to_test[group[:int(round(share * len(group)))]] = True
  keep = np.ones(len(answer), bool)
  excess = to_test.sum() - int(test_fraction * len(answer))
  if excess > 0:   # keep test's inverted mix: drop a uniform sample of its rows
    keep[rng.choice(np.flatnonzero(to_test), size=excess, replace=False)] = False
  train = {k: np.asarray(v)[~to_test] for k, v in data.items()}
  test = {k: np.asarray(v)[to_test & keep] for k, v in data.items()}
  if "prior_answer" in data:
    dtype = np.asarray(data["prior_answer"]).dtype
    train["prior_answer"] = question_only_baseline(train, train)["predictions"].astype(dtype)
    test["prior_answer"] = question_only_baseline(train, test)["predictions"].astype(dtype)
  return train, test


# ----------------------------------------------------------------------------- reading


def package_data_dir() -> str:
  """The installed `easy_vqa` package's data directory."""
  try:
    import easy_vqa  # pylint: disable=import-outside-toplevel
  except ImportError:
    raise ModuleNotFoundError(f"easy_vqa: the easy-vqa package is not installed: "
                              f"{_INSTALL_HINT}; or pass manual_dir= with its data/ "
                              f"layout (answers.txt, train/, test/)") from None
  return os.path.join(os.path.dirname(easy_vqa.__file__), "data")


def find_root(directory: str) -> str | None:
  """The easy-VQA data directory in or below `directory`, or None."""
  for sub in ("", "easy_vqa/data", "easy_vqa", "data"):
    root = os.path.join(directory, sub)
    if os.path.isfile(os.path.join(root, "train", "questions.json")):
      return root
  return None


def read_questions(root: str, split: str) -> list[tuple[str, str, int]]:
  """`(question, answer, image id)` rows of `<root>/<split>/questions.json`, in file order."""
  path = os.path.join(root, split, "questions.json")
  try:
    with open(path, encoding="utf-8") as f:
      rows = json.load(f)
  except FileNotFoundError:
    raise ManualDirError(f"{path}: missing; expected [[question, answer, image id], ...]") \
        from None
  except (json.JSONDecodeError, UnicodeDecodeError) as e:
    raise ManualDirError(f"{path}: not a JSON file ({e})") from None
  if not isinstance(rows, list) or not rows:
    raise ManualDirError(f"{path}: expected a non-empty list [[question, answer, image id], "
                         f"...], got {type(rows).__name__}")
  out = []
  for i, row in enumerate(rows):
    ok = (isinstance(row, list) and len(row) == 3 and isinstance(row[0], str)
          and isinstance(row[1], str) and isinstance(row[2], int) and row[2] >= 0)
    if not ok or row[1] not in ANSWERS:
      raise ManualDirError(f"{path}: row {i}: expected [question, answer (one of "
                           f"{list(ANSWERS)}), image id >= 0], got {row!r}")
    out.append((row[0], row[1], row[2]))
  return out


def check_answers(root: str):
  """`answers.txt` must list the 13 easy-VQA answers (`ANSWERS`)."""
  path = os.path.join(root, "answers.txt")
  answers = [line for _, line in manual.read_lines(path, "answers, one a line")]
  if sorted(answers) != sorted(ANSWERS):
    raise ManualDirError(f"{path}: expected the easy-VQA answers {sorted(ANSWERS)}, got "
                         f"{sorted(answers)}")


def words_of(question: str) -> list[str]:
  """Lower-cased words with "?" split off: "Is there a red shape?" -> [..., "shape", "?"]."""
  return question.lower().replace("?", " ? ").split()


def build_vocabulary(train_questions: Sequence[str]) -> Vocabulary:
  """Vocabulary of the train questions plus the answers (see the module docstring)."""
  words = {w for q in train_questions for w in words_of(q)} | set(ANSWERS)
  words -= set(SPECIAL_WORDS)
  return Vocabulary(SPECIAL_WORDS + tuple(sorted(words)), _answer_words(), unk=UNK)


def _answer_words() -> dict[str, tuple[str, ...]]:
  return {"yes/no": YES_NO, "open": tuple(a for a in ANSWERS if a not in YES_NO)}


def encode(vocab: Vocabulary, question: str, answer: str) -> tuple[np.ndarray, int]:
  """(`tokens` int32 [SEQ_LEN], `answer_position`) of one question and its answer."""
  words = words_of(question)
  if words[-1:] != ["?"] or words.count("?") != 1:
    words = [w for w in words if w != "?"] + ["?"]
  ids = [vocab.BOS] + vocab.encode(words) + [vocab.id(answer)]
  if len(ids) > SEQ_LEN:
    raise ManualDirError(f"question: {question!r} has {len(words) - 1} words; at most "
                         f"{SEQ_LEN - 3} fit in SEQ_LEN={SEQ_LEN}")
  tokens = np.zeros(SEQ_LEN, np.int32)
  tokens[:len(ids)] = ids
  return tokens, len(ids) - 2


def majority_answers(rows: Sequence[tuple[str, str, int]],
                     vocab: Vocabulary) -> tuple[dict[str, str], str]:
  """Per question string its most frequent answer in `rows` (ties: smallest token id), and
  the most frequent answer overall (for unseen questions): `question_only_baseline`'s rule."""
  counts = collections.defaultdict(collections.Counter)
  for question, answer, _ in rows:
    counts[question][answer] += 1

  def best(counter):
    return min(counter, key=lambda a: (-counter[a], vocab.id(a)))

  overall = collections.Counter(answer for _, answer, _ in rows)
  return {q: best(c) for q, c in counts.items()}, best(overall)


def validation_images(train_image_ids: Sequence[int]) -> np.ndarray:
  """Sorted image ids carved from train as the validation split (see the module docstring)."""
  ids = np.unique(np.asarray(train_image_ids, np.int64))
  count = int(round(VALIDATION_FRACTION * len(ids)))
  if not 0 < count < len(ids):
    raise ManualDirError(f"train: {len(ids)} images are too few to carve a validation split")
  return np.sort(np.random.default_rng(VALIDATION_SEED).permutation(ids)[:count])


@functools.lru_cache(maxsize=64)
def read_image(path: str) -> np.ndarray:
  """A 64x64 image as uint8 [64, 64, 3] (converted to RGB)."""
  try:
    with Image.open(path) as img:
      array = np.asarray(img.convert("RGB"))
  except FileNotFoundError:
    raise ManualDirError(f"{path}: missing image") from None
  except Exception as e:  # PIL raises OSError, SyntaxError, ValueError, ...
    raise ManualDirError(f"{path}: not a readable image ({type(e).__name__}: {e})") from None
  if array.shape != IMAGE_SHAPE:
    raise ManualDirError(f"{path}: expected a {IMAGE_SHAPE[0]}x{IMAGE_SHAPE[1]} image, got "
                         f"{array.shape[1]}x{array.shape[0]}")
  return array


# ----------------------------------------------------------------------------- builder


class EasyVqa(manual.ManualBuilder):
  """easy-VQA from the installed `easy-vqa` package or a manual dir; see the module docstring.

  Registered with TFDS as `mmbal_easy_vqa`; `mmbal.data.load("easy_vqa", ...)` resolves
  to it. `download_config=tfds.download.DownloadConfig(max_examples_per_split=n)` builds
  the first n questions of each split (in file order) for quick tests.
  """

  name = "mmbal_easy_vqa"
  VERSION = tfds.core.Version("1.1.0")
  RELEASE_NOTES = {"1.0.0": "easy-vqa 1.0 data; validation = 10% of the train images.",
                   "1.1.0": "The same examples; images stored as raw bytes (prepares ~10x "
                            "faster than as a list of integers)."}
  MANUAL_NAME = "easy_vqa"
  MANUAL_DOWNLOAD_INSTRUCTIONS = """\
  Optional: by default the data of the installed easy-vqa package is read
  (pip install mmbal[vqa]). To use other files with the same layout, put them in
  <manual_dir>/easy_vqa/data/ (answers.txt, train/questions.json, train/images/<id>.png,
  test/...) or pass manual_dir= (the data directory itself also works)."""

  def _info(self) -> tfds.core.DatasetInfo:
    features = {
        # Raw bytes: as a proto list of 12,288 integers, each example took 1.8 ms to write.
        "image": tfds.features.Tensor(shape=IMAGE_SHAPE, dtype=np.uint8, encoding="bytes"),
        "tokens": tfds.features.Tensor(shape=(SEQ_LEN,), dtype=np.int32),
        "answer": tfds.features.Tensor(shape=(), dtype=np.int32),
        "answer_position": tfds.features.Tensor(shape=(), dtype=np.int32),
        "question_type": tfds.features.Tensor(shape=(), dtype=np.int32),
        "prior_answer": tfds.features.Tensor(shape=(), dtype=np.int32),
        "image_id": tfds.features.Tensor(shape=(), dtype=np.int32),
        "question_index": tfds.features.Tensor(shape=(), dtype=np.int32),
        "question": tfds.features.Text(),
        "label": tfds.features.ClassLabel(names=list(ANSWERS)),
    }
    return tfds.core.DatasetInfo(
        builder=self,
        description=__doc__,
        features=tfds.features.FeaturesDict(features),
        homepage="https://github.com/vzhou842/easy-VQA",
        citation=_CITATION,
        license="MIT",
        metadata=tfds.core.MetadataDict(modalities=["image", "tokens"],
                                        task="classification"),
    )

  def _data_root(self, dl_manager) -> str:
    """The manual dir when it holds the data (an error when it was passed and does not),
    else the installed package's data."""
    try:
      manual_dir = os.fspath(dl_manager.manual_dir)
    except AssertionError:  # No manual dir, or it is missing or empty.
      manual_dir = None
    if manual_dir is not None:
      root = find_root(manual_dir)
      if root is not None:
        return root
      if self._manual_dir_arg is not None:
        raise ManualDirError(f"{manual_dir}: expected easy-VQA's data layout (answers.txt, "
                             f"train/questions.json, train/images/<id>.png, test/...) there "
                             f"or in easy_vqa/data, easy_vqa or data below it")
    return package_data_dir()

  def _split_generators(self, dl_manager):
    root = self._data_root(dl_manager)
    check_answers(root)
    rows = {s: read_questions(root, s) for s in SOURCE_SPLITS}
    val_ids = validation_images([r[2] for r in rows["train"]])
    in_val = set(val_ids.tolist())
    indexed = {s: list(enumerate(rows[s])) for s in SOURCE_SPLITS}
    groups = dict(train=("train", [r for r in indexed["train"] if r[1][2] not in in_val]),
                  validation=("train", [r for r in indexed["train"] if r[1][2] in in_val]),
                  test=("test", indexed["test"]))
    vocab = build_vocabulary([q for _, (q, _, _) in groups["train"][1]])
    majority, overall = majority_answers([r for _, r in groups["train"][1]], vocab)
    self.info.metadata.update(
        source=root, vocabulary=list(vocab.words[2:]), question_types=list(QUESTION_TYPES),
        answers=list(ANSWERS), seq_len=SEQ_LEN,
        validation=dict(images=len(val_ids), rule=(
            f"np.random.default_rng({VALIDATION_SEED}).permutation(sorted train image ids)"
            f"[:round({VALIDATION_FRACTION} * n)]")),
        unseen_questions={s: sum(q not in majority for _, (q, _, _) in g)
                          for s, (_, g) in groups.items()})
    return {split: self._generate_examples(root, source, group, vocab, majority, overall)
            for split, (source, group) in groups.items()}

  def _generate_examples(self, root, source, group, vocab, majority, overall):
    for index, (question, answer, image_id) in group:
      tokens, position = encode(vocab, question, answer)
      image = read_image(os.path.join(root, source, "images", f"{image_id}.png"))
      yield f"{source}/{index}", dict(
          image=image, tokens=tokens, answer=vocab.id(answer), answer_position=position,
          question_type=int(answer not in YES_NO), image_id=image_id, question_index=index,
          prior_answer=vocab.id(majority.get(question, overall)), question=question,
          label=ANSWERS.index(answer))


def vocabulary(builder: tfds.core.DatasetBuilder) -> Vocabulary:
  """The vocabulary of a prepared `mmbal_easy_vqa` builder (from its metadata)."""
  words = (builder.info.metadata or {}).get("vocabulary")
  if not words:
    raise ValueError(f"builder: expected a prepared mmbal_easy_vqa builder with a vocabulary "
                     f"in its metadata, got {builder.name}")
  return Vocabulary(words, _answer_words(), unk=UNK)


ARRAY_KEYS = ("image", "tokens", "answer", "answer_position", "question_type", "prior_answer",
              "image_id", "question_index")


def arrays(builder: tfds.core.DatasetBuilder, split: str) -> dict[str, np.ndarray]:
  """A whole split of a prepared builder as numpy arrays (`ARRAY_KEYS`), in file order."""
  records = builder.as_data_source(split)
  rows = records.__getitems__(list(range(len(records))))
  out = {k: np.stack([r[k] for r in rows]) for k in ARRAY_KEYS}
  order = np.argsort(out["question_index"], kind="stable")
  return {k: v[order] for k, v in out.items()}
