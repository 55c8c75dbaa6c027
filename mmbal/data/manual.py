"""Shared pieces of the builders that read a manual directory (CREMA-D, Kinetics-Sounds, ...).

* `ManualDirError`: the manual directory lacks a file, or a file is malformed.
* Text files as users have them: `read_lines` / `read_rows` accept a UTF-8 BOM, CRLF, LF
  or CR line ends, blank lines and an optional header line, and report line numbers.
* Per-clip files: `check_wav`, `find_fbank`, `check_frames`, `read_frames` return
  `(value, problem)` instead of raising, so a builder can skip the clip and count why;
  `read_wav`, `read_fbank`, `read_torch_tensor` (zip-format `torch.save` files without
  torch) and `num_fbank_frames` read the contents.
* Skip counts: `Skips` collects `(reason, entry)` per split; `ManualBuilder._record_skips`
  stores them in `info.metadata["skipped"]` / `["skipped_examples"]` and stops with an
  error naming the reasons when more than `max_skipped_fraction` of a split is skipped.
* Pipeline options after a colon in the config name (`"ogm_ge:num_frames=2"`):
  `parse_config`, `as_bool`, `as_int`, `frame_options`.
* `ManualBuilder`: the common base: `manual_dir=` and `max_skipped_fraction=` builder
  arguments, pipeline options, finding `<manual_dir>/<name>/`, skip bookkeeping.
"""

from __future__ import annotations

import collections
import dataclasses
import importlib.util
import logging
import os
import pickle
import textwrap
import zipfile
from typing import Any, Callable, Sequence

import numpy as np
import scipy.io.wavfile
import tensorflow_datasets as tfds

from mmbal.data import _builder
from mmbal.data import frames

log = logging.getLogger(__name__)

SHOWN_PER_REASON = 20  # Skipped clips listed per reason in info.metadata["skipped_examples"].

# Kaldi fbanks as OGM-GE's data/KineticSound/process_audio.py writes them (MMPareto, D&R,
# BalanceBenchmark): 128 mel bins, padded / cut to 1024 frames, then normalised.
FBANK_SHAPE = (1024, 128)
FBANK_MEAN = -4.503877
FBANK_STD = 5.141276
FBANK_PAD_VALUE = np.float32((0.0 - FBANK_MEAN) / (2 * FBANK_STD))


class ManualDirError(ValueError):
  """The manual directory lacks a file the config needs, or a file is malformed."""


# ----------------------------------------------------------------------------- text files


def read_lines(path: str | os.PathLike, what: str = "text") -> list[tuple[int, str]]:
  """The non-blank lines of a UTF-8 text file as `(line number, line)`, whitespace-stripped.

  A BOM is dropped; CRLF, LF and CR line ends all work.

  Raises:
    ManualDirError: the file is missing or not UTF-8 (`what` says what it should hold).
  """
  try:
    with open(path, "rb") as f:
      text = f.read().decode("utf-8-sig")
  except FileNotFoundError:
    raise ManualDirError(f"{path}: missing; expected a file of {what}") from None
  except UnicodeDecodeError as e:
    raise ManualDirError(f"{path}: expected a UTF-8 text file of {what} ({e})") from None
  return [(i, line.strip()) for i, line in enumerate(text.splitlines(), 1) if line.strip()]


def read_rows(path: str | os.PathLike, sep: str | None = ",", *,
              header: Callable[[list[str]], bool] | None = None,
              what: str = "rows") -> list[tuple[int, list[str]]]:
  """The rows of a delimited text file as `(line number, stripped fields)`.

  Args:
    path: the file (BOM, CRLF / LF / CR, blank lines all fine: `read_lines`).
    sep: the field separator; None splits on runs of whitespace.
    header: called with the first row's fields; when it returns True that row is a
      header and dropped.
    what: what the rows should be, for the error messages.
  """
  rows = []
  for lineno, line in read_lines(path, what):
    fields = [f.strip() for f in line.split(sep)]
    if not rows and header is not None and header(fields):
      header = None
      continue
    header = None
    rows.append((lineno, fields))
  return rows


# ----------------------------------------------------------------------------- audio


def check_wav(path: str | os.PathLike) -> str:
  """'' if `path` is a file starting with a RIFF/WAVE header, else the problem."""
  if not os.path.isfile(path):
    return f"missing audio: {path}"
  with open(path, "rb") as f:
    head = f.read(12)
  if head[:4] not in (b"RIFF", b"RIFX", b"RF64") or head[8:12] != b"WAVE":
    return f"malformed audio: {path} is not a RIFF/WAVE file"
  return ""


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


