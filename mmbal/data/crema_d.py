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

import collections
import dataclasses
import importlib.util
import logging
import math
import os
import pickle
import re
import textwrap
import zipfile
from typing import Any

import numpy as np
import scipy.io.wavfile
import scipy.signal
import tensorflow_datasets as tfds

from mmbal.data import _builder
from mmbal.data import _split
from mmbal.data import frames

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

# The fbank variant (OGM-GE data/KineticSound/process_audio.py, saved as .pt by D&R).
FBANK_SHAPE = (1024, 128)
FBANK_MEAN = -4.503877
FBANK_STD = 5.141276
FBANK_PAD_VALUE = np.float32((0.0 - FBANK_MEAN) / (2 * FBANK_STD))

VALIDATION_SEED = 0
VALIDATION_DIVISOR = 9
_STEM = re.compile(r"^(\d+)_([A-Za-z]+)_([A-Z]{3})_([A-Za-z]+)$")
_PIPELINE_KEYS = ("num_frames", "image_size", "visual_layout", "audio_layout", "augment")
_SHOWN_PER_REASON = 20

_CITATION = """\
@article{cao2014crema,
  author = {Cao, Houwei and Cooper, David G. and Keutmann, Michael K. and Gur, Ruben C.
            and Nenkova, Ani and Verma, Ragini},
  title = {{CREMA-D}: Crowd-sourced Emotional Multimodal Actors Dataset},
  journal = {IEEE Transactions on Affective Computing},
  volume = {5}, number = {4}, pages = {377--390}, year = {2014}
}"""


class ManualDirError(ValueError):
  """The manual directory lacks a file the config needs, or a file is malformed."""


def convert_labels(labels, from_order: str, to_order: str) -> np.ndarray:
  """Maps integer labels between label orders (`"ogm_ge"`, `"sorted"`)."""
  for order in (from_order, to_order):
    if order not in LABEL_ORDERS:
      raise ValueError(f"label order: expected one of {sorted(LABEL_ORDERS)}, got {order!r}")
  table = np.array([LABEL_ORDERS[to_order].index(c) for c in LABEL_ORDERS[from_order]])
  return table[np.asarray(labels)]


# ----------------------------------------------------------------------------- audio


def read_wav(path: str | os.PathLike) -> tuple[np.ndarray, int]:
  """A WAV file as float32 mono samples in [-1, 1] (channels averaged) and its rate."""
  try:
    rate, data = scipy.io.wavfile.read(path)
  except Exception as e:  # scipy raises ValueError, EOFError, struct.error, ...
    raise ValueError(f"not a readable WAV file ({type(e).__name__}: {e})") from None
  if data.dtype == np.uint8:
    x = (data.astype(np.float32) - 128.0) / 128.0
  elif np.issubdtype(data.dtype, np.integer):
    x = data.astype(np.float32) / float(2 ** (8 * data.dtype.itemsize - 1))
  else:
    x = data.astype(np.float32)
  if x.ndim == 2:
    x = x.mean(axis=1)
  if x.ndim != 1 or x.size == 0:
    raise ValueError(f"expected mono or multi-channel samples, got an array of shape {data.shape}")
  return x, int(rate)


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


# ----------------------------------------------------------------------------- torch files


_TORCH_DTYPES = {
    "FloatStorage": np.float32, "DoubleStorage": np.float64, "HalfStorage": np.float16,
    "LongStorage": np.int64, "IntStorage": np.int32, "ShortStorage": np.int16,
    "CharStorage": np.int8, "ByteStorage": np.uint8, "BoolStorage": np.bool_,
}


@dataclasses.dataclass(frozen=True)
class _StorageType:
  dtype: Any


def _rebuild_tensor(storage, offset, size, stride, requires_grad=False, hooks=None,
                    metadata=None):
  del requires_grad, hooks, metadata
  item = storage.dtype.itemsize
  if not size:
    return storage[offset].copy()
  return np.lib.stride_tricks.as_strided(
      storage[offset:], shape=tuple(size), strides=tuple(s * item for s in stride)).copy()


