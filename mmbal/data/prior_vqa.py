"""Prior-VQA: synthetic visual question answering with a controllable language prior.

A numpy generator (no download, no TensorFlow) for studying modality bias in
decoder-style vision-language models (mmbal issue 9; the design follows the pilot
"prior-VQA" testbed of `shared/reference/mllm_bias.md` §5.1-5.2).

Scenes. A grey canvas (value `CANVAS_GREY`) of `image_size` x `image_size` pixels
holds objects: `object_size` x `object_size` boxes painted through a fixed random
binary mask per shape (drawn from the seed; every mask distinct and non-empty).
Objects never overlap (their boxes are disjoint).

Questions (one per image; its type and shape uniform over `question_types` and the
shapes), tokenised as `BOS <words> ? <answer> PAD...`:

* `color`:    "what color is the <shape> ?"  -> one of `num_colors` colour words. The
  scene holds one object of that shape, in the answer colour.
* `count`:    "how many <shape> ?"           -> "1" ... "<max_count>". The scene holds
  that many objects of the shape, each in a uniformly drawn palette colour.
* `position`: "where is the <shape> ?"       -> the quadrant "top-left", "top-right",
  "bottom-left" or "bottom-right". The scene holds one object of the shape (in a
  random palette colour), its whole box inside that quadrant: rows
  `[0, image_size // 2)` are top, `[image_size - image_size // 2, image_size)` bottom
  (likewise for columns), so an odd canvas's middle row/column is in neither.
* `exists` (only when asked for in `question_types`; POPE-style object probing, Li et al.,
  EMNLP 2023): "is there a <shape> ?" -> "yes" / "no". A yes scene holds one object of the
  shape, a no scene one object of another shape (POPE's "random" negatives), each in a random
  palette colour. With `prior = 0.5` the answers are balanced, as in POPE; a prior answer of
  "yes" at a higher `prior` builds the yes-bias POPE measures.

Language prior. Every (question type, shape) has a prior answer, fixed by the seed
(per type, a random permutation of the answers is tiled over the shapes, so shapes
get distinct prior answers while there are enough answers). In `train` and
`test_id` the answer IS the prior answer with probability `prior` and otherwise
uniform over the type's OTHER answers: P(answer = prior answer) = prior exactly.
`test_ood` inverts the prior (VQA-CP style): the answer is uniform over the other
answers, never the prior answer. So a blind model answering the majority answer of
each question scores max(prior, (1 - prior) / (K - 1)) on `test_id` (K answers of the
type; = prior when prior >= 1 / K) and 0 on `test_ood`. prior = 1 / K is the
prior-free control. (The pilot drew "prior answer with probability rho, else uniform
over ALL answers", i.e. P(prior answer) = rho + (1 - rho) / K: rho = 0.8 there is
prior = 0.8333 here for K = 6.)

Visual knobs (the text side is unchanged by them: for a fixed seed and split the
questions and answers do not depend on image_size, object_size, noise, upsample,
color_similarity or distractors):

* `image_size` / `object_size`: a small object on a large canvas dilutes the
  evidence over many patches;
* `upsample`: every pixel repeated `upsample` x `upsample` times after rendering
  (`np.repeat`), i.e. the same information over more visual tokens;
* `distractors`: that many extra objects in `DISTRACTOR_GREY`, each of a shape other
  than the queried one (so they change no answer);
* `noise`: i.i.d. Gaussian pixel noise of that std, added before upsampling (so
  upsampling stays pure duplication), then clipped to [0, 1];
* `color_similarity`: the palette blended towards the canvas grey,
  `colour = (1 - s) * colour + s * CANVAS_GREY` (s = 1: objects invisible).

Determinism. `np.random.default_rng((seed, stream, ...))` streams: masks `(seed, 0)`,
prior answers `(seed, 1)`, and per split `(seed, 2 + split, k)` with split 0/1/2 for
train/test_id/test_ood and k = 0 questions/answers, 1 layout, 2 colours, 3 noise.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Mapping, Sequence

import numpy as np

QUESTION_TYPES = ("color", "count", "position")   # the default set
ALL_QUESTION_TYPES = QUESTION_TYPES + ("exists",)   # "exists" on request (POPE-style probing)
SPLITS = ("train", "test_id", "test_ood")
PALETTE = {  # name -> RGB in [0, 1]; saturated, far from both greys below.
    "red": (0.9, 0.1, 0.1), "green": (0.1, 0.75, 0.1), "blue": (0.15, 0.25, 0.95),
    "yellow": (0.95, 0.9, 0.1), "magenta": (0.9, 0.1, 0.9), "cyan": (0.1, 0.9, 0.9),
    "orange": (1.0, 0.55, 0.0), "purple": (0.5, 0.1, 0.7), "white": (1.0, 1.0, 1.0),
    "black": (0.0, 0.0, 0.0)}
POSITIONS = ("top-left", "top-right", "bottom-left", "bottom-right")
CANVAS_GREY = 0.5
DISTRACTOR_GREY = 0.3
MASK_DENSITY = 0.6  # P(pixel on) in a shape's random mask.
MAX_COVERAGE = 0.4  # Largest share of the canvas the object boxes of one scene may cover.
PAD, BOS = "<pad>", "<bos>"
_TEMPLATES = {"color": ("what", "color", "is", "the", None, "?"),
              "count": ("how", "many", None, "?"),
              "position": ("where", "is", "the", None, "?"),
              "exists": ("is", "there", "a", None, "?")}  # None: the shape word.
YES_NO = ("yes", "no")
_PLACEMENT_ROUNDS = 100
_PLACEMENT_RESTARTS = 20


class Vocabulary:
  """Token ids of a VQA set: `PAD` = 0, `BOS` = 1, then the words.

  Attributes:
    words: `words[i]` is the word of token id i.
    question_types: the question types, in order (`question_type` values index it).
    size: number of tokens.
    answer_ids: sorted int32 array of every answer token id.
  """

  PAD = 0
  BOS = 1

  def __init__(self, words: Sequence[str], answers: Mapping[str, Sequence[str]],
               unk: str | None = None):
    """`words` (without PAD/BOS); `answers`: question type -> its answer words (each in
    `words`); `unk`: the word unknown words map to in `encode` (None: unknown is an error)."""
    self.words = (PAD, BOS) + tuple(words)
    if len(set(self.words)) != len(self.words):
      raise ValueError(f"words: expected distinct words, got {list(words)}")
    self._ids = {w: i for i, w in enumerate(self.words)}
    self.question_types = tuple(answers)
    self._answer_ids = {t: np.array(sorted(self.id(w) for w in a), np.int32)
                        for t, a in answers.items()}
    self.answer_ids = np.unique(np.concatenate(list(self._answer_ids.values()))).astype(np.int32)
    self.unk = unk
    if unk is not None:
      self.id(unk)

  @property
  def size(self) -> int:
    return len(self.words)

  def id(self, word: str) -> int:
    """The token id of `word`; KeyError naming it when it is not in the vocabulary."""
    try:
      return self._ids[word]
    except KeyError:
      raise KeyError(f"word: {word!r} is not in the vocabulary ({self.size} words)") from None

  def encode(self, words: Sequence[str]) -> list[int]:
    """Token ids of `words`; unknown words map to `unk` (KeyError when there is none)."""
    if self.unk is None:
      return [self.id(w) for w in words]
    unk = self._ids[self.unk]
    return [self._ids.get(w, unk) for w in words]

  def answer_ids_for(self, question_type: str) -> np.ndarray:
    """Sorted int32 token ids of the answers of `question_type`."""
    if question_type not in self._answer_ids:
      raise ValueError(f"question_type: expected one of {list(self.question_types)}, "
                       f"got {question_type!r}")
    return self._answer_ids[question_type]

  def __repr__(self) -> str:
    return f"Vocabulary({self.size} words, question types {list(self.question_types)})"


@dataclasses.dataclass(frozen=True)
class PriorVQAConfig:
  """Settings of the prior-VQA generator; see the module docstring for what each does."""

  image_size: int = 16
  object_size: int = 4
  num_shapes: int = 6
  num_colors: int = 6
  question_types: tuple[str, ...] = QUESTION_TYPES
  prior: float = 0.8
  noise: float = 0.0
  color_similarity: float = 0.0
  distractors: int = 0
  upsample: int = 1
  max_count: int = 3
  num_train: int = 6000
  num_test: int = 1000
  seed: int = 0

  def __post_init__(self):
    types = self.question_types
    if isinstance(types, str) or not isinstance(types, Sequence):
      raise ValueError(f"question_types: expected a tuple of names from {QUESTION_TYPES}, "
                       f"got {types!r}")
    object.__setattr__(self, "question_types", tuple(types))
    unknown = [t for t in types if t not in ALL_QUESTION_TYPES]
    if not types or unknown or len(set(types)) != len(types):
      raise ValueError(f"question_types: expected distinct names from {ALL_QUESTION_TYPES}, got "
                       f"{list(types)}" + (f" (unknown: {unknown})" if unknown else ""))
    for name, low in (("image_size", 1), ("object_size", 1), ("num_shapes", 1),
                      ("num_colors", 2), ("distractors", 0), ("upsample", 1),
                      ("max_count", 1), ("num_train", 1), ("num_test", 1), ("seed", 0)):
      value = getattr(self, name)
      if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < low:
        raise ValueError(f"{name}: expected an int >= {low}, got {value!r}")
    for name, low, high in (("prior", 0.0, 1.0), ("color_similarity", 0.0, 1.0),
                            ("noise", 0.0, math.inf)):
      value = getattr(self, name)
      if not isinstance(value, (int, float, np.number)) or not low <= value <= high \
          or not math.isfinite(value):
        raise ValueError(f"{name}: expected a finite number in [{low}, {high}], got {value!r}")
    if self.object_size > self.image_size:
      raise ValueError(f"object_size: expected at most image_size={self.image_size}, got "
                       f"{self.object_size}")
    if "position" in types and self.object_size > self.image_size // 2:
      raise ValueError(f"object_size: position questions need an object that fits in a "
                       f"quadrant, i.e. at most image_size // 2 = {self.image_size // 2}, got "
                       f"{self.object_size}")
    if self.num_colors > len(PALETTE):
      raise ValueError(f"num_colors: expected at most {len(PALETTE)} (the palette), got "
                       f"{self.num_colors}")
    if "count" in types and self.max_count < 2:
      raise ValueError(f"max_count: count questions need at least 2 answers, got "
                       f"{self.max_count}")
    if "exists" in types and self.num_shapes < 2:
      raise ValueError(f"num_shapes: exists questions show another shape for 'no', so expected "
                       f"at least 2 shapes, got {self.num_shapes}")
    if self.distractors and self.num_shapes < 2:
      raise ValueError(f"num_shapes: distractors take a shape other than the queried one, so "
                       f"expected at least 2 shapes, got {self.num_shapes}")
    if 2 ** (self.object_size ** 2) - 1 < self.num_shapes:
      raise ValueError(f"num_shapes: only {2 ** (self.object_size ** 2) - 1} distinct non-empty "
                       f"masks of {self.object_size}x{self.object_size} pixels exist, got "
                       f"{self.num_shapes} shapes")
    covered = max_objects(self) * self.object_size ** 2
    if covered > MAX_COVERAGE * self.image_size ** 2:
      raise ValueError(
          f"distractors: a scene of up to {max_objects(self)} objects of {self.object_size}x"
          f"{self.object_size} covers {covered} pixels, more than {MAX_COVERAGE:.0%} of the "
          f"{self.image_size}x{self.image_size} canvas; use fewer distractors or a smaller "
          f"max_count / object_size, or a larger image_size")

  def num_answers(self, question_type: str) -> int:
    return {"color": self.num_colors, "count": self.max_count,
            "position": len(POSITIONS), "exists": len(YES_NO)}[question_type]


def max_objects(config: PriorVQAConfig) -> int:
  """Most objects in one scene: the queried ones (max_count for counts) plus distractors."""
  return (config.max_count if "count" in config.question_types else 1) + config.distractors


def shape_words(config: PriorVQAConfig) -> tuple[str, ...]:
  return tuple(f"shape{i}" for i in range(config.num_shapes))


def answer_words(config: PriorVQAConfig, question_type: str) -> tuple[str, ...]:
  """The answers of a question type, in answer-index order."""
  if question_type == "color":
    return tuple(PALETTE)[:config.num_colors]
  if question_type == "count":
    return tuple(str(n) for n in range(1, config.max_count + 1))
  if question_type == "position":
    return POSITIONS
  if question_type == "exists":
    return YES_NO
  raise ValueError(f"question_type: expected one of {ALL_QUESTION_TYPES}, got {question_type!r}")


def vocabulary(config: PriorVQAConfig) -> Vocabulary:
  """`PAD, BOS, ?`, the template words of the config's question types, the shape words,
  then each type's answers."""
  words = ["?"]
  for t in config.question_types:
    words += [w for w in _TEMPLATES[t] if w is not None and w not in words]
  words += shape_words(config)
  answers = {t: answer_words(config, t) for t in config.question_types}
  for t in config.question_types:
    words += [w for w in answers[t] if w not in words]
  return Vocabulary(words, answers)