def _needs_torch(path: str) -> ModuleNotFoundError:
  return ModuleNotFoundError(
      f"{path}: a legacy (non-zip) torch.save file; reading it needs the package 'torch' "
      f"(pip install torch), or save the fbanks as .npy", name="torch")


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
      raise _needs_torch(path)
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


def read_array(path: str | os.PathLike) -> np.ndarray:
  """A stored array: `.npy` (never pickled), or else a `torch.save` tensor (`.pt`)."""
  path = os.fspath(path)
  if path.endswith(".npy"):
    try:
      return np.load(path, allow_pickle=False)
    except Exception as e:
      raise ValueError(f"not a readable .npy file ({type(e).__name__}: {e})") from None
  return read_torch_tensor(path)


def read_fbank(path: str | os.PathLike) -> np.ndarray:
  """A stored fbank (`.npy` or `.pt`) as float32 `[1024, 128]`; raises ValueError otherwise."""
  x = np.asarray(read_array(path))
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


def find_fbank(directory: str, key: str) -> tuple[str | None, str]:
  """(path, problem): `<directory>/<key>.npy`, else `<key>.pt`; None and the reason if neither.

  A legacy (non-zip) `.pt` file without torch installed stops the build
  (`ModuleNotFoundError` naming `torch`): every such file would be skipped otherwise.
  """
  npy, pt = os.path.join(directory, key + ".npy"), os.path.join(directory, key + ".pt")
  if os.path.isfile(npy):
    return npy, ""
  if not os.path.isfile(pt):
    return None, f"missing audio: neither {npy} nor {pt}"
  if not zipfile.is_zipfile(pt) and importlib.util.find_spec("torch") is None:
    raise _needs_torch(pt)
  return pt, ""


# ----------------------------------------------------------------------------- frames


def check_frames(directory: str, min_frames: int = 1) -> tuple[list[str] | None, str]:
  """(files, problem): the `.jpg` frames of a directory in order (`frames.list_frames`).

  None and the reason when the directory is missing, holds fewer than `min_frames`
  frames, or a file does not start with a JPEG marker.
  """
  if not os.path.isdir(directory):
    return None, f"missing frames: {directory}"
  files = frames.list_frames(directory)
  if not files:
    return None, f"missing frames: no .jpg files in {directory}"
  if len(files) < min_frames:
    return None, f"too few frames: {len(files)} .jpg files in {directory}, expected {min_frames}"
  for f in files:
    if not frames.looks_like_jpeg(f):
      return None, f"malformed frame: {f} does not start with a JPEG marker"
  return files, ""


def read_frames(files: Sequence[str]) -> tuple[list[bytes] | None, str]:
  """(encoded bytes, problem): every file read and fully decoded once as a check."""
  encoded = []
  for path in files:
    with open(path, "rb") as f:
      data = f.read()
    try:
      frames.check_image_bytes(data)
    except ValueError as e:
      return None, f"malformed frame: {path}: {e}"
    encoded.append(data)
  return encoded, ""


# ----------------------------------------------------------------------------- skips


class Skips:
  """Skipped clips of one split: reason (the problem's text before the first ':') -> entries."""

  def __init__(self):
    self.by_reason: dict[str, list[str]] = {}

  def add(self, key: str, problem: str):
    """Records clip `key` skipped for `problem` (e.g. `"missing audio: /path"`)."""
    self.by_reason.setdefault(problem.split(":")[0], []).append(f"{key}: {problem}")

  def __len__(self):
    return sum(len(v) for v in self.by_reason.values())


# ----------------------------------------------------------------------------- options


def parse_config(config, keys: Sequence[str]) -> tuple[Any, dict[str, str]]:
  """`"ogm_ge:num_frames=2,image_size=112"` -> `("ogm_ge", {"num_frames": "2", ...})`.

  `keys`: the allowed option names; anything else is a ValueError listing them. A
  config that is not a string with a colon is returned as it is, with no options.
  """
  if not isinstance(config, str) or ":" not in config:
    return config, {}
  name, _, rest = config.partition(":")
  options = {}
  for item in filter(None, (s.strip() for s in rest.split(","))):
    key, eq, value = item.partition("=")
    if not eq or key.strip() not in keys:
      raise ValueError(f"config {config!r}: expected pipeline options key=value with keys "
                       f"{list(keys)}, got {item!r}")
    options[key.strip()] = value.strip()
  return name or None, options


def as_bool(key: str, value: str) -> bool:
  if value.lower() in ("1", "true", "yes"):
    return True
  if value.lower() in ("0", "false", "no"):
    return False
  raise ValueError(f"{key}: expected true or false, got {value!r}")


def as_int(key: str, value: str) -> int:
  try:
    return int(value)
  except ValueError:
    raise ValueError(f"{key}: expected an integer, got {value!r}") from None


