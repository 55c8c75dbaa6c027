"""TFDS builder for CREMA-D (audio-visual emotions, 6 classes), read from a manual directory.

Registered with TFDS as `mmbal_crema_d` (TFDS's catalog has an audio-only `crema_d`);
`mmbal.data.load("crema_d", ...)` resolves to it.

CREMA-D (Cao et al., IEEE TAC 2014; https://github.com/CheyneyComputerScience/CREMA-D,
Open Database License 1.0, contents under the Database Contents License 1.0): 7,442
clips of 91 actors speaking 12 sentences with 6 emotions. Nothing is downloaded: the
builder reads the files users already have, in the layouts the balanced-multimodal
code bases use, from `<manual_dir>/crema_d/` (or `<manual_dir>` itself when it holds
`splits/`). `manual_dir` is TFDS's (`<data_dir>/downloads/manual` by default) or the
builder argument `manual_dir=` (`mmbal.data.load("crema_d", ..., manual_dir=...)`):

    splits/train.csv, splits/test.csv   OGM-GE's split (6,698 / 744 rows `stem,LABEL`)
    splits/val.csv                      optional: D&R's validation rows (744, from train.csv)
    splits/my_train.csv                 optional: D&R's train.csv minus val.csv (5,954)
    AudioWAV/{stem}.wav                 configs `ogm_ge*`: CREMA-D's own WAV files
    Image-01-FPS/{stem}/*.jpg           configs `ogm_ge*`: OGM-GE's 1-fps frames (00030.jpg, ...)
    audio/{stem}.pt | audio/{stem}.npy  configs `fbank*`: (1024, 128) Kaldi fbanks (MMPareto,
                                        D&R, BalanceBenchmark)
    visual/{stem}/*.jpg                 configs `fbank*`: frame_00001.jpg, frame_00002.jpg, ...

The CSV files may have a UTF-8 BOM, CRLF or LF line ends and a header line (D&R's
`name,label`); every row must be `stem,CODE` with the emotion code of the stem's name
(`1001_DFA_ANG_XX,ANG`). Frames are ordered by the last integer in their file names.

Configs (the audio variants and the two label orders in use):
* `ogm_ge` (default): OGM-GE's CREMA-D recipe; labels in OGM-GE's order
  `NEU HAP SAD FEA DIS ANG` (OGM-GE, PMR, AGM, BalanceBenchmark). `spectrogram`: float32
  `[257, 188]` (frequency x time), computed once from the WAV: resampled to 22,050 Hz,
  tiled to 3 s (`np.tile(x, 3)[:66150]`), clipped to [-1, 1], STFT (n_fft 512, hop 353,
  periodic Hann window, centred with zero padding), `log(|S| + 1e-7)`.
* `ogm_ge_sorted`: the same data, labels in alphabetical order `ANG DIS FEA HAP NEU SAD`
  (MMPareto, D&R: `sorted(stat.csv)`).
* `fbank`: the `.pt` fbank variant, labels in alphabetical order (MMPareto, D&R).
  `fbank`: float32 `[1024, 128]` (time x mel) exactly as stored (already normalised:
  `(fbank + 4.503877) / (2 * 5.141276)` after zero-padding to 1024 frames, so padded rows
  hold ~0.438); `num_fbank_frames`: the frames before that padding (trailing rows that
  all equal the padding value, or all 0, are counted as padding).
* `fbank_ogm_order`: the same, in OGM-GE's label order (BalanceBenchmark).
Each config stores its data separately (the label order is part of the stored labels);
`convert_labels` maps labels between the orders without rebuilding.

Reading `.pt` files: a `torch.save` file of a single tensor in torch's zip format (the
default since torch 1.6) is read without torch, by a restricted unpickler that only
accepts tensor storages. A legacy (non-zip) `.pt` file needs the package `torch`: with
torch installed it is read with `torch.load(weights_only=True)`, otherwise the build
stops with an error naming `torch` and the file. `.npy` files never need torch (when
both exist for a clip, the `.npy` is used).

Stored features (all configs): `id` (the stem), `label`, `actor_id`, `frames` (every
extracted frame of the clip as its original JPEG bytes, in order) and `num_frames`;
plus `spectrogram` or `fbank` / `num_fbank_frames`. Frame sampling, decoding and
augmentation happen in the input pipeline (`mmbal.data.frames`); the model inputs are
`audio` (`[T, F]`: `[188, 257]` or `[1024, 128]`) and `visual` (`[K, S, S, 3]`).
Pipeline options follow the config name after a colon, e.g.
`config="ogm_ge:num_frames=3,image_size=112,visual_layout=channels,audio_layout=image"`:
`num_frames` (K; default 1 for `ogm_ge*` as OGM-GE, 2 for `fbank*` as MMPareto and
BalanceBenchmark), `image_size` (224), `visual_layout` (`frames`: `[K, S, S, 3]`;
`channels`: `[S, S, 3K]`), `audio_layout` (`sequence`: `[T, F]`; `image`: `[T, F, 1]`),
`augment` (true). They do not change the stored data.

Splits: `test` = test.csv. `validation` = val.csv when present (D&R's, the only
published validation split; it partitions OGM-GE's train.csv with my_train.csv); else
train.csv minus my_train.csv when only that is present; else carved from train.csv by
a fixed rule: `mmbal.data.stratified_split` of train.csv's rows (labels in alphabetical
order, file order) with `round(n / 9)` rows (744 of 6,698, the size of D&R's) and seed 0.
`train` = the rest of train.csv. Never the test set: a validation row in test.csv is an
error. To reproduce OGM-GE's protocol (train on all 6,698, select on test) is not
offered: mmbal selects on validation.

Checks before anything is computed: the split files must exist and parse (an error names
the file, line and what was expected); train and test must not overlap; the media
directories of the config must exist. A clip whose own files are missing or malformed
(no WAV / fbank file, no frame directory, no frames, a file that is not a WAV / JPEG /
fbank of the right shape) is skipped, as every upstream loader does, with a warning;
`info.metadata["skipped"]` holds the counts per split and reason and
`info.metadata["skipped_examples"]` the first clips with the file and the problem. More
than `max_skipped_fraction` (builder argument, default 0.05) of a split skipped is an
error naming the reasons.

Differences from OGM-GE's loader: the resampling to 22,050 Hz uses
`scipy.signal.resample_poly` (librosa uses soxr or resampy; values differ slightly, the
shape is the same); clips shorter than 1 s are tiled until 3 s long (OGM-GE tiles three
times only, giving fewer STFT frames); STFT padding is zeros (librosa >= 0.10's default;
librosa < 0.10 reflected the signal, which changes the first and last frame only); the
visual frames are sampled at segment centres in evaluation and at random per segment in
training (OGM-GE's code takes the first file `os.listdir` returns).
"""

