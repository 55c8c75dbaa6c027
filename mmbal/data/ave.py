"""TFDS builder for AVE (Audio-Visual Event; 28 event classes), read from a manual directory.

AVE (Tian et al., "Audio-Visual Event Localization in Unconstrained Videos", ECCV 2018;
https://github.com/YapengTian/AVE-ECCV18): 4,143 ten-second YouTube clips from AudioSet,
each annotated with one event category and the event's segment `[StartTime, EndTime]`
in whole seconds. The balancing papers (OGM-GE, PMR, AGM, MMPareto, BalanceBenchmark)
classify the event from the audio and the frames. Nothing is downloaded: the builder reads
the files users already have from `<manual_dir>/ave/` (or `<manual_dir>` itself when it
holds `trainSet.txt`):

    trainSet.txt, valSet.txt, testSet.txt   the official split files (3,339 / 402 / 402 rows
                                            `Category&VideoID&Quality&StartTime&EndTime`)
    audio/{VideoID}.pkl | .npy              PMR's spectrogram, (257, 1004) (its
    (or Audio-1004-SE/)                     audio_preprocessing.py; pickled float64), or
    audio/{VideoID}.wav                     the clip's audio (the spectrogram is computed)
    frames/{VideoID}/*.jpg                  extracted frames (PMR's 00000.jpg ...; any names,
    (or Image-01-FPS-SE/, Image-01-FPS/)    ordered by the last number in the name)

`Annotations.txt` (all rows) and `AVE/*.mp4` are not read. Rows may carry a header line
(`Category&VideoID&...`, as PMR's scripts expect of the zip's copy), a BOM, CRLF line ends
and blank lines; every other row must have five `&`-separated fields, a known category and
integer times with `0 <= StartTime <= EndTime`.

Labels: `ClassLabel` over the 28 categories in alphabetical order (`CLASSES`; OGM-GE's
`sorted(classes)`). PMR numbers the classes in order of first appearance in
`testSet.txt`: `info.metadata["pmr_class_order"]` holds that order and
`convert_labels(labels, order)` maps mmbal's labels to it.

Repeated videos: 45 VideoIDs are annotated more than once (with different categories, e.g.
male and female speech); 18 of them occur in two splits (the official lists' leakage,
counted in `info.metadata["cross_split_ids"]`). Configs:
* `all` (default): every row is an example (`id` = VideoID, `row` = its line in the split
  file); a repeated video is several examples with different labels.
* `first`: within a split, only the first row of a repeated VideoID (PMR's `AVEDataset`).
* `last`: within a split, only the last row (OGM-GE's `AVDataset`, "delete repeated labels").

Stored features: `id`, `row`, `label`, `start_s`, `end_s`, `spectrogram` float32
`[257, 1004]` (frequency x time) and `frames` (every frame's JPEG bytes) with `num_frames`.
From a WAV the spectrogram is PMR's recipe (`mmbal.data.audio_features.pmr_spectrogram`):
resampled to 16 kHz, the event segment `[StartTime, EndTime)` cut out (an empty segment,
as the official `Church bell&VWi2ENBuTbw&good&0&0`, falls back to the whole clip and is
counted in `info.metadata["empty_segments"]`), tiled to 10 s, clipped to [-1, 1],
`scipy.signal.spectrogram(nperseg=512, noverlap=353)`, `log(S + 1e-7)`, standardised per
clip. The frames are stored as found (PMR extracts only the segment's seconds).
Model inputs (`input_decoder`): `audio` `[1004, 257]` (time x frequency; `[1004, 257, 1]`
with `audio_layout=image`) and `visual` `[K, S, S, 3]` (`[S, S, 3K]` with
`visual_layout=channels`); K = `num_frames` (default 3, as OGM-GE's `AVDataset`),
S = `image_size` (224). Pipeline options follow a colon: `config="all:num_frames=3,
image_size=112,visual_layout=channels,audio_layout=image,augment=true"`.

Splits: the official ones: `train` = trainSet.txt, `validation` = valSet.txt, `test` =
testSet.txt. Clips with missing or malformed files are skipped as every upstream loader
does, counted per split and reason in `info.metadata["skipped"]` (first ones in
`["skipped_examples"]`); more than `max_skipped_fraction` (builder argument, default 0.05)
of a split skipped is an error naming the reasons.
"""

