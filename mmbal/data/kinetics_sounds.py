"""TFDS builder for Kinetics-Sounds (31, 32 or 34 classes), read from a manual directory.

Kinetics-Sounds (Arandjelović & Zisserman, "Look, Listen and Learn", ICCV 2017) is the
subset of Kinetics (Kay et al., 2017; YouTube clips, annotations CC BY 4.0) whose classes
can be heard. Three class counts are in use: 34 (the original definition), 31 (OGM-GE,
PMR, MMPareto, D&R, BalanceBenchmark, BMMAL: the 34 minus three classes Kinetics-700
lacks) and 32 (AV-SUPERB). Nothing is downloaded: the builder reads the files users
already have from `<manual_dir>/kinetics_sounds/` (or `<manual_dir>` itself when it
holds `lists/`):

    lists/my_train.txt, lists/my_test.txt  the split lists (OGM-GE's data/KineticSound/ for
                                           ks31: 14,799 / 2,597 rows `{id},10,{label}`)
    lists/my_val.txt                       optional: a validation list (ids of my_train.txt
                                           are moved out of train; other ids are added)
    lists/class_names.txt                  optional: one class name per line, label order
    lists/<config>/...                     the same files for one config (`lists/ks34/`
                                           etc.), used instead of `lists/` when present
    audio/{id}.npy | .pt                   the (1024, 128) fbank (OGM-GE's process_audio.py;
                                           `.pt`: torch.save, MMPareto-style), or
    audio/{id}.wav                         the clip's audio (the same fbank is computed)
    visual/{id}/*.jpg | frames/{id}/*.jpg  extracted frames (frame_00001.jpg ...,
                                           frame_0.jpg ..., any names: ordered by the last
                                           number in the name)

List rows: comma-separated `{id},10,{label}` (OGM-GE; the middle field, the duration,
is ignored) or `{id},{label}`, or whitespace-separated `{id} ... {label}`
(BalanceBenchmark splits on spaces and takes the first and last field). Labels are
integers in `[0, num_classes)` or, with `class_names.txt`, class names. A UTF-8 BOM,
CRLF line ends, blank lines and a header line (first row whose label is not a label)
are accepted. Upstream publishes no integer -> name mapping for the 31-class lists, so
label names exist only when `class_names.txt` gives them (then they are the ClassLabel's
names); otherwise the labels are the integers of the lists.

Configs: `ks31` (default), `ks32`, `ks34`: the same features, 31 / 32 / 34 classes; a
label outside the config's range is an error naming the file and line.

Stored features: `id`, `label`, `fbank` float32 `[1024, 128]` (time x mel, normalised
as stored upstream, padded rows ~0.438), `num_fbank_frames` (frames before padding:
exact for WAVs, inferred for stored fbanks), `frames` (every frame's JPEG bytes, in
order), `num_frames`. Model inputs (`input_decoder`): `audio` `[1024, 128]` (or
`[1024, 128, 1]` with `audio_layout=image`) and `visual` `[K, S, S, 3]` (or `[S, S, 3K]`
with `visual_layout=channels`); K = `num_frames` (default 3, as OGM-GE's `AVDataset` and
BalanceBenchmark), S = `image_size` (224). Pipeline options follow the config name after a
colon: `config="ks31:num_frames=3,image_size=112,visual_layout=channels,audio_layout=image,
augment=true"`; they do not change the stored data.

Splits: `test` = my_test.txt. `validation` = my_val.txt when present; otherwise carved
from my_train.txt by a fixed rule, as no validation list exists upstream (OGM-GE and
BalanceBenchmark select on test): `mmbal.data.stratified_split` of my_train.txt's rows
(labels, file order) with `round(n / 10)` rows (1,480 of OGM-GE's 14,799) and seed 0, made
before any clip is skipped, so a clip's split does not depend on which files a user has.
`train` = the rest of my_train.txt. A validation or train id in my_test.txt is an error.
An id repeated within a list keeps its first row (counted in `info.metadata["repeated"]`).

Checks: the lists must exist and parse (errors name the file and line), the `audio/` and
frame directories must exist. Clips with missing or malformed files (no fbank / WAV, no
frame directory, no frames, a truncated JPEG, an fbank of the wrong shape) are skipped,
as every upstream loader does (availability differs per lab: 14,799 vs 14,739 train
clips); `info.metadata["skipped"]` counts them per split and reason and
`["skipped_examples"]` lists the first ones. More than `max_skipped_fraction` (builder
argument, default 0.05) of a split skipped is an error naming the reasons.

Differences from the upstream loaders: frames are sampled one per segment of however many
were extracted (BalanceBenchmark hard-codes `frame_0000{1..9}.jpg` and needs more than 3
files); WAVs are turned into fbanks by mmbal's numpy Kaldi fbank
(`mmbal.data.audio_features`), not torchaudio, at the WAV's own sample rate.
"""

