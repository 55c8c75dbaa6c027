"""Precomputed embeddings for the image-text data sets, and the common base of their builders.

The image-text sets (Hateful Memes, UPMC Food-101, MM-IMDb) are trained on embeddings
from a frozen encoder the user already has (CLIP, BERT, a ResNet, ...): the builders
read the upstream metadata (ids, labels, splits, raw text) in its own layout and the
user's embeddings, in one format, from `<manual_dir>/<data set>/embeddings/`:

    embeddings/ids.txt     one example id per line (UTF-8); line i names row i below
    embeddings/image.npy   float array [N, D_image] (float16, float32 or float64)
    embeddings/text.npy    float array [N, D_text]  (any D; the two may differ)

or, instead of those three files, one `embeddings/embeddings.npz` holding the arrays
`ids` ([N] strings or integers), `image` and `text` (as above). The ids are each data
set's own example ids (the builder's docstring says which); ids consisting of digits
match regardless of leading zeros (`1235` = `01235`). Rows for ids the data set does not
use are ignored. Writing them from any encoder:

    ids = [...]                                    # the data set's example ids
    np.save("embeddings/image.npy", np.stack([image_encoder(x) for x in images]))
    np.save("embeddings/text.npy", np.stack([text_encoder(t) for t in texts]))
    open("embeddings/ids.txt", "w").write("".join(f"{i}\\n" for i in ids))

Checks, before any example is written: the files exist and load (`.npy` without
pickle), the arrays are 2-D floating-point with one row per id, the ids are non-empty
and unique; every used row is finite (an error names the file, the id and the row).
An example whose id has no row is skipped and counted as `missing embedding` (more than
`max_skipped_fraction` of a split is an error naming the ids file and the first ids).

Stored per example: `image` and `text` (float32 vectors, the model inputs: vector
modalities for mmbal's MLP encoders), `label`, `id`, `raw_text` (the upstream text, not
used in training) and `image_file` (the image's path in the upstream layout).
`info.metadata["shapes"]` holds the embedding widths.
"""

from __future__ import annotations

import dataclasses
import os
import sys
from typing import Any, Sequence

import numpy as np
import tensorflow_datasets as tfds

from mmbal.data import manual
from mmbal.data.manual import ManualDirError

EMBEDDINGS_DIR = "embeddings"
MODALITIES = ("image", "text")
_CHUNK = 4096  # Rows per read in the finiteness check.


def normalize_id(value) -> str:
  """An example id as a string; ids of digits lose their leading zeros (`"01235"` -> `"1235"`)."""
  if isinstance(value, bytes):
    value = value.decode("utf-8")
  if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
    return str(int(value))
  text = str(value).strip()
  return str(int(text)) if text.isascii() and text.isdigit() else text


@dataclasses.dataclass
class Example:
  """One example of the upstream metadata.

  Attributes:
    id: the stored id (as upstream writes it).
    keys: normalized ids to look up in the embeddings, first match wins.
    label: a class index, or a multi-hot int32 vector.
    raw_text: the upstream text (not a model input).
    image_file: the image's path relative to the data set's directory.
  """

  id: str
  keys: tuple[str, ...]
  label: Any
  raw_text: str = ""
  image_file: str = ""


@dataclasses.dataclass
class Embeddings:
  """Embedding rows by id. `arrays[m]` is any row-indexable `[N, D]` array (npy memmap, h5py)."""

  ids: list[str]
  arrays: dict[str, Any]
  files: dict[str, str]  # "ids" and each modality -> the file, for messages.

  def __post_init__(self):
    self.index = {normalize_id(i): r for r, i in enumerate(self.ids)}

  @property
  def dims(self) -> dict[str, int]:
    return {m: int(a.shape[1]) for m, a in self.arrays.items()}

  def row(self, keys: Sequence[str]) -> int | None:
    for key in keys:
      if key in self.index:
        return self.index[key]
    return None

  def check_finite(self, rows: dict[int, str]):
    """Raises ManualDirError for the first used row (`row -> example id`) with a NaN or inf."""
    used = np.zeros(len(self.ids), dtype=bool)
    used[list(rows)] = True
    for m, array in self.arrays.items():
      for start in range(0, len(self.ids), _CHUNK):
        mask = used[start:start + _CHUNK]
        if not mask.any():
          continue
        block = np.asarray(array[start:start + _CHUNK])
        bad = np.flatnonzero(mask & ~np.isfinite(block).all(axis=1))
        if bad.size:
          r = start + int(bad[0])
          raise ManualDirError(
              f"{self.files[m]}: the {m} embedding of id {rows[r]} (row {r}) has NaN or inf "
              f"values ({bad.size} such used rows in rows {start}-{start + len(mask) - 1})")

  def vector(self, modality: str, row: int) -> np.ndarray:
    return np.asarray(self.arrays[modality][row], dtype=np.float32)