class _TensorUnpickler(pickle.Unpickler):
  """Unpickles `data.pkl` of a zip-format torch file holding plain tensors, nothing else."""

  def __init__(self, file, archive: zipfile.ZipFile, prefix: str, byteorder: str):
    super().__init__(file)
    self._archive, self._prefix, self._byteorder = archive, prefix, byteorder

  def find_class(self, module, name):
    if (module, name) == ("torch._utils", "_rebuild_tensor_v2"):
      return _rebuild_tensor
    if module == "torch" and name in _TORCH_DTYPES:
      return _StorageType(np.dtype(_TORCH_DTYPES[name]))
    if (module, name) == ("collections", "OrderedDict"):
      return collections.OrderedDict
    raise pickle.UnpicklingError(f"{module}.{name} is not part of a plain tensor")

  def persistent_load(self, pid):
    if not (isinstance(pid, tuple) and len(pid) == 5 and pid[0] == "storage"
            and isinstance(pid[1], _StorageType)):
      raise pickle.UnpicklingError(f"unsupported storage record {pid!r}")
    dtype = pid[1].dtype.newbyteorder("<" if self._byteorder == "little" else ">")
    raw = self._archive.read(f"{self._prefix}/data/{pid[2]}")
    return np.frombuffer(raw, dtype=dtype).astype(dtype.newbyteorder("="))


def read_torch_tensor(path: str | os.PathLike) -> np.ndarray:
  """The tensor saved by `torch.save(tensor, path)`, as a numpy array.

  Zip-format files (torch >= 1.6) are read without torch; legacy files need torch.

  Raises:
    ModuleNotFoundError: a legacy file and no torch installed (names `torch`).
    ValueError: the file is not a torch file of one plain tensor.
  """
  path = os.fspath(path)
  if not zipfile.is_zipfile(path):
    if importlib.util.find_spec("torch") is None:
      raise ModuleNotFoundError(
          f"{path}: a legacy (non-zip) torch.save file; reading it needs the package 'torch' "
          f"(pip install torch), or save the fbanks as .npy", name="torch")
    import torch  # pylint: disable=import-outside-toplevel
    try:
      value = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
      raise ValueError(f"not a readable torch file ({type(e).__name__}: {e})") from None
    if not isinstance(value, torch.Tensor):
      raise ValueError(f"expected one saved tensor, got {type(value).__name__}")
    return value.numpy()
  try:
    with zipfile.ZipFile(path) as archive:
      pkls = [n for n in archive.namelist() if n.endswith("/data.pkl") or n == "data.pkl"]
      if len(pkls) != 1:
        raise ValueError(f"expected one data.pkl in the zip, found {len(pkls)}")
      prefix = os.path.dirname(pkls[0])
      names = set(archive.namelist())
      byteorder = (archive.read(f"{prefix}/byteorder").decode().strip()
                   if f"{prefix}/byteorder" in names else "little")
      with archive.open(pkls[0]) as f:
        value = _TensorUnpickler(f, archive, prefix, byteorder).load()
  except (pickle.UnpicklingError, zipfile.BadZipFile, KeyError, EOFError) as e:
    raise ValueError(f"not a torch file of one tensor ({type(e).__name__}: {e})") from None
  if not isinstance(value, np.ndarray):
    raise ValueError(f"expected one saved tensor, got {type(value).__name__}")
  return value


def read_fbank(path: str | os.PathLike) -> np.ndarray:
  """A stored fbank (`.npy` or `.pt`) as float32 `[1024, 128]`; raises ValueError otherwise."""
  path = os.fspath(path)
  if path.endswith(".npy"):
    try:
      x = np.load(path, allow_pickle=False)
    except Exception as e:
      raise ValueError(f"not a readable .npy file ({type(e).__name__}: {e})") from None
  else:
    x = read_torch_tensor(path)
  x = np.asarray(x)
  while x.ndim > 2 and x.shape[0] == 1:  # Some loaders save (1, 1024, 128).
    x = x[0]
  if x.shape != FBANK_SHAPE or not np.issubdtype(x.dtype, np.floating):
    raise ValueError(f"expected a float array of shape {FBANK_SHAPE}, got {x.dtype} {x.shape}")
  return x.astype(np.float32)