from __future__ import annotations

import os
import re
from typing import Any

import numpy as np
import tensorflow_datasets as tfds

from mmbal.data import _split
from mmbal.data import audio_features
from mmbal.data import frames
from mmbal.data import manual
from mmbal.data.manual import ManualDirError

VALIDATION_SEED = 0
VALIDATION_DIVISOR = 10
PIPELINE_KEYS = ("num_frames", "image_size", "visual_layout", "audio_layout", "augment")
LIST_NAMES = {"train": "my_train.txt", "test": "my_test.txt", "validation": "my_val.txt"}
FRAME_DIRS = ("visual", "frames")
AUDIO_SUFFIXES = (".npy", ".pt", ".wav")
_ID = re.compile(r"^[^/\\\s,]+$")

# The original 34 classes (Arandjelović & Zisserman 2017, appendix A1), for reference;
# the split lists use integers whose names upstream does not publish.
KS34_CLASSES = (
    "blowing nose", "bowling", "chopping wood", "ripping paper", "shuffling cards", "singing",
    "tapping pen", "typing", "blowing out", "dribbling ball", "laughing",
    "mowing the lawn by pushing lawnmower", "shoveling snow", "stomping", "tap dancing",
    "tapping guitar", "tickling", "fingerpicking", "patting", "playing accordion",
    "playing bagpipes", "playing bass guitar", "playing clarinet", "playing drums",
    "playing guitar", "playing harmonica", "playing keyboard", "playing organ", "playing piano",
    "playing saxophone", "playing trombone", "playing trumpet", "playing violin",
    "playing xylophone")

_CITATION = """\
@inproceedings{arandjelovic2017look,
  author = {Arandjelovi\\'c, Relja and Zisserman, Andrew},
  title = {Look, Listen and Learn},
  booktitle = {ICCV}, year = {2017}
}"""


class KineticsSoundsConfig(tfds.core.BuilderConfig):
  """A class-count variant of Kinetics-Sounds."""

  def __init__(self, *, name: str, num_classes: int, description: str):
    super().__init__(name=name, description=description)
    self.num_classes = num_classes


PRESETS = (
    KineticsSoundsConfig(name="ks31", num_classes=31,
                         description="31 classes: OGM-GE's lists (OGM-GE, PMR, MMPareto, "
                                     "BalanceBenchmark)."),
    KineticsSoundsConfig(name="ks32", num_classes=32,
                         description="32 classes (AV-SUPERB); user-supplied lists."),
    KineticsSoundsConfig(name="ks34", num_classes=34,
                         description="34 classes (the original definition); user-supplied "
                                     "lists."),
)


# ----------------------------------------------------------------------------- lists


def read_class_names(path: str, num_classes: int) -> list[str]:
  """`class_names.txt`: one name per line, exactly `num_classes` distinct names."""
  names = [line for _, line in manual.read_lines(path, "class names, one per line")]
  if len(names) != num_classes or len(set(names)) != len(names):
    raise ManualDirError(f"{path}: expected {num_classes} distinct class names, one per line, "
                         f"got {len(names)} lines ({len(set(names))} distinct)")
  return names


def read_list(path: str, num_classes: int, names: list[str] | None = None,
              ) -> tuple[list[tuple[str, int]], int]:
  """Rows `(id, label)` of a split list in file order, and how many repeated ids were dropped.

  Raises:
    ManualDirError: naming the file and line, for a row without an id and a label, or a
      label outside `[0, num_classes)` (or not in `names`).
  """
  index = {n: i for i, n in enumerate(names or [])}

  def label_of(field):
    if re.fullmatch(r"\d+", field):
      return int(field)
    return index.get(field)

  def is_header(fields):
    return len(fields) >= 2 and label_of(fields[-1]) is None

  rows, seen, repeated, first = [], {}, 0, True
  for lineno, line in manual.read_lines(path, "'{id},10,{label}' rows"):
    fields = [f.strip() for f in (line.split(",") if "," in line else line.split())]
    if first and is_header(fields):  # Only the first row may be a header.
      first = False
      continue
    first = False
    where = f"{path}:{lineno}"
    if len(fields) < 2 or not _ID.match(fields[0]):
      raise ManualDirError(f"{where}: expected '{{id}},10,{{label}}' or '{{id}} {{label}}', "
                           f"got {line!r}")
    label = label_of(fields[-1])
    if label is None or not 0 <= label < num_classes:
      allowed = f"an integer in [0, {num_classes})" + (" or a name of class_names.txt"
                                                        if names else "")
      raise ManualDirError(f"{where}: expected a label {allowed}, got {fields[-1]!r}" +
                           ("" if names or label is None else
                            "; a list with more classes needs config ks32 or ks34"))
    if fields[0] in seen:
      repeated += 1
      continue
    seen[fields[0]] = lineno
    rows.append((fields[0], label))
  if not rows:
    raise ManualDirError(f"{path}: expected '{{id}},10,{{label}}' rows, found none")
  return rows, repeated