from __future__ import annotations

import logging
import math
import os
import re
from typing import Any

import numpy as np
import scipy.signal
import tensorflow_datasets as tfds

from mmbal.data import _split
from mmbal.data import frames
from mmbal.data import manual
# Shared manual-directory helpers, re-exported under their old names.
from mmbal.data.manual import FBANK_MEAN  # pylint: disable=unused-import
from mmbal.data.manual import FBANK_PAD_VALUE  # pylint: disable=unused-import
from mmbal.data.manual import FBANK_SHAPE
from mmbal.data.manual import FBANK_STD  # pylint: disable=unused-import
from mmbal.data.manual import ManualDirError
from mmbal.data.manual import num_fbank_frames
from mmbal.data.manual import read_fbank
from mmbal.data.manual import read_torch_tensor  # pylint: disable=unused-import
from mmbal.data.manual import read_wav

log = logging.getLogger(__name__)

EMOTIONS_OGM_GE = ("NEU", "HAP", "SAD", "FEA", "DIS", "ANG")
EMOTIONS_SORTED = ("ANG", "DIS", "FEA", "HAP", "NEU", "SAD")
LABEL_ORDERS = {"ogm_ge": EMOTIONS_OGM_GE, "sorted": EMOTIONS_SORTED}
NUM_CLASSES = 6