def embedding_problems(directory: str) -> list[str]:
  """What is missing from an embeddings directory (empty when its files are all there)."""
  npz = os.path.join(directory, "embeddings.npz")
  files = [os.path.join(directory, n) for n in ("ids.txt", "image.npy", "text.npy")]
  if os.path.isfile(npz):
    if any(os.path.exists(f) for f in files):
      return [f"{directory}: holds both embeddings.npz and ids.txt / image.npy / text.npy; "
              f"expected one of the two forms"]
    return []
  if not os.path.isdir(directory):
    return [f"{directory}: missing; expected the precomputed embeddings there: ids.txt, "
            f"image.npy and text.npy (or embeddings.npz with arrays ids, image, text)"]
  missing = [f for f in files if not os.path.isfile(f)]
  return [f"{f}: missing; expected {_WHAT[os.path.basename(f)]} (or one embeddings.npz "
          f"with arrays ids, image, text)" for f in missing]


_WHAT = {"ids.txt": "one example id per line, line i naming row i of image.npy and text.npy",
         "image.npy": "a float array [N, D_image] of image embeddings, row i for line i "
                      "of ids.txt",
         "text.npy": "a float array [N, D_text] of text embeddings, row i for line i of ids.txt"}


def _read_ids_txt(path: str) -> list[str]:
  try:
    with open(path, "rb") as f:
      text = f.read().decode("utf-8-sig")
  except UnicodeDecodeError as e:
    raise ManualDirError(f"{path}: expected a UTF-8 text file of ids, one per line ({e})") from None
  lines = [line.strip() for line in text.splitlines()]
  while lines and not lines[-1]:
    lines.pop()
  for lineno, line in enumerate(lines, 1):
    if not line:
      raise ManualDirError(f"{path}:{lineno}: empty line; expected one id per line, line i "
                           f"naming row i of the embedding arrays")
  return lines


def _checked_array(array, path: str, name: str, num_ids: int, ids_file: str):
  if array.ndim != 2 or array.shape[1] < 1:
    raise ManualDirError(f"{path}: expected a 2-D array [N, D] of {name} embeddings, got shape "
                         f"{array.shape}")
  if array.dtype.kind != "f":
    raise ManualDirError(f"{path}: expected float {name} embeddings (float16, float32 or "
                         f"float64), got dtype {array.dtype}")
  if array.shape[0] != num_ids:
    raise ManualDirError(f"{path}: {array.shape[0]} rows, but {ids_file} has {num_ids} ids; "
                         f"expected one row per id")
  return array


def read_embeddings(directory: str) -> Embeddings:
  """The embeddings in `directory` (see the module doc); raises ManualDirError if malformed."""
  problems = embedding_problems(directory)
  if problems:
    raise ManualDirError("\n".join(problems))
  npz = os.path.join(directory, "embeddings.npz")
  if os.path.isfile(npz):
    try:
      with np.load(npz, allow_pickle=False) as z:
        missing = [k for k in ("ids",) + MODALITIES if k not in z.files]
        if missing:
          raise ManualDirError(f"{npz}: no array {missing}; expected arrays ids, image, text "
                               f"(found {sorted(z.files)})")
        raw = {k: z[k] for k in ("ids",) + MODALITIES}
    except ManualDirError:
      raise
    except Exception as e:  # Not a zip, an object array (needs pickle), ...
      raise ManualDirError(f"{npz}: not a readable .npz of plain arrays "
                           f"({type(e).__name__}: {e})") from None
    ids_array = raw["ids"]
    if ids_array.ndim != 1 or ids_array.dtype.kind not in "USiu":
      raise ManualDirError(f"{npz}: ids: expected a 1-D array of strings or integers, got "
                           f"{ids_array.dtype} {ids_array.shape}")
    ids = [normalize_id(i) if ids_array.dtype.kind in "iu" else
           (i.decode("utf-8") if isinstance(i, bytes) else str(i)).strip()
           for i in ids_array.tolist()]
    for row, i in enumerate(ids):
      if not i:
        raise ManualDirError(f"{npz}: ids[{row}] is empty")
    files = {"ids": f"{npz} (ids)", **{m: f"{npz} ({m})" for m in MODALITIES}}
    arrays = {m: _checked_array(raw[m], files[m], m, len(ids), files["ids"]) for m in MODALITIES}
    where = lambda row: f"{npz}: ids[{row}]"
  else:
    ids_txt = os.path.join(directory, "ids.txt")
    ids = _read_ids_txt(ids_txt)
    files = {"ids": ids_txt, **{m: os.path.join(directory, m + ".npy") for m in MODALITIES}}
    arrays = {}
    for m in MODALITIES:
      try:
        array = np.load(files[m], mmap_mode="r", allow_pickle=False)
      except Exception as e:
        raise ManualDirError(f"{files[m]}: not a readable .npy file ({type(e).__name__}: "
                             f"{e})") from None
      arrays[m] = _checked_array(array, files[m], m, len(ids), ids_txt)
    where = lambda row: f"{ids_txt}:{row + 1}"
  if not ids:
    raise ManualDirError(f"{files['ids']}: no ids")
  seen = {}
  for row, i in enumerate(ids):
    key = normalize_id(i)
    if key in seen:
      raise ManualDirError(f"{where(row)}: id {i!r} repeats {where(seen[key])}; expected "
                           f"unique ids")
    seen[key] = row
  return Embeddings(ids=ids, arrays=arrays, files=files)