def convert_labels(labels, from_order: str, to_order: str, orders: dict) -> np.ndarray:
  """Maps integer labels between two of a data set's class orders (``orders``: ``{name:
  class names in that order}``)."""
  for order in (from_order, to_order):
    if order not in orders:
      raise ValueError(f"label order: expected one of {sorted(orders)}, got {order!r}")
  table = np.array([orders[to_order].index(c) for c in orders[from_order]])
  return table[np.asarray(labels)]


def as_choice(key: str, value: str, choices: Sequence[str]) -> str:
  if value not in choices:
    raise ValueError(f"{key}: expected {' or '.join(repr(c) for c in choices)}, got {value!r}")
  return value


FRAME_KEYS = ("num_frames", "image_size", "visual_layout", "augment")


def frame_options(options: dict[str, str], num_frames: int, *, prefix: str = "",
                  layout_key: str = "visual_layout", **fixed) -> frames.FrameOptions:
  """`FrameOptions` from pipeline options `num_frames`, `image_size`, `<layout_key>`, `augment`.

  `prefix` selects a second set of keys (e.g. `"flow_"`: `flow_num_frames`, ...);
  `num_frames` is the default K; `fixed` are further `FrameOptions` fields.
  """
  get = lambda key, default: options.get(prefix + key, default)
  return frames.FrameOptions(
      num_frames=as_int(prefix + "num_frames", get("num_frames", str(num_frames))),
      image_size=as_int(prefix + "image_size", get("image_size", "224")),
      layout=options.get(layout_key, "frames"),
      augment=as_bool(prefix + "augment", get("augment", "true")), **fixed)


# ----------------------------------------------------------------------------- plain pickles


# The only globals a plain pickle of numpy arrays, dicts, lists and strings refers to:
# numpy's array / scalar / dtype reconstruction (numpy 1.x `numpy.core`, 2.x `numpy._core`),
# `_codecs.encode` (how protocol 2 stores bytes) and `collections.OrderedDict`.
_PLAIN_GLOBALS = {
    ("numpy", "ndarray"), ("numpy", "dtype"), ("_codecs", "encode"),
    ("collections", "OrderedDict"),
    ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "scalar"), ("numpy._core.multiarray", "scalar"),
    ("numpy.core.numeric", "_frombuffer"), ("numpy._core.numeric", "_frombuffer"),
}


class _PlainUnpickler(pickle.Unpickler):
  """Rebuilds numpy arrays / scalars, dicts, lists, tuples, str, bytes and numbers, nothing else."""

  def find_class(self, module, name):
    if (module, name) not in _PLAIN_GLOBALS:
      raise pickle.UnpicklingError(
          f"refusing to load {module}.{name}: only numpy arrays, dicts, lists, strings and "
          f"numbers are accepted (unpickling anything else could run code)")
    if module.startswith("numpy.core."):  # numpy 2 warns on the old name; same objects.
      module = "numpy._core." + module[len("numpy.core."):]
    return super().find_class(module, name)


def read_plain_pickle(path: str | os.PathLike, what: str = "data") -> Any:
  """A pickle of plain data (numpy arrays, dicts, lists, str, bytes, numbers), read safely.

  Any other object (a class instance, a function, ...) stops the load before it is built,
  so a pickle cannot run code. Python 2 pickles load too (str as latin-1).

  Raises:
    ManualDirError: the file is missing, truncated, not a pickle, or refers to anything
      but plain data; the message names the file (`what`: what it should hold).
  """
  path = os.fspath(path)
  try:
    with open(path, "rb") as f:
      return _PlainUnpickler(f, encoding="latin1").load()
  except FileNotFoundError:
    raise ManualDirError(f"{path}: missing; expected {what}") from None
  except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError,
          ImportError, IndexError, KeyError, MemoryError) as e:
    raise ManualDirError(f"{path}: not a readable pickle of {what} "
                         f"({type(e).__name__}: {e})") from None


# ----------------------------------------------------------------------------- base builder