from __future__ import annotations

import os
import re
from typing import Any, Sequence

import numpy as np
import tensorflow_datasets as tfds

from mmbal.data import audio_features
from mmbal.data import frames
from mmbal.data import manual
from mmbal.data.manual import ManualDirError

CLASSES = tuple(sorted((
    "Accordion", "Acoustic guitar", "Baby cry, infant cry", "Banjo", "Bark", "Bus", "Cat",
    "Chainsaw", "Church bell", "Clock", "Female speech, woman speaking",
    "Fixed-wing aircraft, airplane", "Flute", "Frying (food)", "Goat", "Helicopter", "Horse",
    "Male speech, man speaking", "Mandolin", "Motorcycle", "Race car, auto racing",
    "Rodents, rats, mice", "Shofar", "Toilet flush", "Train horn", "Truck", "Ukulele",
    "Violin, fiddle")))
NUM_CLASSES = 28
SPLIT_FILES = {"train": "trainSet.txt", "validation": "valSet.txt", "test": "testSet.txt"}
AUDIO_DIRS = ("audio", "Audio-1004-SE")
FRAME_DIRS = ("frames", "Image-01-FPS-SE", "Image-01-FPS")
AUDIO_SUFFIXES = (".pkl", ".npy", ".wav")
PIPELINE_KEYS = ("num_frames", "image_size", "visual_layout", "audio_layout", "augment")
SPECTROGRAM_SHAPE = audio_features.PMR_SHAPE
_INT = re.compile(r"^\d+$")

_CITATION = """\
@inproceedings{tian2018ave,
  author = {Tian, Yapeng and Shi, Jing and Li, Bochen and Duan, Zhiyao and Xu, Chenliang},
  title = {Audio-Visual Event Localization in Unconstrained Videos},
  booktitle = {ECCV}, year = {2018}
}"""


class AveConfig(tfds.core.BuilderConfig):
  """Which rows of a repeated VideoID are kept within a split: `all`, `first` or `last`."""

  def __init__(self, *, name: str, repeated: str, description: str):
    if repeated not in ("all", "first", "last"):
      raise ValueError(f"repeated: expected 'all', 'first' or 'last', got {repeated!r}")
    super().__init__(name=name, description=description)
    self.repeated = repeated


PRESETS = (
    AveConfig(name="all", repeated="all", description="Every annotated row is an example."),
    AveConfig(name="first", repeated="first",
              description="First row of a repeated VideoID within a split (PMR)."),
    AveConfig(name="last", repeated="last",
              description="Last row of a repeated VideoID within a split (OGM-GE)."),
)


# ----------------------------------------------------------------------------- split files


def read_split(path: str) -> list[dict[str, Any]]:
  """Rows of an AVE split file: dicts `id, row, category, start_s, end_s`, in file order.

  Raises:
    ManualDirError: naming the file and line, for a row that is not
      `Category&VideoID&Quality&StartTime&EndTime` with a known category and times
      `0 <= StartTime <= EndTime`.
  """
  is_header = lambda f: f[0].lower() == "category"
  rows = []
  what = "'Category&VideoID&Quality&StartTime&EndTime' rows"
  for lineno, fields in manual.read_rows(path, "&", header=is_header, what=what):
    where = f"{path}:{lineno}"
    if len(fields) != 5 or not fields[1]:
      raise ManualDirError(f"{where}: expected 'Category&VideoID&Quality&StartTime&EndTime', "
                           f"got {'&'.join(fields)!r}")
    category, vid, _, start, end = fields
    if category not in CLASSES:
      raise ManualDirError(f"{where}: expected one of the 28 AVE categories, got {category!r}")
    if not (_INT.match(start) and _INT.match(end)) or int(start) > int(end):
      raise ManualDirError(f"{where}: expected integer times 0 <= StartTime <= EndTime, got "
                           f"{start!r}, {end!r}")
    rows.append(dict(id=vid, row=lineno, category=category, start_s=int(start), end_s=int(end)))
  if not rows:
    raise ManualDirError(f"{path}: expected {what}, found none")
  return rows


def keep_repeated(rows: list[dict[str, Any]], which: str) -> list[dict[str, Any]]:
  """`all` rows, or only the `first` / `last` row of each VideoID (file order kept)."""
  if which == "all":
    return list(rows)
  chosen = {}
  for r in rows:
    if which == "last" or r["id"] not in chosen:
      chosen[r["id"]] = r["row"]
  return [r for r in rows if chosen[r["id"]] == r["row"]]


