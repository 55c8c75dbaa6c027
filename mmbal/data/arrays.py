"""TFDS builder `arrays`: your own multimodal data, from the arrays you already hold.

  mmbal train data.name=arrays data.path=/my/views.npz

`data.path` (the builder's `path=`) is one of, detected from what it is:

* **a `.npz` file**: one array per modality ``[N, ...]`` (the example axis first) plus
  ``label`` ``[N]``;
* **a folder with `train.npz` and `test.npz`** (and optionally `validation.npz`) in that
  layout: the splits are yours;
* **a MATLAB `.mat` multi-view file** (v7 or older; v7.3 is HDF5, save it with ``-v7`` or
  convert it to `.npz`), the layouts of the multi-view benchmark collections: the views as a
  cell array ``X`` (``1 x V`` or ``V x 1``; modalities ``view1..viewV``) or as ``x1..xV`` /
  ``X1..XV`` (modalities named by their keys), the labels as ``gt``, ``gnd``, ``Y``, ``y``,
  ``truth``, ``label`` or ``labels``. Each view may be stored examples x features or features
  x examples: the axis whose length is the number of labels is the example axis (when both
  are, rows are examples); what was found is recorded in ``info.metadata["layout"]``;
* **a folder of CSV files**, one per view (``<view>.csv``, one example per row, an optional
  header row) plus ``label.csv`` (or ``labels.csv``; one label per row, an optional header
  ``label``, ``labels``, ``class``, ``y`` or ``target``).

Labels are integers (MATLAB's ``1..K`` is shifted to ``0..K-1``, and recorded) or, in CSV,
class names (sorted, recorded). A single file is split into a stratified ``test_fraction``
(default 0.2, seed ``split_seed`` 0) and train; validation is then carved from train by
`mmbal.data.load` (``data.val_fraction``), unless the folder holds `validation.npz`.

Everything is checked before anything is written, with errors naming the file and key: the
same number of examples in every array, finite values, integer labels in range, non-empty
splits. Each modality is standardised with the TRAIN split's mean and standard deviation (per
feature for vectors ``[N, D]``, per channel, the last axis, otherwise; constant features are
only centred; statistics in ``info.metadata["standardisation"]``); ``standardize=false``
keeps the values as they are. Options go in ``data.builder_config``, e.g.
``"test_fraction=0.3,standardize=false"``. Each input file (path, size, modification time)
and option set gets its own build directory, so editing the file rebuilds.
"""
from __future__ import annotations

import glob
import hashlib
import os
import re

import numpy as np
import tensorflow_datasets as tfds

from mmbal.data import _builder
from mmbal.data import _split
from mmbal.data import manual

OPTION_KEYS = ("test_fraction", "split_seed", "standardize")
LABEL_KEYS = ("label", "labels", "gt", "gnd", "Y", "y", "truth")
_VIEW_KEY = re.compile(r"^[xX](\d+)$")


class ArraysError(ValueError):
  """Input arrays that cannot be used, naming the file and key."""


# ----------------------------------------------------------------------------- reading


def read_npz(path: str) -> dict[str, np.ndarray]:
  try:
    with np.load(path, allow_pickle=False) as z:
      return {k: z[k] for k in z.files}
  except FileNotFoundError:
    raise ArraysError(f"{path}: no such file") from None
  except Exception as e:  # a damaged or pickled archive
    raise ArraysError(f"{path}: not a readable .npz archive ({type(e).__name__}: {e})") from None


def read_mat(path: str) -> tuple[dict[str, np.ndarray], dict]:
  """``({modality: array as stored}, layout notes)`` and the labels under ``"label"``."""
  import scipy.io  # pylint: disable=import-outside-toplevel
  import scipy.sparse  # pylint: disable=import-outside-toplevel
  try:
    mat = scipy.io.loadmat(path)
  except NotImplementedError:
    raise ArraysError(f"{path}: a MATLAB v7.3 (HDF5) file; save it with -v7 "
                      f"(save(f, ..., '-v7')) or convert it to .npz") from None
  except Exception as e:
    raise ArraysError(f"{path}: not a readable .mat file ({type(e).__name__}: {e})") from None
  dense = lambda a: a.toarray() if scipy.sparse.issparse(a) else np.asarray(a)
  keys = [k for k in mat if not k.startswith("__")]
  label_key = next((k for k in LABEL_KEYS if k in mat), None)
  if label_key is None:
    raise ArraysError(f"{path}: no labels; expected one of {list(LABEL_KEYS)}, found {keys}")
  views = {}
  cell = next((k for k in ("X", "data", "fea") if k in mat and mat[k].dtype == object), None)
  if cell is not None:
    views = {f"view{i + 1}": dense(v) for i, v in enumerate(mat[cell].reshape(-1))}
    source = f"cell array {cell!r} ({'x'.join(map(str, mat[cell].shape))})"
  else:
    numbered = sorted((int(_VIEW_KEY.match(k)[1]), k) for k in keys if _VIEW_KEY.match(k))
    views = {k: dense(mat[k]) for _, k in numbered}
    source = f"keys {[k for _, k in numbered]}"
  if not views:
    raise ArraysError(f"{path}: no views; expected a cell array 'X' or keys x1..xV / X1..XV, "
                      f"found {keys}")
  views["label"] = dense(mat[label_key])
  return views, dict(views=source, label_key=label_key)