# OGM-GE's spectrogram (dataset/CramedDataset.py).
SAMPLE_RATE = 22050
CLIP_SAMPLES = 3 * SAMPLE_RATE
N_FFT = 512
HOP_LENGTH = 353
SPECTROGRAM_SHAPE = (N_FFT // 2 + 1, 1 + CLIP_SAMPLES // HOP_LENGTH)  # (257, 188)

# The fbank variant (OGM-GE data/KineticSound/process_audio.py, saved as .pt by D&R):
# manual.FBANK_SHAPE etc.

VALIDATION_SEED = 0
VALIDATION_DIVISOR = 9
_STEM = re.compile(r"^(\d+)_([A-Za-z]+)_([A-Z]{3})_([A-Za-z]+)$")
_PIPELINE_KEYS = ("num_frames", "image_size", "visual_layout", "audio_layout", "augment")

_CITATION = """\
@article{cao2014crema,
  author = {Cao, Houwei and Cooper, David G. and Keutmann, Michael K. and Gur, Ruben C.
            and Nenkova, Ani and Verma, Ragini},
  title = {{CREMA-D}: Crowd-sourced Emotional Multimodal Actors Dataset},
  journal = {IEEE Transactions on Affective Computing},
  volume = {5}, number = {4}, pages = {377--390}, year = {2014}
}"""


def convert_labels(labels, from_order: str, to_order: str) -> np.ndarray:
  """Maps integer labels between label orders (`"ogm_ge"`, `"sorted"`)."""
  return manual.convert_labels(labels, from_order, to_order, LABEL_ORDERS)


# ----------------------------------------------------------------------------- audio


def ogm_ge_spectrogram(samples: np.ndarray, rate: int) -> np.ndarray:
  """OGM-GE's CREMA-D log-magnitude spectrogram, float32 `[257, 188]` (see the module doc)."""
  x = np.asarray(samples, dtype=np.float64)
  if rate != SAMPLE_RATE:
    g = math.gcd(SAMPLE_RATE, rate)
    x = scipy.signal.resample_poly(x, SAMPLE_RATE // g, rate // g)
  x = np.tile(x, max(3, -(-CLIP_SAMPLES // len(x))))[:CLIP_SAMPLES]
  x = np.clip(x, -1.0, 1.0)
  x = np.pad(x, N_FFT // 2)  # Centred frames, zero padding.
  windows = np.lib.stride_tricks.sliding_window_view(x, N_FFT)[::HOP_LENGTH]
  window = scipy.signal.get_window("hann", N_FFT, fftbins=True)
  spectrum = np.fft.rfft(windows * window, axis=-1)
  return np.log(np.abs(spectrum) + 1e-7).T.astype(np.float32)


# ----------------------------------------------------------------------------- split files


def parse_stem(stem: str) -> tuple[int, str, str, str] | None:
  """`"1001_DFA_ANG_XX"` -> `(1001, "DFA", "ANG", "XX")`, or None if not a CREMA-D clip name."""
  m = _STEM.match(stem)
  if not m or m.group(3) not in EMOTIONS_SORTED:
    return None
  return int(m.group(1)), m.group(2), m.group(3), m.group(4)


def read_split_csv(path: str | os.PathLike) -> list[tuple[str, str]]:
  """Rows `(stem, emotion code)` of an OGM-GE / D&R split file, in file order.

  Accepts a UTF-8 BOM, CRLF / LF / CR line ends, blank lines and a header line on the
  first line (e.g. `name,label`).

  Raises:
    ManualDirError: naming the file and line, for a row that is not `stem,CODE` with a
      CREMA-D clip name and its own emotion code, and for a repeated clip.
  """
  header = lambda f: len(f) == 2 and parse_stem(f[0]) is None and f[1] not in EMOTIONS_SORTED
  rows, seen = [], {}
  for lineno, fields in manual.read_rows(path, ",", header=header, what="'stem,LABEL' rows"):
    where = f"{path}:{lineno}"
    if len(fields) != 2:
      line = ",".join(fields)
      raise ManualDirError(f"{where}: expected 'stem,LABEL' (2 comma-separated fields), "
                           f"got {line!r}")
    stem, code = fields
    parsed = parse_stem(stem)
    if parsed is None:
      raise ManualDirError(f"{where}: expected a CREMA-D clip name like 1001_DFA_ANG_XX "
                           f"(no extension), got {stem!r}")
    if code not in EMOTIONS_SORTED:
      raise ManualDirError(f"{where}: expected a label in {list(EMOTIONS_SORTED)}, got {code!r}")
    if code != parsed[2]:
      raise ManualDirError(f"{where}: label {code} disagrees with the emotion {parsed[2]} "
                           f"in the clip name {stem}")
    if stem in seen:
      raise ManualDirError(f"{where}: clip {stem} repeats line {seen[stem]}")
    seen[stem] = lineno
    rows.append((stem, code))
  if not rows:
    raise ManualDirError(f"{path}: expected 'stem,LABEL' rows, found none")
  return rows


def assign_splits(split_dir: str) -> tuple[dict[str, list[tuple[str, str]]], dict[str, Any]]:
  """The rows of train / validation / test (see the module doc) and how validation was made."""
  paths = {n: os.path.join(split_dir, n + ".csv") for n in ("train", "test", "val", "my_train")}
  for name in ("train", "test"):
    if not os.path.isfile(paths[name]):
      raise ManualDirError(f"{paths[name]}: missing; expected OGM-GE's {name}.csv "
                           f"(rows 'stem,LABEL', e.g. 1001_DFA_ANG_XX,ANG)")
  train, test = read_split_csv(paths["train"]), read_split_csv(paths["test"])
  train_stems, test_stems = [s for s, _ in train], {s for s, _ in test}
  both = [s for s in train_stems if s in test_stems]
  if both:
    raise ManualDirError(f"{paths['train']} and {paths['test']}: {len(both)} clips in both "
                         f"(e.g. {both[:3]}); expected disjoint splits")

  def subset_of_train(name):
    rows = read_split_csv(paths[name])
    stems = [s for s, _ in rows]
    leaked = [s for s in stems if s in test_stems]
    if leaked:
      raise ManualDirError(f"{paths[name]}: {len(leaked)} clips of test.csv (e.g. {leaked[:3]}); "
                           f"validation must come from train.csv, never from the test set")
    outside = sorted(set(stems) - set(train_stems))
    if outside:
      raise ManualDirError(f"{paths[name]}: {len(outside)} clips not in train.csv "
                           f"(e.g. {outside[:3]}); expected a subset of train.csv")
    return set(stems)

  if os.path.isfile(paths["val"]):
    val = subset_of_train("val")
    info = dict(source="val.csv", rule="D&R's val.csv")
    if os.path.isfile(paths["my_train"]):
      rest = subset_of_train("my_train")
      if rest != set(train_stems) - val:
        raise ManualDirError(f"{paths['my_train']} and {paths['val']}: expected to partition "
                             f"train.csv, but {len(set(train_stems) - val - rest)} train.csv "
                             f"clips are in neither and {len(rest & val)} in both")
  elif os.path.isfile(paths["my_train"]):
    val = set(train_stems) - subset_of_train("my_train")
    info = dict(source="my_train.csv", rule="train.csv minus D&R's my_train.csv")
  else:
    labels = np.array([EMOTIONS_SORTED.index(c) for _, c in train])
    num_val = int(round(len(train) / VALIDATION_DIVISOR))
    if not 0 < num_val < len(train):
      raise ManualDirError(f"{paths['train']}: {len(train)} rows are too few to carve a "
                           f"validation split; add splits/val.csv")
    val_idx, _ = _split.stratified_split(labels, num_val, VALIDATION_SEED)
    val = {train_stems[i] for i in val_idx}
    info = dict(source="carved", rule=f"stratified_split(train.csv labels in alphabetical "
                f"order, round(n / {VALIDATION_DIVISOR}) = {num_val}, seed={VALIDATION_SEED})")
  rows = dict(train=[r for r in train if r[0] not in val],
              validation=[r for r in train if r[0] in val], test=test)
  if not rows["train"]:
    raise ManualDirError(f"{split_dir}: the validation rows leave no training rows")
  return rows, info


# ----------------------------------------------------------------------------- builder


class CremaDConfig(tfds.core.BuilderConfig):
  """A CREMA-D config: the audio variant (`"wav"` or `"fbank"`) and the label order."""

  def __init__(self, *, name: str, audio: str, label_order: str, num_frames: int,
               description: str):
    if audio not in ("wav", "fbank"):
      raise ValueError(f"audio: expected 'wav' or 'fbank', got {audio!r}")
    if label_order not in LABEL_ORDERS:
      raise ValueError(f"label_order: expected one of {sorted(LABEL_ORDERS)}, got {label_order!r}")
    super().__init__(name=name, description=description)
    self.audio = audio
    self.label_order = label_order
    self.num_frames = num_frames  # The pipeline's default K.

  @property
  def audio_dir(self) -> str:
    return "AudioWAV" if self.audio == "wav" else "audio"

  @property
  def frames_dir(self) -> str:
    return "Image-01-FPS" if self.audio == "wav" else "visual"


PRESETS = (
    CremaDConfig(name="ogm_ge", audio="wav", label_order="ogm_ge", num_frames=1,
                 description="AudioWAV + Image-01-FPS, OGM-GE spectrogram, OGM-GE label order."),
    CremaDConfig(name="ogm_ge_sorted", audio="wav", label_order="sorted", num_frames=1,
                 description="AudioWAV + Image-01-FPS, OGM-GE spectrogram, alphabetical labels."),
    CremaDConfig(name="fbank", audio="fbank", label_order="sorted", num_frames=2,
                 description="audio/*.pt|.npy fbanks + visual/ frames, alphabetical labels "
                             "(MMPareto, D&R)."),
    CremaDConfig(name="fbank_ogm_order", audio="fbank", label_order="ogm_ge", num_frames=2,
                 description="audio/*.pt|.npy fbanks + visual/ frames, OGM-GE label order "
                             "(BalanceBenchmark)."),
)


def parse_config(config) -> tuple[Any, dict[str, str]]:
  """`"ogm_ge:num_frames=2,image_size=112"` -> `("ogm_ge", {"num_frames": "2", ...})`."""
  return manual.parse_config(config, _PIPELINE_KEYS)


class CremaD(manual.AudioVisualBuilder):
  """CREMA-D from a manual directory; see the module docstring.

  Registered with TFDS as `mmbal_crema_d` (TFDS's catalog has an audio-only `crema_d`
  of its own, and two builders of one name cannot both be registered);
  `mmbal.data.load("crema_d", ...)` resolves to it.
  """

  name = "mmbal_crema_d"
  VERSION = tfds.core.Version("1.0.0")
  RELEASE_NOTES = {"1.0.0": "OGM-GE and fbank variants, two label orders, validation split."}
  BUILDER_CONFIGS = list(PRESETS)
  MANUAL_DOWNLOAD_INSTRUCTIONS = """\
  Put the CREMA-D files in <manual_dir>/crema_d/ (manual_dir: <data_dir>/downloads/manual,
  or the builder argument manual_dir=): splits/train.csv and splits/test.csv (OGM-GE's
  data/CREMAD/), optionally splits/val.csv (D&R's); for the ogm_ge configs AudioWAV/ from
  the CREMA-D repository and Image-01-FPS/<stem>/*.jpg (OGM-GE's video_preprocessing.py);
  for the fbank configs audio/<stem>.pt or .npy and visual/<stem>/frame_000NN.jpg."""

  MANUAL_NAME = "crema_d"
  MANUAL_MARKER = "splits"
  MANUAL_EXAMPLE = "crema_d/splits/train.csv"
  PIPELINE_KEYS = _PIPELINE_KEYS

  def default_num_frames(self) -> int:
    return self.builder_config.num_frames

  def input_decoder(self) -> frames.Decoder:
    """Stored records -> `{"audio": [T, F] | [T, F, 1], "visual": [K, S, S, 3] | [S, S, 3K]}`."""
    channel = self.audio_layout == "image"
    if self.builder_config.audio == "wav":
      audio = frames.ArrayInput("spectrogram", SPECTROGRAM_SHAPE, (1, 0), channel)
    else:
      audio = frames.ArrayInput("fbank", FBANK_SHAPE, None, channel)
    return frames.Decoder({"audio": audio,
                           "visual": frames.FramesInput("frames", self.frame_options)})

  def _info(self) -> tfds.core.DatasetInfo:
    c = self.builder_config
    features = {
        "id": tfds.features.Text(),
        "label": tfds.features.ClassLabel(names=list(LABEL_ORDERS[c.label_order])),
        "actor_id": tfds.features.Tensor(shape=(), dtype=np.int32),
        "frames": tfds.features.Sequence(tfds.features.Tensor(shape=(), dtype=np.object_)),
        "num_frames": tfds.features.Tensor(shape=(), dtype=np.int32),
    }
    if c.audio == "wav":
      features["spectrogram"] = tfds.features.Tensor(shape=SPECTROGRAM_SHAPE, dtype=np.float32)
    else:
      features["fbank"] = tfds.features.Tensor(shape=FBANK_SHAPE, dtype=np.float32)
      features["num_fbank_frames"] = tfds.features.Tensor(shape=(), dtype=np.int32)
    return tfds.core.DatasetInfo(
        builder=self,
        description=__doc__,
        features=tfds.features.FeaturesDict(features),
        homepage="https://github.com/CheyneyComputerScience/CREMA-D",
        citation=_CITATION,
        license="Open Database License 1.0 (contents: Database Contents License 1.0)",
        metadata=tfds.core.MetadataDict(
            modalities=["audio", "visual"], label_order=c.label_order,
            class_names=list(LABEL_ORDERS[c.label_order]), audio_variant=c.audio),
    )

  # ---------------------------------------------------------------- manual directory

  def _check_layout(self, root: str):
    c = self.builder_config
    problems = []
    split_dir = os.path.join(root, "splits")
    if not os.path.isdir(split_dir):
      problems.append(f"{split_dir}: missing; expected the directory with train.csv and test.csv")
    else:
      for name in ("train", "test"):
        path = os.path.join(split_dir, name + ".csv")
        if not os.path.isfile(path):
          problems.append(f"{path}: missing; expected OGM-GE's {name}.csv "
                          f"(rows 'stem,LABEL', e.g. 1001_DFA_ANG_XX,ANG)")
    for sub, what in ((c.audio_dir, "one .wav per clip" if c.audio == "wav" else
                       "one .pt or .npy fbank per clip"),
                      (c.frames_dir, "one directory of .jpg frames per clip")):
      path = os.path.join(root, sub)
      if not os.path.isdir(path) or not os.listdir(path):
        problems.append(f"{path}: missing or empty; config {c.name!r} expects {what} there")
    if problems:
      raise ManualDirError("CREMA-D manual directory " + root + " is incomplete:\n  " +
                           "\n  ".join(problems))

  def _audio_file(self, root: str, stem: str) -> tuple[str | None, str]:
    """(path, problem): the clip's audio file if present and plausible, else the reason."""
    c = self.builder_config
    if c.audio == "wav":
      path = os.path.join(root, c.audio_dir, stem + ".wav")
      problem = manual.check_wav(path)
      return (None if problem else path), problem
    return manual.find_fbank(os.path.join(root, c.audio_dir), stem)

  def _frame_files(self, root: str, stem: str) -> tuple[list[str] | None, str]:
    return manual.check_frames(os.path.join(root, self.builder_config.frames_dir, stem))

  def _split_generators(self, dl_manager):
    root = self._root(dl_manager)
    self._check_layout(root)
    rows, validation = assign_splits(os.path.join(root, "splits"))
    self.info.metadata["validation"] = validation
    self._start_metadata(root)
    items = {}
    for split, split_rows in rows.items():
      kept, skips = [], {}
      for stem, code in split_rows:
        audio, problem = self._audio_file(root, stem)
        files = None
        if audio is not None:
          files, problem = self._frame_files(root, stem)
        if files is None:
          skips.setdefault(problem.split(":")[0], []).append(f"{stem}: {problem}")
        else:
          kept.append((stem, code, audio, files))
      self._record_skips(split, skips, len(split_rows))
      items[split] = kept
    return {split: self._generate_examples(split, kept, len(rows[split]))
            for split, kept in items.items()}

  def _generate_examples(self, split, items, total):
    c = self.builder_config
    order = LABEL_ORDERS[c.label_order]
    skips = {}
    for stem, code, audio_path, frame_files in items:
      example = dict(id=stem, label=order.index(code), actor_id=parse_stem(stem)[0])
      try:
        if c.audio == "wav":
          samples, rate = read_wav(audio_path)
          example["spectrogram"] = ogm_ge_spectrogram(samples, rate)
        else:
          fbank = read_fbank(audio_path)
          example["fbank"] = fbank
          example["num_fbank_frames"] = num_fbank_frames(fbank)
      except ValueError as e:
        skips.setdefault("malformed audio", []).append(
            f"{stem}: malformed audio: {audio_path}: {e}")
        continue
      encoded, problem = manual.read_frames(frame_files)
      if encoded is None:
        skips.setdefault("malformed frame", []).append(f"{stem}: {problem}")
        continue
      example["frames"] = encoded
      example["num_frames"] = len(encoded)
      yield stem, example
    self._record_skips(split, skips, total)