def first_appearance_order(path: str) -> list[str]:
  """The categories in order of first appearance in a split file (PMR's class order)."""
  order = []
  for r in read_split(path):
    if r["category"] not in order:
      order.append(r["category"])
  return order


def convert_labels(labels, order: Sequence[str]) -> np.ndarray:
  """mmbal's labels (alphabetical `CLASSES`) -> indices into `order` (e.g. PMR's)."""
  if sorted(order) != list(CLASSES):
    raise ValueError(f"order: expected the 28 AVE categories in some order, got {list(order)}")
  return np.array([list(order).index(c) for c in CLASSES])[np.asarray(labels)]


# ----------------------------------------------------------------------------- builder


class Ave(manual.AudioVisualBuilder):
  """AVE from a manual directory; see the module docstring."""

  name = "ave"
  VERSION = tfds.core.Version("1.0.0")
  RELEASE_NOTES = {"1.0.0": "Official splits, PMR spectrogram from .pkl/.npy or WAV, frames."}
  BUILDER_CONFIGS = list(PRESETS)
  MANUAL_NAME = "ave"
  MANUAL_MARKER = "trainSet.txt"
  MANUAL_EXAMPLE = "ave/trainSet.txt"
  PIPELINE_KEYS = PIPELINE_KEYS
  MANUAL_DOWNLOAD_INSTRUCTIONS = """\
  Put the AVE files in <manual_dir>/ave/ (manual_dir: <data_dir>/downloads/manual, or the
  builder argument manual_dir=): trainSet.txt, valSet.txt and testSet.txt (AVE_Dataset.zip
  or PMR's data/AVE/); audio/<VideoID>.pkl|.npy (PMR's (257, 1004) spectrograms) or
  audio/<VideoID>.wav; frames/<VideoID>/*.jpg (or Image-01-FPS-SE/<VideoID>/)."""

  def input_decoder(self) -> frames.Decoder:
    """Stored records -> `{"audio": [1004, 257] (or [1004, 257, 1]), "visual": [K, S, S, 3]
    (or [S, S, 3K])}`."""
    audio = frames.ArrayInput("spectrogram", SPECTROGRAM_SHAPE, (1, 0),
                              self.audio_layout == "image")
    return frames.Decoder({"audio": audio,
                           "visual": frames.FramesInput("frames", self.frame_options)})

  def _info(self) -> tfds.core.DatasetInfo:
    return tfds.core.DatasetInfo(
        builder=self,
        description=__doc__,
        features=tfds.features.FeaturesDict({
            "id": tfds.features.Text(),
            "row": tfds.features.Tensor(shape=(), dtype=np.int32),
            "label": tfds.features.ClassLabel(names=list(CLASSES)),
            "start_s": tfds.features.Tensor(shape=(), dtype=np.int32),
            "end_s": tfds.features.Tensor(shape=(), dtype=np.int32),
            "spectrogram": tfds.features.Tensor(shape=SPECTROGRAM_SHAPE, dtype=np.float32),
            "frames": tfds.features.Sequence(tfds.features.Tensor(shape=(), dtype=np.object_)),
            "num_frames": tfds.features.Tensor(shape=(), dtype=np.int32),
        }),
        homepage="https://github.com/YapengTian/AVE-ECCV18",
        citation=_CITATION,
        license="YouTube-derived clips; research use (no explicit licence)",
        metadata=tfds.core.MetadataDict(modalities=["audio", "visual"],
                                        repeated=self.builder_config.repeated),
    )

  # ---------------------------------------------------------------- manual directory

  @staticmethod
  def _first_dir(root: str, names: Sequence[str]) -> str:
    for name in names:
      if os.path.isdir(os.path.join(root, name)):
        return os.path.join(root, name)
    return os.path.join(root, names[0])

  def _check_layout(self, root: str):
    problems = []
    for split, name in SPLIT_FILES.items():
      path = os.path.join(root, name)
      if not os.path.isfile(path):
        problems.append(f"{path}: missing; expected the official {split} list "
                        f"(rows 'Category&VideoID&Quality&StartTime&EndTime')")
    for names, what in ((AUDIO_DIRS, "one .pkl/.npy spectrogram or .wav per video"),
                        (FRAME_DIRS, "one directory of .jpg frames per video")):
      path = self._first_dir(root, names)
      if not os.path.isdir(path) or not os.listdir(path):
        problems.append(f"{path}: missing or empty; expected {what} "
                        f"(directory {' or '.join(names)})")
    if problems:
      raise ManualDirError("AVE manual directory " + root + " is incomplete:\n  " +
                           "\n  ".join(problems))

  def _audio_file(self, audio_dir: str, vid: str) -> tuple[str | None, str]:
    for suffix in AUDIO_SUFFIXES:
      path = os.path.join(audio_dir, vid + suffix)
      if os.path.isfile(path):
        problem = manual.check_wav(path) if suffix == ".wav" else ""
        return (None if problem else path), problem
    return None, f"missing audio: no {vid}.pkl, .npy or .wav in {audio_dir}"

  def _split_generators(self, dl_manager):
    c = self.builder_config
    root = self._root(dl_manager)
    self._check_layout(root)
    rows = {split: read_split(os.path.join(root, name)) for split, name in SPLIT_FILES.items()}
    splits_of = {}
    for split, split_rows in rows.items():
      for r in split_rows:
        splits_of.setdefault(r["id"], set()).add(split)
    cross = sorted(v for v, s in splits_of.items() if len(s) > 1)
    self._start_metadata(root)
    self.info.metadata.update(
        pmr_class_order=first_appearance_order(os.path.join(root, SPLIT_FILES["test"])),
        cross_split_ids=dict(count=len(cross), examples=cross[:20]),
        repeated_ids={s: len(r) - len({x["id"] for x in r}) for s, r in rows.items()},
        empty_segments={})
    audio_dir, frame_dir = self._first_dir(root, AUDIO_DIRS), self._first_dir(root, FRAME_DIRS)
    items = {}
    for split, split_rows in rows.items():
      kept_rows = keep_repeated(split_rows, c.repeated)
      kept, skips = [], manual.Skips()
      for r in kept_rows:
        key = f"{r['id']}@{r['row']}"
        audio, problem = self._audio_file(audio_dir, r["id"])
        files = None
        if audio is not None:
          files, problem = manual.check_frames(os.path.join(frame_dir, r["id"]))
        if files is None:
          skips.add(key, problem)
        else:
          kept.append((r, audio, files))
      self._record_skips(split, skips, len(kept_rows))
      items[split] = (kept, len(kept_rows))
    return {split: self._generate_examples(split, kept, total)
            for split, (kept, total) in items.items()}

  def _spectrogram(self, split: str, r: dict[str, Any], path: str) -> np.ndarray:
    if path.endswith(".wav"):
      samples, rate = manual.read_wav(path)
      x = audio_features.resample(samples, rate, audio_features.PMR_RATE)
      segment = x[r["start_s"] * audio_features.PMR_RATE: r["end_s"] * audio_features.PMR_RATE]
      if segment.size == 0:
        empty = self.info.metadata["empty_segments"]
        empty[split] = empty.get(split, 0) + 1
        segment = x
      return audio_features.pmr_spectrogram(segment)
    x = (audio_features.read_pickled_array(path) if path.endswith(".pkl")
         else manual.read_array(path))
    x = np.asarray(x)
    if x.shape != SPECTROGRAM_SHAPE or not np.issubdtype(x.dtype, np.floating):
      raise ValueError(f"expected a float array of shape {SPECTROGRAM_SHAPE}, got "
                       f"{x.dtype} {x.shape}")
    return x.astype(np.float32)

  def _generate_examples(self, split, items, total):
    skips = manual.Skips()
    for r, audio_path, frame_files in items:
      key = f"{r['id']}@{r['row']}"
      try:
        spectrogram = self._spectrogram(split, r, audio_path)
      except ValueError as e:
        skips.add(key, f"malformed audio: {audio_path}: {e}")
        continue
      encoded, problem = manual.read_frames(frame_files)
      if encoded is None:
        skips.add(key, problem)
        continue
      yield key, dict(id=r["id"], row=r["row"], label=CLASSES.index(r["category"]),
                      start_s=r["start_s"], end_s=r["end_s"], spectrogram=spectrogram,
                      frames=encoded, num_frames=len(encoded))
    self._record_skips(split, skips, total)