# ----------------------------------------------------------------------------- builder


class ImageTextBuilder(manual.ManualBuilder, skip_registration=True):
  """Base of the image-text builders: upstream metadata + the user's embeddings.

  Subclasses define `_label_feature()`, `_layout_problems(root)` (missing metadata files),
  `_read_examples(root)` -> `({split: [Example]}, validation info)` and the class
  attributes `CLASS_NAMES`, `TASK`, `HOMEPAGE`, `CITATION`, `LICENSE`; `_embeddings(root)`
  may be overridden (default: `<root>/embeddings/`).
  """

  CLASS_NAMES: tuple[str, ...] = ()
  TASK = "classification"
  HOMEPAGE = ""
  CITATION = ""
  LICENSE = ""

  def _label_feature(self):
    return tfds.features.ClassLabel(names=list(self.CLASS_NAMES))

  def _info(self) -> tfds.core.DatasetInfo:
    features = {
        "id": tfds.features.Text(),
        "label": self._label_feature(),
        "image": tfds.features.Tensor(shape=(None,), dtype=np.float32),
        "text": tfds.features.Tensor(shape=(None,), dtype=np.float32),
        "raw_text": tfds.features.Text(),
        "image_file": tfds.features.Text(),
    }
    return tfds.core.DatasetInfo(
        builder=self,
        description=sys.modules[type(self).__module__].__doc__,
        features=tfds.features.FeaturesDict(features),
        homepage=self.HOMEPAGE,
        citation=self.CITATION,
        license=self.LICENSE,
        metadata=tfds.core.MetadataDict(modalities=list(MODALITIES), task=self.TASK,
                                        class_names=list(self.CLASS_NAMES)),
    )

  # ---------------------------------------------------------------- to override

  def _layout_problems(self, root: str) -> list[str]:
    raise NotImplementedError

  def _read_examples(self, root: str) -> tuple[dict[str, list[Example]], dict[str, Any]]:
    raise NotImplementedError

  def _embeddings_dir(self, root: str) -> str | None:
    """Where the embeddings are read from; None when the config has its own (`_embeddings`)."""
    return os.path.join(root, EMBEDDINGS_DIR)

  def _embeddings(self, root: str) -> Embeddings:
    return read_embeddings(self._embeddings_dir(root))

  # ---------------------------------------------------------------- generation

  def _skip(self, split: str, key: str, problem: str):
    """Skips an example while reading the metadata (`problem`: `"reason: detail"`); counted
    with the split's other skips against `max_skipped_fraction`."""
    self._pending_skips.setdefault(split, manual.Skips()).add(key, problem)

  def _filtered(self, split: str, reason: str, count: int = 1):
    """Counts examples left out by design (not missing data) in `info.metadata["filtered"]`."""
    per_split = self.info.metadata.setdefault("filtered", {}).setdefault(split, {})
    per_split[reason] = per_split.get(reason, 0) + count

  def _split_generators(self, dl_manager):
    root = self._root(dl_manager)
    problems = self._layout_problems(root)
    directory = self._embeddings_dir(root)
    if directory is not None:
      problems += embedding_problems(directory)
    if problems:
      raise ManualDirError(f"{self.MANUAL_NAME} manual directory {root} is incomplete:\n  " +
                           "\n  ".join(problems))
    self._start_metadata(root)
    self.info.metadata["filtered"] = {}
    self._pending_skips = {}
    # Embedding files are checked before the (possibly many) metadata files are read.
    embeddings = self._embeddings(root) if directory is not None else None
    examples, validation = self._read_examples(root)
    embeddings = embeddings or self._embeddings(root)
    self.info.metadata["validation"] = validation
    plan, used = {}, {}
    for split, split_examples in examples.items():
      skips, kept = self._pending_skips.pop(split, manual.Skips()), []
      total = len(split_examples) + len(skips)
      for ex in split_examples:
        row = embeddings.row(ex.keys)
        if row is None:
          skips.add(ex.id, f"missing embedding: id {ex.keys[0]} is not in {embeddings.files['ids']}")
        else:
          kept.append((ex, row))
          used.setdefault(row, ex.id)
      self._record_skips(split, skips, total)
      plan[split] = kept
    embeddings.check_finite(used)
    self.info.metadata["shapes"] = {m: [d] for m, d in embeddings.dims.items()}
    self.info.metadata["embeddings"] = dict(
        files=embeddings.files, num_rows=len(embeddings.ids), unused_rows=len(embeddings.ids) - len(used))
    return {split: self._generate_examples(kept, embeddings) for split, kept in plan.items()}

  def _generate_examples(self, kept, embeddings):
    for ex, row in kept:
      yield ex.id, dict(id=ex.id, label=ex.label, raw_text=ex.raw_text, image_file=ex.image_file,
                        **{m: embeddings.vector(m, row) for m in MODALITIES})