def num_fbank_frames(fbank: np.ndarray) -> int:
  """Frames before the padding (trailing rows all equal to the padding value, or all 0)."""
  pad = np.all(np.isclose(fbank, FBANK_PAD_VALUE, rtol=0, atol=1e-6), axis=1)
  pad |= np.all(fbank == 0, axis=1)
  real = len(fbank)
  while real > 0 and pad[real - 1]:
    real -= 1
  return real


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
  try:
    text = open(path, "rb").read().decode("utf-8-sig")
  except UnicodeDecodeError as e:
    raise ManualDirError(f"{path}: expected a UTF-8 text file of 'stem,LABEL' rows ({e})") from None
  rows, first, seen = [], True, {}
  for lineno, line in enumerate(text.splitlines(), 1):
    if not line.strip():
      continue
    fields = [f.strip() for f in line.split(",")]
    if first and len(fields) == 2 and parse_stem(fields[0]) is None \
        and fields[1] not in EMOTIONS_SORTED:
      first = False
      continue  # A header line such as D&R's `name,label`.
    first = False
    where = f"{path}:{lineno}"
    if len(fields) != 2:
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
  if not isinstance(config, str) or ":" not in config:
    return config, {}
  name, _, rest = config.partition(":")
  options = {}
  for item in filter(None, (s.strip() for s in rest.split(","))):
    key, eq, value = item.partition("=")
    if not eq or key.strip() not in _PIPELINE_KEYS:
      raise ValueError(f"config {config!r}: expected pipeline options key=value with keys "
                       f"{list(_PIPELINE_KEYS)}, got {item!r}")
    options[key.strip()] = value.strip()
  return name or None, options


def _as_bool(key, value):
  if value.lower() in ("1", "true", "yes"):
    return True
  if value.lower() in ("0", "false", "no"):
    return False
  raise ValueError(f"{key}: expected true or false, got {value!r}")


def _as_int(key, value):
  try:
    return int(value)
  except ValueError:
    raise ValueError(f"{key}: expected an integer, got {value!r}") from None