def assign_splits(list_dir: str, num_classes: int, names: list[str] | None = None,
                  ) -> tuple[dict[str, list[tuple[str, int]]], dict[str, Any], dict[str, int]]:
  """The rows of train / validation / test, how validation was made, repeated-id counts."""
  paths = {k: os.path.join(list_dir, v) for k, v in LIST_NAMES.items()}
  rows, repeated = {}, {}
  for split in ("train", "test"):
    rows[split], repeated[split] = read_list(paths[split], num_classes, names)
  test_ids = {i for i, _ in rows["test"]}
  both = [i for i, _ in rows["train"] if i in test_ids]
  if both:
    raise ManualDirError(f"{paths['train']} and {paths['test']}: {len(both)} clips in both "
                         f"(e.g. {both[:3]}); expected disjoint splits")
  if os.path.isfile(paths["validation"]):
    val, repeated["validation"] = read_list(paths["validation"], num_classes, names)
    leaked = [i for i, _ in val if i in test_ids]
    if leaked:
      raise ManualDirError(f"{paths['validation']}: {len(leaked)} clips of my_test.txt (e.g. "
                           f"{leaked[:3]}); validation must never come from the test set")
    val_ids = {i for i, _ in val}
    rows["train"] = [r for r in rows["train"] if r[0] not in val_ids]
    info = dict(source="my_val.txt", rule="the user's my_val.txt")
  else:
    train = rows["train"]
    num_val = int(round(len(train) / VALIDATION_DIVISOR))
    if not 0 < num_val < len(train):
      raise ManualDirError(f"{paths['train']}: {len(train)} rows are too few to carve a "
                           f"validation split; add {LIST_NAMES['validation']}")
    val_idx, _ = _split.stratified_split(np.array([l for _, l in train]), num_val,
                                         VALIDATION_SEED)
    chosen = set(val_idx.tolist())
    val = [r for i, r in enumerate(train) if i in chosen]
    rows["train"] = [r for i, r in enumerate(train) if i not in chosen]
    info = dict(source="carved", rule=f"stratified_split(my_train.txt labels, round(n / "
                f"{VALIDATION_DIVISOR}) = {num_val}, seed={VALIDATION_SEED})")
  if not rows["train"]:
    raise ManualDirError(f"{list_dir}: the validation rows leave no training rows")
  rows["validation"] = val
  return rows, info, repeated


# ----------------------------------------------------------------------------- builder