def read_csv_folder(folder: str) -> dict[str, np.ndarray]:
  files = sorted(glob.glob(os.path.join(folder, "*.csv")))
  label_file = next((f for f in files if os.path.basename(f) in ("label.csv", "labels.csv")), None)
  if label_file is None:
    raise ArraysError(f"{folder}: no label.csv (or labels.csv) beside the view CSVs "
                      f"{[os.path.basename(f) for f in files]}")
  out = {}
  for f in files:
    rows = [r for _, r in manual.read_lines(f, "CSV rows")]
    cells = [r.split(",") for r in rows if r.strip()]
    name = "label" if f == label_file else os.path.splitext(os.path.basename(f))[0]
    header = (cells[0][0].strip().lower() in ("label", "labels", "class", "y", "target")
              if name == "label" else not _numeric(cells[0]) and len(cells) > 1 and _numeric(cells[1]))
    cells = cells[1:] if cells and header else cells
    if name == "label":
      out[name] = np.array([c[0].strip() for c in cells])
      continue
    try:
      out[name] = np.array([[float(x) for x in c] for c in cells], np.float64)
    except ValueError as e:
      raise ArraysError(f"{f}: expected numbers in every row after an optional header ({e})") from None
  return out


def _numeric(cells) -> bool:
  try:
    [float(x) for x in cells]
    return True
  except ValueError:
    return False


# ----------------------------------------------------------------------------- checks


def labels_of(raw, where: str, class_names=None, *, matlab: bool = False) -> tuple[np.ndarray, list | None, str]:
  """``(int labels [N], class names or None, how they were read)``. Integer labels are kept
  (``matlab``: ``1..K`` is shifted to ``0..K-1``); text labels are class names, sorted, or
  looked up in ``class_names`` (the train split's)."""
  raw = np.asarray(raw)
  if raw.ndim == 2 and 1 in raw.shape:   # a MATLAB column or row vector
    raw = raw.reshape(-1)
  if raw.ndim != 1:
    raise ArraysError(f"{where}: expected one label per example, got shape {raw.shape}")
  if raw.dtype.kind in "US" and not _numeric(raw.tolist()):
    names = class_names or sorted(set(raw.tolist()))
    unknown = sorted(set(raw.tolist()) - set(names))
    if unknown:
      raise ArraysError(f"{where}: classes {unknown[:5]} are not among the train split's {names}")
    return np.array([names.index(x) for x in raw.tolist()], np.int64), names, "class names, sorted"
  if raw.dtype.kind in "US":
    raw = raw.astype(np.float64)
  if raw.dtype.kind not in "iuf":
    raise ArraysError(f"{where}: expected integer class labels, got {raw.dtype} values")
  bad = ~np.isfinite(raw) | (raw != np.round(raw)) if raw.dtype.kind == "f" else np.zeros(len(raw), bool)
  if bad.any():
    raise ArraysError(f"{where}: expected integer class labels, found {raw[bad][:3].tolist()} "
                      f"(the first at example {int(np.flatnonzero(bad)[0])})")
  labels, how = raw.astype(np.int64), "integers"
  if matlab and len(labels) and labels.min() == 1:
    labels, how = labels - 1, "1..K shifted to 0..K-1 (MATLAB convention)"
  if len(labels) and labels.min() < 0:
    raise ArraysError(f"{where}: expected labels >= 0, found {labels.min()}")
  return labels, None, how


