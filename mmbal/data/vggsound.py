"""TFDS builder for VGGSound (309 audio-visual sound classes), read from a manual directory.

VGGSound (Chen et al., "VGGSound: A Large-scale Audio-Visual Dataset", ICASSP 2020;
https://www.robots.ox.ac.uk/~vgg/data/vggsound/, annotations CC BY 4.0, clips from
YouTube): about 200k ten-second clips in 309 classes, listed in `vggsound.csv`. Every copy
misses some clips (YouTube availability). Nothing is downloaded: the builder reads the files
users already have from `<manual_dir>/vggsound/` (or `<manual_dir>` itself when it holds
`vggsound.csv`):

    vggsound.csv                     the official list: no header, rows
                                     `YouTubeID,start_seconds,label,split` (labels with
                                     commas are quoted: "vehicle horn, car horn, honking")
    audio/{clip}.wav                 the clip's audio (OGM-GE's mp4_to_wav.py: 16 kHz mono)
    frames/{clip}/*.jpg              extracted frames (OGM-GE's 1-fps 00000.jpg ...; any
    frames/{clip}.mp4/*.jpg          names); OGM-GE keeps the `.mp4` in the directory name

`clip` is `{YouTubeID}_{start}` or `{YouTubeID}_{start:06d}` (both are looked for, as both
conventions are in use). `audio/` and `frames/` may also hold `train/` and `test/`
subdirectories (BalanceBenchmark's separate roots per split). The CSV may have a BOM, CRLF
line ends, blank lines and a header line (a first row whose start is not a number); every
other row must have four fields, an integer start and the split `train` or `test`; a
repeated clip keeps its first row (counted in `info.metadata["repeated"]`).

Labels: `ClassLabel` over the CSV's labels in alphabetical order, set when the data set is
built; the config says how many there must be (`vggsound`: 309; a filtered CSV needs a
`VggSoundConfig(name=..., num_classes=N)`). OGM-GE and BalanceBenchmark number the classes
in order of first appearance among the train rows they found, so their numbering depends
on which clips a copy has: `info.metadata["first_appearance_order"]` holds that order for
this copy and `convert_labels(labels, order)` maps mmbal's labels to it.

Stored features: `id` (the clip), `label`, `waveform` int16 `[160000]` (16 kHz; the audio
resampled to 16 kHz if needed and tiled by doubling until at least 10 s long, as OGM-GE
does before cropping, then its first 10 s), `num_samples` (the audio's own length at
16 kHz, at most 160000), `frames` (every frame's JPEG bytes) and `num_frames`.
Model inputs (`input_decoder`): `audio`, OGM-GE's spectrogram of a 5-s crop: samples
`[s, s + 80000)` with `s` uniform in `[0, 80000]` in training and `s = 40000` (the centre)
in evaluation (OGM-GE crops at random in evaluation too; mmbal evaluates deterministically),
clipped to [-1, 1], `log(|STFT| + 1e-7)` with n_fft 256 and hop 128 (centred, periodic Hann)
-> `[626, 129]` (time x frequency; `[626, 129, 1]` with `audio_layout=image`); `visual`
`[K, S, S, 3]` (`[S, S, 3K]` with `visual_layout=channels`), K = `num_frames` (default 3,
OGM-GE's `use_video_frames`), S = `image_size` (224). Pipeline options follow a colon:
`config="vggsound:num_frames=3,image_size=112,visual_layout=channels,audio_layout=image"`.

Splits: `test` = the CSV's `test` rows. `validation`: carved from the `train` rows by a
fixed rule, as VGGSound has none (OGM-GE and BalanceBenchmark select on test):
`mmbal.data.stratified_split` of the train rows (labels, CSV order) with `round(n / 20)`
(at least 1) rows (a twentieth, ~9,200 of ~183k: a tenth would cost an extra ~18k
evaluations per epoch) and seed 0, made before missing clips are skipped. `train` = the
other train rows.

Missing clips (no WAV, no frame directory, no frames) and malformed ones are skipped and
counted per split and reason in `info.metadata["skipped"]` (first ones in
`["skipped_examples"]`). As every copy misses clips, the default `max_skipped_fraction`
is 0.5 (builder argument); more skipped is an error naming the reasons.
"""

from __future__ import annotations

import csv
import os
from typing import Any, Sequence

import numpy as np
import tensorflow_datasets as tfds

from mmbal.data import _split
from mmbal.data import audio_features
from mmbal.data import frames
from mmbal.data import manual
from mmbal.data.manual import ManualDirError