class CremaD(_builder.ArrayRecordBuilder):
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

  def __init__(self, *, config=None, manual_dir=None, max_skipped_fraction: float = 0.05,
               **kwargs):
    config, options = parse_config(config)
    if not 0.0 <= max_skipped_fraction <= 1.0:
      raise ValueError(f"max_skipped_fraction: expected a value in [0, 1], got "
                       f"{max_skipped_fraction}")
    self._manual_dir_arg = manual_dir
    self._max_skipped_fraction = max_skipped_fraction
    super().__init__(config=config, **kwargs)
    c = self.builder_config
    self.frame_options = frames.FrameOptions(
        num_frames=_as_int("num_frames", options.get("num_frames", str(c.num_frames))),
        image_size=_as_int("image_size", options.get("image_size", "224")),
        layout=options.get("visual_layout", "frames"),
        augment=_as_bool("augment", options.get("augment", "true")))
    self.audio_layout = options.get("audio_layout", "sequence")
    if self.audio_layout not in ("sequence", "image"):
      raise ValueError(f"audio_layout: expected 'sequence' or 'image', got {self.audio_layout!r}")

  def download_and_prepare(self, *, download_config=None, **kwargs):
    if self._manual_dir_arg is not None:
      download_config = download_config or tfds.download.DownloadConfig()
      if download_config.manual_dir is None:
        download_config = dataclasses.replace(download_config, manual_dir=self._manual_dir_arg)
    return super().download_and_prepare(download_config=download_config, **kwargs)

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

  def _root(self, dl_manager) -> str:
    try:
      manual = os.fspath(dl_manager.manual_dir)
    except AssertionError:
      where = dl_manager._manual_dir  # pylint: disable=protected-access
      raise ManualDirError(
          f"{where}: the manual directory is missing or empty; expected "
          f"crema_d/splits/train.csv etc. there (or pass manual_dir=). Layout:\n"
          f"{textwrap.dedent(self.MANUAL_DOWNLOAD_INSTRUCTIONS)}") from None
    nested = os.path.join(manual, "crema_d")
    return nested if os.path.isdir(os.path.join(nested, "splits")) else manual

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
      if not os.path.isfile(path):
        return None, f"missing audio: {path}"
      with open(path, "rb") as f:
        head = f.read(12)
      if head[:4] not in (b"RIFF", b"RIFX", b"RF64") or head[8:12] != b"WAVE":
        return None, f"malformed audio: {path} is not a RIFF/WAVE file"
      return path, ""
    npy = os.path.join(root, c.audio_dir, stem + ".npy")
    pt = os.path.join(root, c.audio_dir, stem + ".pt")
    if os.path.isfile(npy):
      return npy, ""
    if not os.path.isfile(pt):
      return None, f"missing audio: neither {npy} nor {pt}"
    if not zipfile.is_zipfile(pt) and importlib.util.find_spec("torch") is None:
      raise ModuleNotFoundError(
          f"{pt}: a legacy (non-zip) torch.save file; reading it needs the package 'torch' "
          f"(pip install torch), or save the fbanks as .npy", name="torch")
    return pt, ""

  def _frame_files(self, root: str, stem: str) -> tuple[list[str] | None, str]:
    directory = os.path.join(root, self.builder_config.frames_dir, stem)
    if not os.path.isdir(directory):
      return None, f"missing frames: {directory}"
    files = frames.list_frames(directory)
    if not files:
      return None, f"missing frames: no .jpg files in {directory}"
    for f in files:
      if not frames.looks_like_jpeg(f):
        return None, f"malformed frame: {f} does not start with a JPEG marker"
    return files, ""

  def _split_generators(self, dl_manager):
    root = self._root(dl_manager)
    self._check_layout(root)
    rows, validation = assign_splits(os.path.join(root, "splits"))
    self.info.metadata["validation"] = validation
    self.info.metadata["skipped"] = {}
    self.info.metadata["skipped_examples"] = {}
    self.info.metadata["manual_dir"] = root
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

  def _record_skips(self, split: str, skips: dict[str, list[str]], total: int):
    skipped = self.info.metadata["skipped"].setdefault(split, {})
    shown = self.info.metadata["skipped_examples"].setdefault(split, {})
    for reason, entries in skips.items():
      skipped[reason] = skipped.get(reason, 0) + len(entries)
      shown[reason] = (shown.get(reason, []) + entries)[:_SHOWN_PER_REASON]
      log.warning("crema_d %s: skipped %d clips (%s), e.g. %s", split, len(entries), reason,
                  entries[0])
    count = sum(skipped.values())
    if count > self._max_skipped_fraction * total or count == total:
      detail = "; ".join(f"{n} x {r} (e.g. {shown[r][0]})" for r, n in skipped.items())
      raise ManualDirError(f"crema_d {split}: {count} of {total} clips skipped, more than "
                           f"max_skipped_fraction={self._max_skipped_fraction}: {detail}")

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
      encoded = []
      for path in frame_files:
        with open(path, "rb") as f:
          data = f.read()
        try:
          frames.check_image_bytes(data)
        except ValueError as e:
          skips.setdefault("malformed frame", []).append(f"{stem}: malformed frame: {path}: {e}")
          break
        encoded.append(data)
      else:
        example["frames"] = encoded
        example["num_frames"] = len(encoded)
        yield stem, example
    self._record_skips(split, skips, total)