class KineticsSounds(manual.AudioVisualBuilder):
  """Kinetics-Sounds from a manual directory; see the module docstring."""

  name = "kinetics_sounds"
  VERSION = tfds.core.Version("1.0.0")
  RELEASE_NOTES = {"1.0.0": "31/32/34-class configs, fbank or WAV audio, validation split."}
  BUILDER_CONFIGS = list(PRESETS)
  MANUAL_NAME = "kinetics_sounds"
  MANUAL_MARKER = "lists"
  MANUAL_EXAMPLE = "kinetics_sounds/lists/my_train.txt"
  PIPELINE_KEYS = PIPELINE_KEYS
  MANUAL_DOWNLOAD_INSTRUCTIONS = """\
  Put the Kinetics-Sounds files in <manual_dir>/kinetics_sounds/ (manual_dir:
  <data_dir>/downloads/manual, or the builder argument manual_dir=): lists/my_train.txt and
  lists/my_test.txt (OGM-GE's data/KineticSound/ for ks31; lists/<config>/ for one config),
  optionally lists/my_val.txt and lists/class_names.txt; audio/<id>.npy|.pt (fbanks) or
  audio/<id>.wav; visual/<id>/*.jpg (or frames/<id>/*.jpg)."""

  def input_decoder(self) -> frames.Decoder:
    """Stored records -> `{"audio": [1024, 128] (or [1024, 128, 1]), "visual": [K, S, S, 3]
    (or [S, S, 3K])}`."""
    audio = frames.ArrayInput("fbank", manual.FBANK_SHAPE, None, self.audio_layout == "image")
    return frames.Decoder({"audio": audio,
                           "visual": frames.FramesInput("frames", self.frame_options)})

  def _info(self) -> tfds.core.DatasetInfo:
    c = self.builder_config
    return tfds.core.DatasetInfo(
        builder=self,
        description=__doc__,
        features=tfds.features.FeaturesDict({
            "id": tfds.features.Text(),
            "label": tfds.features.ClassLabel(num_classes=c.num_classes),
            "fbank": tfds.features.Tensor(shape=manual.FBANK_SHAPE, dtype=np.float32),
            "num_fbank_frames": tfds.features.Tensor(shape=(), dtype=np.int32),
            "frames": tfds.features.Sequence(tfds.features.Tensor(shape=(), dtype=np.object_)),
            "num_frames": tfds.features.Tensor(shape=(), dtype=np.int32),
        }),
        homepage="https://arxiv.org/abs/1705.08168",
        citation=_CITATION,
        license="Kinetics annotations CC BY 4.0; videos are YouTube content (research use)",
        metadata=tfds.core.MetadataDict(modalities=["audio", "visual"],
                                        num_classes=c.num_classes),
    )

  # ---------------------------------------------------------------- manual directory

  def _list_dir(self, root: str) -> str:
    own = os.path.join(root, "lists", self.builder_config.name)
    return own if os.path.isdir(own) else os.path.join(root, "lists")

  def _frame_dir(self, root: str) -> str:
    for name in FRAME_DIRS:
      if os.path.isdir(os.path.join(root, name)):
        return os.path.join(root, name)
    return os.path.join(root, FRAME_DIRS[0])

  def _check_layout(self, root: str):
    problems = []
    list_dir = self._list_dir(root)
    for split in ("train", "test"):
      path = os.path.join(list_dir, LIST_NAMES[split])
      if not os.path.isfile(path):
        problems.append(f"{path}: missing; expected the {split} list (rows '{{id}},10,{{label}}')")
    audio = os.path.join(root, "audio")
    if not os.path.isdir(audio) or not os.listdir(audio):
      problems.append(f"{audio}: missing or empty; expected one .npy/.pt fbank or .wav per clip")
    frame_dir = self._frame_dir(root)
    if not os.path.isdir(frame_dir) or not os.listdir(frame_dir):
      problems.append(f"{frame_dir}: missing or empty; expected one directory of .jpg frames "
                      f"per clip (visual/<id>/ or frames/<id>/)")
    if problems:
      raise ManualDirError("Kinetics-Sounds manual directory " + root + " is incomplete:\n  " +
                           "\n  ".join(problems))

  def _audio_file(self, root: str, clip: str) -> tuple[str | None, str]:
    directory = os.path.join(root, "audio")
    for suffix in AUDIO_SUFFIXES:
      path = os.path.join(directory, clip + suffix)
      if os.path.isfile(path):
        if suffix == ".wav":
          problem = manual.check_wav(path)
          return (None if problem else path), problem
        return manual.find_fbank(directory, clip)
    return None, f"missing audio: no {clip}.npy, .pt or .wav in {directory}"

  def _split_generators(self, dl_manager):
    c = self.builder_config
    root = self._root(dl_manager)
    self._check_layout(root)
    list_dir = self._list_dir(root)
    names_path = os.path.join(list_dir, "class_names.txt")
    names = read_class_names(names_path, c.num_classes) if os.path.isfile(names_path) else None
    rows, validation, repeated = assign_splits(list_dir, c.num_classes, names)
    if names is not None:
      self.info.features["label"].names = names
    self._start_metadata(root)
    self.info.metadata.update(validation=validation, repeated=repeated, list_dir=list_dir,
                              class_names=names)
    frame_dir = self._frame_dir(root)
    items = {}
    for split, split_rows in rows.items():
      kept, skips = [], manual.Skips()
      for clip, label in split_rows:
        audio, problem = self._audio_file(root, clip)
        files = None
        if audio is not None:
          files, problem = manual.check_frames(os.path.join(frame_dir, clip))
        if files is None:
          skips.add(clip, problem)
        else:
          kept.append((clip, label, audio, files))
      self._record_skips(split, skips, len(split_rows))
      items[split] = kept
    return {split: self._generate_examples(split, kept, len(rows[split]))
            for split, kept in items.items()}

  def _generate_examples(self, split, items, total):
    skips = manual.Skips()
    for clip, label, audio_path, frame_files in items:
      try:
        if audio_path.endswith(".wav"):
          fbank, real = audio_features.ogm_ge_fbank(*manual.read_wav(audio_path))
        else:
          fbank = manual.read_fbank(audio_path)
          real = manual.num_fbank_frames(fbank)
      except ValueError as e:
        skips.add(clip, f"malformed audio: {audio_path}: {e}")
        continue
      encoded, problem = manual.read_frames(frame_files)
      if encoded is None:
        skips.add(clip, problem)
        continue
      yield clip, dict(id=clip, label=label, fbank=fbank, num_fbank_frames=real,
                       frames=encoded, num_frames=len(encoded))
    self._record_skips(split, skips, total)