RATE = 16000
STORED_SAMPLES = 10 * RATE
CROP_SAMPLES = 5 * RATE
N_FFT = 256
HOP_LENGTH = 128
SPECTROGRAM_SHAPE = (1 + CROP_SAMPLES // HOP_LENGTH, N_FFT // 2 + 1)  # (626, 129), time x freq
VALIDATION_SEED = 0
VALIDATION_DIVISOR = 20
DEFAULT_MAX_SKIPPED = 0.5
PIPELINE_KEYS = ("num_frames", "image_size", "visual_layout", "audio_layout", "augment")

_CITATION = """\
@inproceedings{chen2020vggsound,
  author = {Chen, Honglie and Xie, Weidi and Vedaldi, Andrea and Zisserman, Andrew},
  title = {{VGGSound}: A Large-scale Audio-Visual Dataset},
  booktitle = {ICASSP}, year = {2020}
}"""


class VggSoundConfig(tfds.core.BuilderConfig):
  """VGGSound with `num_classes` labels in the CSV (309 for the official list)."""

  def __init__(self, *, name: str, num_classes: int, description: str = ""):
    super().__init__(name=name, description=description)
    self.num_classes = num_classes


PRESETS = (VggSoundConfig(name="vggsound", num_classes=309,
                          description="The official vggsound.csv (309 classes)."),)


# ----------------------------------------------------------------------------- CSV


def read_csv(path: str) -> tuple[list[dict[str, Any]], int]:
  """Rows `{ytid, start, label, split, line}` of vggsound.csv, and how many repeats were dropped.

  Raises:
    ManualDirError: naming the file and line, for a row that is not
      `YouTubeID,start_seconds,label,split` with an integer start and split train / test.
  """
  lines = manual.read_lines(path, "'YouTubeID,start_seconds,label,split' rows")
  rows, seen, repeated, first = [], set(), 0, True
  parsed = csv.reader([line for _, line in lines], skipinitialspace=True)
  for (lineno, line), fields in zip(lines, parsed):
    fields = [f.strip() for f in fields]
    if first and len(fields) >= 2 and not fields[1].isdigit():
      first = False
      continue  # A header line (only the first row may be one).
    first = False
    where = f"{path}:{lineno}"
    if len(fields) != 4 or not fields[0] or not fields[2]:
      raise ManualDirError(f"{where}: expected 'YouTubeID,start_seconds,label,split' (labels "
                           f"with commas quoted), got {line!r}")
    ytid, start, label, split = fields
    if not start.isdigit():
      raise ManualDirError(f"{where}: expected an integer start_seconds, got {start!r}")
    if split not in ("train", "test"):
      raise ManualDirError(f"{where}: expected the split 'train' or 'test', got {split!r}")
    if (ytid, int(start)) in seen:
      repeated += 1
      continue
    seen.add((ytid, int(start)))
    rows.append(dict(ytid=ytid, start=int(start), label=label, split=split, line=lineno))
  if not rows:
    raise ManualDirError(f"{path}: expected 'YouTubeID,start_seconds,label,split' rows, "
                         f"found none")
  return rows, repeated


def clip_names(ytid: str, start: int) -> tuple[str, str]:
  """The two clip-name conventions: `{ytid}_{start}` and `{ytid}_{start:06d}`."""
  return f"{ytid}_{start}", f"{ytid}_{start:06d}"


def first_appearance_order(labels: Sequence[str]) -> list[str]:
  """Distinct labels in order of first appearance (OGM-GE's and BalanceBenchmark's numbering)."""
  return list(dict.fromkeys(labels))


def convert_labels(labels, names: Sequence[str], order: Sequence[str]) -> np.ndarray:
  """Labels indexing `names` (the ClassLabel's) -> indices into `order` (e.g. first appearance)."""
  if sorted(order) != sorted(names) or len(order) != len(names):
    raise ValueError("order: expected the same class names as the data set's, in some order")
  index = {n: i for i, n in enumerate(order)}
  return np.array([index[n] for n in names])[np.asarray(labels)]


# ----------------------------------------------------------------------------- pipeline


def prepare_waveform(samples: np.ndarray, rate: int) -> tuple[np.ndarray, int]:
  """int16 `[160000]` (see the module doc) and the audio's own length at 16 kHz."""
  x = audio_features.resample(samples, rate, RATE)
  if x.size == 0:
    raise ValueError("no audio samples")
  n = min(len(x), STORED_SAMPLES)
  while len(x) < STORED_SAMPLES:
    x = np.tile(x, 2)
  x = np.clip(x[:STORED_SAMPLES], -1.0, 1.0)
  return np.round(x * 32767).astype(np.int16), n


def crop_spectrogram(waveform: np.ndarray, start: int) -> np.ndarray:
  """OGM-GE's log STFT of the 5-s crop at `start`, transposed: float32 `[626, 129]`."""
  x = np.asarray(waveform[start: start + CROP_SAMPLES], dtype=np.float64) / 32768.0
  return audio_features.log_stft(np.clip(x, -1.0, 1.0), N_FFT, HOP_LENGTH).T


class CropInput:
  """The stored waveform -> the spectrogram of a 5-s crop: random in training, central in eval."""

  random = True

  def __init__(self, add_channel: bool = False):
    self.add_channel = add_channel

  def __repr__(self):
    return f"CropInput(add_channel={self.add_channel})"

  @property
  def shape(self) -> tuple[int, ...]:
    return SPECTROGRAM_SHAPE + ((1,) if self.add_channel else ())

  def __call__(self, record, rng: np.random.Generator | None) -> np.ndarray:
    span = STORED_SAMPLES - CROP_SAMPLES
    start = span // 2 if rng is None else int(rng.integers(0, span + 1))
    x = crop_spectrogram(record["waveform"], start)
    return x[..., None] if self.add_channel else x


# ----------------------------------------------------------------------------- builder


class VggSound(manual.AudioVisualBuilder):
  """VGGSound from a manual directory; see the module docstring."""

  name = "vggsound"
  VERSION = tfds.core.Version("1.0.0")
  RELEASE_NOTES = {"1.0.0": "vggsound.csv, 16-kHz waveforms (5-s crops in the pipeline), frames."}
  BUILDER_CONFIGS = list(PRESETS)
  MANUAL_NAME = "vggsound"
  MANUAL_MARKER = "vggsound.csv"
  MANUAL_EXAMPLE = "vggsound/vggsound.csv"
  PIPELINE_KEYS = PIPELINE_KEYS
  DEFAULT_MAX_SKIPPED = DEFAULT_MAX_SKIPPED   # every copy of VGGSound misses YouTube clips
  MANUAL_DOWNLOAD_INSTRUCTIONS = """\
  Put the VGGSound files in <manual_dir>/vggsound/ (manual_dir: <data_dir>/downloads/manual,
  or the builder argument manual_dir=): vggsound.csv (the official list), audio/<clip>.wav
  and frames/<clip>/*.jpg (or frames/<clip>.mp4/*.jpg), clip = <YouTubeID>_<start> or
  <YouTubeID>_<start:06d>."""

  def input_decoder(self) -> frames.Decoder:
    """Stored records -> `{"audio": [626, 129] (or [626, 129, 1]), "visual": [K, S, S, 3]
    (or [S, S, 3K])}`."""
    return frames.Decoder({"audio": CropInput(self.audio_layout == "image"),
                           "visual": frames.FramesInput("frames", self.frame_options)})

  def _info(self) -> tfds.core.DatasetInfo:
    return tfds.core.DatasetInfo(
        builder=self,
        description=__doc__,
        features=tfds.features.FeaturesDict({
            "id": tfds.features.Text(),
            "label": tfds.features.ClassLabel(num_classes=self.builder_config.num_classes),
            "waveform": tfds.features.Tensor(shape=(STORED_SAMPLES,), dtype=np.int16),
            "num_samples": tfds.features.Tensor(shape=(), dtype=np.int32),
            "frames": tfds.features.Sequence(tfds.features.Tensor(shape=(), dtype=np.object_)),
            "num_frames": tfds.features.Tensor(shape=(), dtype=np.int32),
        }),
        homepage="https://www.robots.ox.ac.uk/~vgg/data/vggsound/",
        citation=_CITATION,
        license="Annotations CC BY 4.0; clips are YouTube content (research use)",
        metadata=tfds.core.MetadataDict(modalities=["audio", "visual"]),
    )

  # ---------------------------------------------------------------- manual directory

  def _check_layout(self, root: str):
    problems = []
    path = os.path.join(root, "vggsound.csv")
    if not os.path.isfile(path):
      problems.append(f"{path}: missing; expected the official vggsound.csv "
                      f"(rows 'YouTubeID,start_seconds,label,split')")
    for sub, what in (("audio", "one .wav per clip"), ("frames", "one directory of .jpg frames "
                                                      "per clip")):
      d = os.path.join(root, sub)
      if not os.path.isdir(d) or not os.listdir(d):
        problems.append(f"{d}: missing or empty; expected {what}")
    if problems:
      raise ManualDirError("VGGSound manual directory " + root + " is incomplete:\n  " +
                           "\n  ".join(problems))

  @staticmethod
  def _find(root: str, sub: str, split: str, names: Sequence[str], suffixes: Sequence[str],
            is_dir: bool) -> str | None:
    for base in (os.path.join(root, sub), os.path.join(root, sub, split)):
      for name in names:
        for suffix in suffixes:
          path = os.path.join(base, name + suffix)
          if (os.path.isdir if is_dir else os.path.isfile)(path):
            return path
    return None

  def _clip_files(self, root: str, row: dict[str, Any]) -> tuple[Any, str]:
    names = clip_names(row["ytid"], row["start"])
    audio = self._find(root, "audio", row["split"], names, (".wav",), False)
    if audio is None:
      return None, f"missing audio: no {names[0]}.wav or {names[1]}.wav in {root}/audio"
    problem = manual.check_wav(audio)
    if problem:
      return None, problem
    frame_dir = self._find(root, "frames", row["split"], names, ("", ".mp4"), True)
    if frame_dir is None:
      return None, (f"missing frames: no directory {names[0]}[.mp4] or {names[1]}[.mp4] in "
                    f"{root}/frames")
    files, problem = manual.check_frames(frame_dir)
    return ((audio, files) if files else None), problem

  def _split_generators(self, dl_manager):
    c = self.builder_config
    root = self._root(dl_manager)
    self._check_layout(root)
    path = os.path.join(root, "vggsound.csv")
    rows, repeated = read_csv(path)
    names = sorted({r["label"] for r in rows})
    if len(names) != c.num_classes:
      raise ManualDirError(f"{path}: {len(names)} distinct labels, config {c.name!r} expects "
                           f"{c.num_classes} (for a filtered CSV use "
                           f"VggSoundConfig(name=..., num_classes={len(names)}))")
    self.info.features["label"].names = names
    train = [r for r in rows if r["split"] == "train"]
    test = [r for r in rows if r["split"] == "test"]
    if not train or not test:
      raise ManualDirError(f"{path}: expected both train and test rows, got {len(train)} train "
                           f"and {len(test)} test")
    num_val = max(1, int(round(len(train) / VALIDATION_DIVISOR)))
    if num_val >= len(train):
      raise ManualDirError(f"{path}: {len(train)} train rows are too few to carve a validation "
                           f"split")
    index = {n: i for i, n in enumerate(names)}
    labels = np.array([index[r["label"]] for r in train])
    val_idx, train_idx = _split.stratified_split(labels, num_val, VALIDATION_SEED)
    splits = dict(train=[train[i] for i in train_idx], validation=[train[i] for i in val_idx],
                  test=test)
    self._start_metadata(root)
    self.info.metadata.update(
        repeated=repeated,
        validation=dict(source="carved",
                        rule=f"stratified_split(train rows' labels, max(1, round(n / "
                             f"{VALIDATION_DIVISOR})) = {num_val}, seed={VALIDATION_SEED})"))
    items = {}
    for split, split_rows in splits.items():
      kept, skips = [], manual.Skips()
      for r in split_rows:
        found, problem = self._clip_files(root, r)
        if found is None:
          skips.add(clip_names(r["ytid"], r["start"])[0], problem)
        else:
          kept.append((r, *found))
      self._record_skips(split, skips, len(split_rows))
      items[split] = kept
    available_train = sorted((r for split in ("train", "validation") for r, *_ in items[split]),
                             key=lambda r: r["line"])
    self.info.metadata["first_appearance_order"] = first_appearance_order(
        [r["label"] for r in available_train])
    return {split: self._generate_examples(split, kept, len(splits[split]), index)
            for split, kept in items.items()}

  def _generate_examples(self, split, items, total, index):
    skips = manual.Skips()
    for r, audio_path, frame_files in items:
      clip = clip_names(r["ytid"], r["start"])[0]
      try:
        waveform, num_samples = prepare_waveform(*manual.read_wav(audio_path))
      except ValueError as e:
        skips.add(clip, f"malformed audio: {audio_path}: {e}")
        continue
      encoded, problem = manual.read_frames(frame_files)
      if encoded is None:
        skips.add(clip, problem)
        continue
      yield clip, dict(id=clip, label=index[r["label"]], waveform=waveform,
                       num_samples=num_samples, frames=encoded, num_frames=len(encoded))
    self._record_skips(split, skips, total)