def examples_first(name: str, array: np.ndarray, n: int, where: str) -> tuple[np.ndarray, str]:
  """The array with its example axis first; `.mat` views may be stored features x examples."""
  if array.ndim >= 1 and array.shape[0] == n:
    return array, "examples x features" if array.ndim == 2 else "examples first"
  if array.ndim == 2 and array.shape[1] == n:
    return array.T, "features x examples (transposed)"
  raise ArraysError(f"{where}: '{name}' has shape {array.shape}, but there are {n} labels; "
                    f"expected {n} examples on its first axis" +
                    (" (or its second, for a matrix)" if array.ndim == 2 else ""))


def checked(arrays: dict[str, np.ndarray], where: str, class_names=None, matlab=False):
  """``(modalities {name: float64 [N, ...]}, labels [N], class names or None, notes)``,
  checked (``matlab``: views may be stored features x examples, labels may be 1..K)."""
  if "label" not in arrays:
    raise ArraysError(f"{where}: no 'label' array; found {sorted(arrays)}")
  labels, names, how = labels_of(arrays["label"], f"{where} 'label'", class_names, matlab=matlab)
  modalities, notes = {}, dict(labels=how)
  for name, array in arrays.items():
    if name == "label":
      continue
    if np.asarray(array).dtype.kind not in "biuf":
      raise ArraysError(f"{where}: '{name}' holds {np.asarray(array).dtype} values; expected numbers")
    array = np.asarray(array, np.float64)
    if matlab:
      array, notes[name] = examples_first(name, array, len(labels), where)
    elif array.ndim < 1 or array.shape[0] != len(labels):
      raise ArraysError(f"{where}: '{name}' has shape {array.shape}; expected {len(labels)} "
                        f"examples (one per label) on its first axis")
    if array.ndim == 1:
      array = array[:, None]
    bad = ~np.isfinite(array.reshape(len(array), -1)).all(axis=1)
    if bad.any():
      raise ArraysError(f"{where}: '{name}' has NaN or inf values in {int(bad.sum())} examples "
                        f"(the first: example {int(np.flatnonzero(bad)[0])})")
    modalities[name] = array
  if not modalities:
    raise ArraysError(f"{where}: no modality arrays beside 'label'")
  return modalities, labels, names, notes