def seq_len(config: PriorVQAConfig) -> int:
  """Token length T: BOS + the longest question (with "?") + the answer."""
  return 2 + max(len(_TEMPLATES[t]) for t in config.question_types)


def shape_masks(config: PriorVQAConfig) -> np.ndarray:
  """bool `[num_shapes, object_size, object_size]`: distinct, non-empty random masks."""
  rng = np.random.default_rng((config.seed, 0))
  o, masks = config.object_size, []
  seen = set()
  while len(masks) < config.num_shapes:
    mask = rng.random((o, o)) < MASK_DENSITY
    if mask.any() and mask.tobytes() not in seen:
      seen.add(mask.tobytes())
      masks.append(mask)
  return np.stack(masks)


def palette(config: PriorVQAConfig) -> np.ndarray:
  """float32 `[num_colors, 3]`: the colours as painted (after `color_similarity`)."""
  rgb = np.array(list(PALETTE.values())[:config.num_colors], np.float64)
  s = config.color_similarity
  return ((1.0 - s) * rgb + s * CANVAS_GREY).astype(np.float32)


def prior_answer_index(config: PriorVQAConfig) -> dict[str, np.ndarray]:
  """Question type -> int `[num_shapes]`: each shape's prior answer (answer index)."""
  rng = np.random.default_rng((config.seed, 1))
  table = {}
  for t in ALL_QUESTION_TYPES:  # All types, so a type's priors do not depend on the others.
    k = config.num_answers(t)
    reps = -(-config.num_shapes // k)
    table[t] = np.concatenate([rng.permutation(k) for _ in range(reps)])[:config.num_shapes]
  return {t: table[t] for t in config.question_types}


def generate(config: PriorVQAConfig, split: str) -> dict[str, np.ndarray]:
  """One split (`"train"`, `"test_id"` or `"test_ood"`) of prior-VQA.

  Returns:
    image [N, H, W, 3] float32 in [0, 1], H = W = image_size * upsample;
    tokens [N, T] int32: BOS, question words, "?", answer, PAD...;
    answer [N] int32: the answer token id;
    answer_position [N] int32: the index of "?" (its logits predict the answer);
    question_type [N] int32: index into `config.question_types`;
    prior_answer [N] int32: the token id of the question's prior answer.
  """
  if split not in SPLITS:
    raise ValueError(f"split: expected one of {SPLITS}, got {split!r}")
  n = config.num_train if split == "train" else config.num_test
  stream = (config.seed, 2 + SPLITS.index(split))
  q = _sample_questions(config, split, n, np.random.default_rng(stream + (0,)))
  vocab = vocabulary(config)
  image = _render(config, q, stream)
  return dict(image=image, **_tokens(config, vocab, q))


def _sample_questions(config, split, n, rng) -> dict[str, np.ndarray]:
  """Question type, shape, answer index and prior answer index per example."""
  types = config.question_types
  qtype = rng.integers(len(types), size=n)
  shape = rng.integers(config.num_shapes, size=n)
  k = np.array([config.num_answers(t) for t in types])[qtype]
  table = prior_answer_index(config)
  prior = np.stack([table[t] for t in types])[qtype, shape]
  keep = rng.random(n) < config.prior
  other = (prior + 1 + rng.integers(k - 1)) % k  # Uniform over the K - 1 other answers.
  if split == "test_ood":
    keep[:] = False
  answer = np.where(keep, prior, other)
  return dict(qtype=qtype, shape=shape, answer=answer, prior=prior)


def _tokens(config, vocab, q) -> dict[str, np.ndarray]:
  """Token arrays of the sampled questions (vectorised per question type)."""
  n, length = len(q["qtype"]), seq_len(config)
  tokens = np.zeros((n, length), np.int32)
  answer = np.zeros(n, np.int32)
  prior = np.zeros(n, np.int32)
  position = np.zeros(n, np.int32)
  shape_ids = np.array([vocab.id(w) for w in shape_words(config)], np.int32)
  for i, t in enumerate(config.question_types):
    rows = np.flatnonzero(q["qtype"] == i)
    template = _TEMPLATES[t]
    ids = np.array([vocab.BOS] + [0 if w is None else vocab.id(w) for w in template], np.int32)
    tokens[rows, :len(ids)] = ids
    tokens[rows, 1 + template.index(None)] = shape_ids[q["shape"][rows]]
    answer_ids = np.array([vocab.id(w) for w in answer_words(config, t)], np.int32)
    answer[rows] = answer_ids[q["answer"][rows]]
    prior[rows] = answer_ids[q["prior"][rows]]
    position[rows] = len(template)  # "?" is the template's last word; BOS shifts by one.
  tokens[np.arange(n), position + 1] = answer
  return dict(tokens=tokens, answer=answer, answer_position=position,
              question_type=q["qtype"].astype(np.int32), prior_answer=prior)


def _render(config, q, stream) -> np.ndarray:
  """Images of the sampled questions: objects placed, painted, noised, upsampled."""
  n, size, o = len(q["qtype"]), config.image_size, config.object_size
  types = config.question_types
  qname = np.array(types)[q["qtype"]]
  num_query = np.where(qname == "count", q["answer"] + 1, 1)
  slots = max_objects(config)
  num_q_slots = slots - config.distractors
  slot = np.arange(slots)
  active = (slot < num_q_slots) & (slot[None] < num_query[:, None]) | (slot >= num_q_slots)
  rng = np.random.default_rng(stream + (2,))
  others = (q["shape"][:, None] + 1 + rng.integers(max(config.num_shapes - 1, 1),
                                                   size=(n, slots))) % config.num_shapes
  shape = np.where(slot < num_q_slots, q["shape"][:, None], others)
  absent = (qname == "exists") & (q["answer"] == YES_NO.index("no"))
  shape[:, 0] = np.where(absent, others[:, 0], shape[:, 0])   # "no": another shape is shown
  colours = palette(config)
  colour_index = rng.integers(config.num_colors, size=(n, slots))
  colour_index[:, 0] = np.where(qname == "color", q["answer"], colour_index[:, 0])
  rgb = np.where((slot < num_q_slots)[None, :, None], colours[colour_index],
                 np.float32(DISTRACTOR_GREY))
  quadrant = np.where(qname == "position", q["answer"], -1)
  pos = _place(n, slots, size, o, active, quadrant, np.random.default_rng(stream + (1,)))

  canvas = np.full((n, size, size, 3), CANVAS_GREY, np.float32)
  masks = shape_masks(config)
  rows, offs = np.arange(n)[:, None, None], np.arange(o)
  for m in range(slots):  # Boxes are disjoint, so painting order does not matter.
    ys = pos[:, m, 0, None, None] + offs[None, :, None]
    xs = pos[:, m, 1, None, None] + offs[None, None, :]
    paint = masks[shape[:, m]] & active[:, m, None, None]
    canvas[rows, ys, xs] = np.where(paint[..., None], rgb[:, m, None, None, :],
                                    canvas[rows, ys, xs])
  if config.noise > 0:
    noise_rng = np.random.default_rng(stream + (3,))
    canvas += np.float32(config.noise) * noise_rng.standard_normal(canvas.shape, np.float32)
    np.clip(canvas, 0.0, 1.0, out=canvas)
  if config.upsample > 1:
    canvas = np.repeat(np.repeat(canvas, config.upsample, axis=1), config.upsample, axis=2)
  return canvas


def _place(n, slots, size, o, active, quadrant, rng) -> np.ndarray:
  """int `[n, slots, 2]` top-left corners of disjoint boxes (inactive slots: anywhere).

  Slot 0 of a position question lies inside its quadrant. The other slots are placed one
  after the other by rejection (a box overlapping an earlier one is redrawn); a scene still
  overlapping after `_PLACEMENT_ROUNDS` redraws of a slot is redrawn from slot 1 on.
  """
  half = size // 2
  low = np.zeros((n, 2), np.int64)
  high = np.full((n, 2), size - o, np.int64)
  constrained = quadrant >= 0
  bottom, right = quadrant // 2 == 1, quadrant % 2 == 1
  for axis, far in ((0, bottom), (1, right)):
    low[constrained, axis] = np.where(far[constrained], size - half, 0)
    high[constrained, axis] = np.where(far[constrained], size - o, half - o)
  pos = np.zeros((n, slots, 2), np.int64)
  pos[:, 0] = low + rng.integers(high - low + 1)
  todo = np.arange(n)
  for _ in range(_PLACEMENT_RESTARTS):
    failed = np.zeros(len(todo), bool)
    for m in range(1, slots):
      pos[todo, m] = rng.integers(size - o + 1, size=(len(todo), 2))
      for _ in range(_PLACEMENT_ROUNDS):
        clash = _overlaps(pos[todo, :m + 1], active[todo, :m + 1], o) & ~failed
        if not clash.any():
          break
        pos[todo[clash], m] = rng.integers(size - o + 1, size=(int(clash.sum()), 2))
      failed |= _overlaps(pos[todo, :m + 1], active[todo, :m + 1], o)
    todo = todo[failed]
    if not len(todo):
      return pos
  raise RuntimeError(f"could not place {slots} objects of {o}x{o} without overlap on a "
                     f"{size}x{size} canvas; use fewer objects or a larger image_size")


def _overlaps(pos, active, o) -> np.ndarray:
  """bool `[n]`: the last slot's box overlaps an earlier active box (both active)."""
  last = pos[:, -1:, :]
  clash = (np.abs(pos[:, :-1] - last) < o).all(-1) & active[:, :-1]
  return clash.any(-1) & active[:, -1]


LETTERS = ("A", "B", "C", "D", "E", "F", "G", "H")


def choice_vocabulary(config: PriorVQAConfig, num_options: int) -> Vocabulary:
  """`vocabulary(config)` plus the option letters, the answers of `multiple_choice` (the
  letters come last, so every other word keeps its token id)."""
  base = vocabulary(config)
  letters = LETTERS[:num_options]
  return Vocabulary(list(base.words[2:]) + list(letters), {"choice": letters})


def multiple_choice(config: PriorVQAConfig, data: Mapping[str, np.ndarray], *, num_options: int = 4,
                    seed: int = 0) -> dict[str, np.ndarray]:
  """MMStar-style multiple choice from a split of colour questions (`generate`).

  Each question lists ``num_options`` colours, ``<question> ? A <c1> B <c2> ... <letter>``,
  and the answer is the letter of the true colour. The options are the true colour, the
  question's prior colour (when it differs: the prior is always on offer) and random other
  colours, in a seeded random order. Token ids are those of `choice_vocabulary`;
  ``answer`` / ``prior_answer`` are the letters' ids, ``answer_position`` the last option
  word, ``image`` and ``question_type`` are kept. Score a model with and without its image
  (MMStar's S_wv, S_ov) through `mmbal.diagnostics.diagnose_decoder(no_image=...)` or
  `diagnose_from_logits`.
  """
  if set(config.question_types) != {"color"}:
    raise ValueError("multiple_choice: expected a config of colour questions only")
  if not 2 <= num_options <= min(config.num_colors, len(LETTERS)):
    raise ValueError(f"num_options: expected 2..{min(config.num_colors, len(LETTERS))}, got "
                     f"{num_options}")
  base, vocab = vocabulary(config), choice_vocabulary(config, num_options)
  colours = base.answer_ids_for("color")
  answer = np.searchsorted(colours, data["answer"])
  prior = np.searchsorted(colours, data["prior_answer"])
  rng = np.random.default_rng((config.seed, 9, seed))
  n, k = len(answer), len(colours)
  options = np.empty((n, num_options), np.int64)
  for i in range(n):
    rest = [c for c in rng.permutation(k) if c not in (answer[i], prior[i])]
    chosen = [answer[i]] + ([prior[i]] if prior[i] != answer[i] else [])
    options[i] = rng.permutation(chosen + rest[:num_options - len(chosen)])
  length = int(data["answer_position"].max()) + 2 + 2 * num_options
  tokens = np.zeros((n, length), np.int32)
  letters = np.array([vocab.id(l) for l in LETTERS[:num_options]], np.int32)
  position = np.zeros(n, np.int32)
  for i in range(n):
    question = data["tokens"][i, :data["answer_position"][i] + 1]
    listed = np.stack([letters, colours[options[i]]], 1).reshape(-1)
    row = np.concatenate([question, listed])
    tokens[i, :len(row)] = row
    position[i] = len(row) - 1
  answer_letter = letters[(options == answer[:, None]).argmax(1)]
  prior_letter = letters[(options == prior[:, None]).argmax(1)]
  has_prior = (options == prior[:, None]).any(1)
  tokens[np.arange(n), position + 1] = answer_letter
  return dict(image=data["image"], tokens=tokens, answer=answer_letter,
              answer_position=position, question_type=data["question_type"],
              prior_answer=np.where(has_prior, prior_letter, answer_letter).astype(np.int32))