class ManualBuilder(_builder.ArrayRecordBuilder, skip_registration=True):
  """Base of the builders reading `<manual_dir>/<MANUAL_NAME>/`.

  Builder arguments: `config` (a preset name, optionally followed by pipeline options
  `:key=value,...` with keys `PIPELINE_KEYS`; they are in `self.pipeline_options`),
  `manual_dir` (instead of TFDS's `<data_dir>/downloads/manual`) and
  `max_skipped_fraction` (default 0.05).

  Subclasses set `MANUAL_NAME` (the subdirectory), `MANUAL_MARKER` (a path relative to
  the data set's root whose presence in `<manual_dir>` itself means the files lie there
  directly), `MANUAL_EXAMPLE` (what the error for an empty manual dir says to put there)
  and `PIPELINE_KEYS`.
  """

  MANUAL_NAME = ""
  MANUAL_MARKER = ""
  MANUAL_EXAMPLE = ""
  PIPELINE_KEYS: tuple[str, ...] = ()

  def __init__(self, *, config=None, manual_dir=None, max_skipped_fraction: float = 0.05,
               **kwargs):
    config, options = parse_config(config, self.PIPELINE_KEYS)
    if not 0.0 <= max_skipped_fraction <= 1.0:
      raise ValueError(f"max_skipped_fraction: expected a value in [0, 1], got "
                       f"{max_skipped_fraction}")
    self._manual_dir_arg = manual_dir
    self._max_skipped_fraction = max_skipped_fraction
    self.pipeline_options = options
    super().__init__(config=config, **kwargs)

  def download_and_prepare(self, *, download_config=None, **kwargs):
    if self._manual_dir_arg is not None:
      download_config = download_config or tfds.download.DownloadConfig()
      if download_config.manual_dir is None:
        download_config = dataclasses.replace(download_config, manual_dir=self._manual_dir_arg)
    return super().download_and_prepare(download_config=download_config, **kwargs)

  def _root(self, dl_manager) -> str:
    """`<manual_dir>/<MANUAL_NAME>`, or `<manual_dir>` when it holds `MANUAL_MARKER` itself."""
    try:
      manual = os.fspath(dl_manager.manual_dir)
    except AssertionError:
      where = dl_manager._manual_dir  # pylint: disable=protected-access
      raise ManualDirError(
          f"{where}: the manual directory is missing or empty; expected "
          f"{self.MANUAL_EXAMPLE} etc. there (or pass manual_dir=). Layout:\n"
          f"{textwrap.dedent(self.MANUAL_DOWNLOAD_INSTRUCTIONS)}") from None
    nested = os.path.join(manual, self.MANUAL_NAME)
    if os.path.exists(os.path.join(nested, self.MANUAL_MARKER)):
      return nested
    if os.path.exists(os.path.join(manual, self.MANUAL_MARKER)):
      return manual
    return nested if os.path.isdir(nested) else manual

  def _start_metadata(self, root: str):
    self.info.metadata["skipped"] = {}
    self.info.metadata["skipped_examples"] = {}
    self.info.metadata["manual_dir"] = root

  def _record_skips(self, split: str, skips: Skips | dict[str, list[str]], total: int):
    """Adds a split's skips to the metadata; an error when more than the allowed fraction."""
    by_reason = skips.by_reason if isinstance(skips, Skips) else skips
    skipped = self.info.metadata["skipped"].setdefault(split, {})
    shown = self.info.metadata["skipped_examples"].setdefault(split, {})
    for reason, entries in by_reason.items():
      skipped[reason] = skipped.get(reason, 0) + len(entries)
      shown[reason] = (shown.get(reason, []) + entries)[:SHOWN_PER_REASON]
      log.warning("%s %s: skipped %d clips (%s), e.g. %s", self.MANUAL_NAME, split, len(entries),
                  reason, entries[0])
    count = sum(skipped.values())
    if count > self._max_skipped_fraction * total or count == total:
      detail = "; ".join(f"{n} x {r} (e.g. {shown[r][0]})" for r, n in skipped.items())
      raise ManualDirError(f"{self.MANUAL_NAME} {split}: {count} of {total} clips skipped, more "
                           f"than max_skipped_fraction={self._max_skipped_fraction}: {detail}")


class AudioVisualBuilder(ManualBuilder, skip_registration=True):
  """A `ManualBuilder` for audio + frames: its pipeline options choose the frames
  (`frame_options`, ``DEFAULT_NUM_FRAMES`` by default) and the audio layout (``audio_layout``:
  ``sequence`` ``[T, F]`` or ``image`` ``[T, F, 1]``)."""

  DEFAULT_MAX_SKIPPED = 0.05
  DEFAULT_NUM_FRAMES = 3

  def __init__(self, *, config=None, manual_dir=None, max_skipped_fraction: float | None = None,
               **kwargs):
    if max_skipped_fraction is None:
      max_skipped_fraction = self.DEFAULT_MAX_SKIPPED
    super().__init__(config=config, manual_dir=manual_dir,
                     max_skipped_fraction=max_skipped_fraction, **kwargs)
    options = self.pipeline_options
    self.frame_options = frame_options(options, self.default_num_frames())
    self.audio_layout = as_choice("audio_layout", options.get("audio_layout", "sequence"),
                                  ("sequence", "image"))

  def default_num_frames(self) -> int:
    return self.DEFAULT_NUM_FRAMES