def standardisation(train: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
  """Train mean and std per feature (vectors) or per channel (the last axis)."""
  axes = tuple(range(train.ndim - 1)) if train.ndim > 2 else (0,)
  mean, std = train.mean(axis=axes), train.std(axis=axes)
  return mean, np.where(std > 0, std, 1.0)


def options_of(config) -> dict:
  text = config if isinstance(config, str) else ""
  _, options = manual.parse_config(":" + text.lstrip(":") if text else None, OPTION_KEYS)
  out = dict(split_seed=manual.as_int("split_seed", options.get("split_seed", "0")),
             standardize=manual.as_bool("standardize", options.get("standardize", "true")))
  try:
    out["test_fraction"] = float(options.get("test_fraction", "0.2"))
  except ValueError:
    raise ValueError(f"test_fraction: expected a number, got {options['test_fraction']!r}") from None
  if not 0.0 < out["test_fraction"] < 1.0:
    raise ValueError(f"test_fraction: expected a value in (0, 1), got {out['test_fraction']}")
  return out


# ----------------------------------------------------------------------------- builder


class Arrays(_builder.ArrayRecordBuilder):
  """Multimodal arrays from a `.npz`, a folder of per-split `.npz`, a `.mat` or CSVs."""

  VERSION = tfds.core.Version("1.0.0")
  RELEASE_NOTES = {"1.0.0": ".npz, per-split .npz, .mat multi-view and CSV-per-view inputs."}

  def __init__(self, *, path: str | None = None, config=None, **kwargs):
    if not path:
      raise ValueError("data.path: the arrays builder needs the file or folder to read "
                       "(a .npz, a folder of train/test .npz or of CSVs, or a .mat)")
    self.path = os.path.abspath(os.path.expanduser(os.fspath(path)))
    if not os.path.exists(self.path):
      raise ValueError(f"data.path: {self.path} does not exist")
    self.options = options_of(config)
    self._data = self._read()
    super().__init__(config=tfds.core.BuilderConfig(name=self._build_name(),
                                                    description=f"arrays from {self.path}"),
                     **kwargs)

  def _build_name(self) -> str:
    """Per input (path, size, modification time of each file) and options."""
    files = sorted(glob.glob(os.path.join(self.path, "*"))) if os.path.isdir(self.path) else [self.path]
    stamp = repr([(f, os.path.getsize(f), os.path.getmtime(f)) for f in files] + [self.options])
    stem = re.sub(r"[^a-z0-9]+", "_", os.path.basename(self.path.rstrip("/")).lower()).strip("_")
    return f"{stem or 'data'}_{hashlib.sha1(stamp.encode()).hexdigest()[:10]}"

  def _read(self) -> dict:
    """Every split's checked arrays, and how the input was read (nothing is written yet)."""
    p, layout = self.path, {}
    if os.path.isdir(p) and os.path.exists(os.path.join(p, "train.npz")):
      if not os.path.exists(os.path.join(p, "test.npz")):
        raise ArraysError(f"{p}: train.npz without test.npz")
      splits = {}
      for split in ("train", "validation", "test"):
        f = os.path.join(p, f"{split}.npz")
        if os.path.exists(f):
          names = splits["train"][2] if split != "train" else None
          splits[split] = checked(read_npz(f), f, names)
      layout = dict(input="a .npz per split", splits=sorted(splits))
      self._check_same_modalities(splits)
      return self._standardised({k: v[:2] for k, v in splits.items()}, splits["train"][2],
                                dict(layout, **splits["train"][3]))
    if os.path.isdir(p):
      if not glob.glob(os.path.join(p, "*.csv")):
        raise ArraysError(f"{p}: expected train.npz + test.npz or one CSV per view + label.csv")
      modalities, labels, names, notes = checked(read_csv_folder(p), p)
      layout = dict(input="one CSV per view", **notes)
    elif p.endswith(".mat"):
      arrays, layout = read_mat(p)
      modalities, labels, names, notes = checked(arrays, p, matlab=True)
      layout = dict(input="MATLAB multi-view file", **layout, **notes)
    elif p.endswith(".npz"):
      modalities, labels, names, notes = checked(read_npz(p), p)
      layout = dict(input="one .npz", **notes)
    else:
      raise ArraysError(f"{p}: expected a .npz or .mat file, or a folder")
    test, train = _split.stratified_split(labels, self._num_test(len(labels), p),
                                          self.options["split_seed"])
    take = lambda idx: ({k: v[idx] for k, v in modalities.items()}, labels[idx])
    layout["split"] = (f"stratified: test_fraction={self.options['test_fraction']}, "
                       f"split_seed={self.options['split_seed']}")
    return self._standardised({"train": take(train), "test": take(test)}, names, layout)

  def _num_test(self, n: int, where: str) -> int:
    num_test = int(round(self.options["test_fraction"] * n))
    if not 0 < num_test < n:
      raise ArraysError(f"{where}: test_fraction={self.options['test_fraction']} of {n} examples "
                        f"leaves an empty split")
    return num_test

  @staticmethod
  def _check_same_modalities(splits: dict):
    shapes = {s: {k: v.shape[1:] for k, v in m[0].items()} for s, m in splits.items()}
    if any(v != shapes["train"] for v in shapes.values()):
      raise ArraysError(f"the splits' modalities differ (name: per-example shape): {shapes}")

  def _standardised(self, splits: dict, class_names: list[str] | None, layout: dict) -> dict:
    stats = {}
    if self.options["standardize"]:
      for m, train in splits["train"][0].items():
        mean, std = standardisation(train)
        stats[m] = dict(mean=mean.tolist(), std=std.tolist())
        for modalities, _ in splits.values():
          modalities[m] = (modalities[m] - mean) / std
    if class_names is None:   # integer labels: classes 0..max over every split
      class_names = [str(i) for i in range(1 + max(int(l.max()) for _, l in splits.values()))]
    return dict(splits=splits, class_names=class_names, layout=layout, stats=stats)

  def _info(self) -> tfds.core.DatasetInfo:
    modalities = self._data["splits"]["train"][0]
    features = {m: tfds.features.Tensor(shape=a.shape[1:], dtype=np.float32)
                for m, a in modalities.items()}
    features["label"] = tfds.features.ClassLabel(names=self._data["class_names"])
    return tfds.core.DatasetInfo(
        builder=self, description=f"arrays read from {self.path}",
        features=tfds.features.FeaturesDict(features),
        metadata=tfds.core.MetadataDict(
            modalities=list(modalities), path=self.path, options=self.options,
            layout=self._data["layout"], standardisation=self._data["stats"]))

  def _split_generators(self, dl_manager):
    del dl_manager  # the input is read in __init__ (checked before anything is built)
    return {split: self._generate_examples(*arrays) for split, arrays in self._data["splits"].items()}

  def _generate_examples(self, modalities, labels):
    for i, label in enumerate(labels):
      yield i, dict({m: a[i].astype(np.float32) for m, a in modalities.items()}, label=int(label))
