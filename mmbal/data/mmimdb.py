"""TFDS builder for MM-IMDb (movie poster + plot, 23 genres, multi-label), from a manual directory.

MM-IMDb (Arevalo et al., "Gated Multimodal Units for Information Fusion", ICLR workshops
2017; http://lisi1.unal.edu.co/mmimdb/): 25,959 movies with poster, plot and genres.
IMDb-derived content: research use. Nothing is downloaded; the builder reads
`<manual_dir>/mmimdb/` (or `<manual_dir>` itself when it holds `mmimdb/split.json`):

    mmimdb/split.json              {"train": [ids], "dev": [ids], "test": [ids]}
                                   (15,552 / 2,608 / 7,799; ids are 7-digit strings)
    mmimdb/dataset/{id}.json       per movie: "genres" (list), "plot" (list of strings), ...
    mmimdb/dataset/{id}.jpeg       not read (the embeddings stand for the posters)
    embeddings/ids.txt, image.npy, text.npy   (or embeddings/embeddings.npz): the
                                   precomputed embeddings (`mmbal.data._image_text`);
                                   ids are the IMDb ids (`0000001` and `1` both match)
    multimodal_imdb.hdf5           config `hdf5` only (see below)

(`split.json` and `dataset/` directly in `<manual_dir>/mmimdb/` work too.)

Configs:
* `json` (default): labels and plots from the per-movie JSON files, embeddings from
  `embeddings/`. `raw_text` is the longest plot.
* `hdf5`: the authors' ready-made `multimodal_imdb.hdf5`: `vgg_features` (4096-d VGG-16
  poster features) as `image`, `features` (300-d mean word2vec of the plot) as `text`,
  `genres` as labels, `imdb_ids` as ids; no `embeddings/` needed, `raw_text` empty. The
  split comes from `split.json` when present, else from the file's Fuel `split`
  attribute (rows ordered train, dev, test). Reading HDF5 needs the package `h5py`
  (not an mmbal dependency: `pip install h5py`); without it this config stops with an
  error naming the package.

Labels: `label` is a multi-hot int32 vector `[23]` over the 23 genres in the order of the
HDF5 file's `target_names` (by frequency): Drama, Comedy, Romance, Thriller, Crime,
Action, Adventure, Horror, Documentary, Mystery, Sci-Fi, Fantasy, Family, Biography, War,
History, Music, Animation, Musical, Western, Sport, Short, Film-Noir.
`info.metadata["task"]` is `"multilabel"` (`DataSpec.task`; micro / macro F1 are the
usual metrics). The raw JSONs hold four more genres (News, Adult, Talk-Show, Reality-TV):
they are dropped (counted in `info.metadata["dropped_genres"]`), and a movie left with
none of the 23 is left out (`info.metadata["filtered"]`, not counted as skipped).

Splits: `train` = split.json's train, `validation` = its dev (the official split), `test`
= its test. An id in two splits is an error. A movie whose JSON file is missing or
malformed is skipped and counted; a repeated id within a split is skipped and counted
(`duplicate id`).
"""

from __future__ import annotations

import importlib.util
import json
import os

import numpy as np
import tensorflow_datasets as tfds

from mmbal.data import _image_text
from mmbal.data._image_text import Example
from mmbal.data.manual import ManualDirError

GENRES = ("Drama", "Comedy", "Romance", "Thriller", "Crime", "Action", "Adventure", "Horror",
          "Documentary", "Mystery", "Sci-Fi", "Fantasy", "Family", "Biography", "War",
          "History", "Music", "Animation", "Musical", "Western", "Sport", "Short", "Film-Noir")
NUM_GENRES = len(GENRES)
SPLIT_NAMES = {"train": "train", "validation": "dev", "test": "test"}
HDF5_FILE = "multimodal_imdb.hdf5"

_CITATION = """\
@inproceedings{arevalo2017gated,
  author = {Arevalo, John and Solorio, Thamar and Montes-y-G{\\'o}mez, Manuel and
            Gonz{\\'a}lez, Fabio A.},
  title = {Gated Multimodal Units for Information Fusion},
  booktitle = {International Conference on Learning Representations (Workshop Track)},
  year = {2017}
}"""


def multi_hot(genres) -> tuple[np.ndarray, list[str]]:
  """(int32 `[23]` multi-hot of the genres among the 23, the other genres)."""
  label = np.zeros(NUM_GENRES, np.int32)
  dropped = []
  for g in genres:
    if g in GENRES:
      label[GENRES.index(g)] = 1
    else:
      dropped.append(g)
  return label, dropped


def read_split_json(path: str) -> dict[str, list[str]]:
  """`{"train": [...], "validation": [...], "test": [...]}` from split.json (its dev = validation).

  Raises:
    ManualDirError: the file is not a JSON object with lists of ids under train, dev, test.
  """
  try:
    with open(path, "rb") as f:
      data = json.loads(f.read().decode("utf-8-sig"))
  except FileNotFoundError:
    raise ManualDirError(f"{path}: missing; expected MM-IMDb's split.json") from None
  except (UnicodeDecodeError, json.JSONDecodeError) as e:
    raise ManualDirError(f"{path}: not a readable JSON file ({e})") from None
  if not isinstance(data, dict):
    raise ManualDirError(f"{path}: expected a JSON object with lists 'train', 'dev', 'test'")
  out = {}
  for split, key in SPLIT_NAMES.items():
    ids = data.get(key)
    if not isinstance(ids, list) or not ids or not all(
        isinstance(i, (str, int)) and not isinstance(i, bool) for i in ids):
      raise ManualDirError(f"{path}: expected '{key}' a non-empty list of ids (strings), got "
                           f"{type(ids).__name__ if not isinstance(ids, list) else ids[:3]}")
    out[split] = [str(i).strip() for i in ids]
  return out


def read_movie(path: str) -> tuple[dict | None, str]:
  """(`{"genres": [...], "plot": str}`, '') from a movie's JSON file, or (None, the problem)."""
  if not os.path.isfile(path):
    return None, f"missing metadata: {path}"
  try:
    with open(path, "rb") as f:
      data = json.loads(f.read().decode("utf-8-sig"))
  except (UnicodeDecodeError, json.JSONDecodeError) as e:
    return None, f"malformed metadata: {path}: not readable JSON ({e})"
  genres = data.get("genres") if isinstance(data, dict) else None
  if not isinstance(genres, list) or not all(isinstance(g, str) for g in genres):
    return None, f"malformed metadata: {path}: expected 'genres' a list of strings"
  plot = data.get("plot", [])
  plots = [plot] if isinstance(plot, str) else [p for p in plot if isinstance(p, str)] \
      if isinstance(plot, list) else []
  return dict(genres=genres, plot=max(plots, key=len, default="")), ""


class MmImdbConfig(tfds.core.BuilderConfig):
  """`json` (per-movie JSON files + your embeddings) or `hdf5` (the authors' HDF5 features)."""


class MmImdb(_image_text.ImageTextBuilder):
  """MM-IMDb from a manual directory; see the module docstring."""

  name = "mmimdb"
  VERSION = tfds.core.Version("1.0.0")
  RELEASE_NOTES = {"1.0.0": "JSON + embeddings and HDF5-feature configs, multi-hot genres."}
  BUILDER_CONFIGS = [
      MmImdbConfig(name="json", description="split.json, dataset/{id}.json, embeddings/."),
      MmImdbConfig(name="hdf5", description="multimodal_imdb.hdf5: VGG-16 poster and word2vec "
                                            "plot features (needs h5py)."),
  ]
  MANUAL_NAME = "mmimdb"
  MANUAL_MARKER = "mmimdb/split.json"
  MANUAL_EXAMPLE = "mmimdb/mmimdb/split.json"
  MANUAL_DOWNLOAD_INSTRUCTIONS = """\
  Put the MM-IMDb files in <manual_dir>/mmimdb/ (manual_dir: <data_dir>/downloads/manual,
  or the builder argument manual_dir=): mmimdb/split.json and mmimdb/dataset/{id}.json
  from mmimdb.tar.gz, and your precomputed embeddings embeddings/ids.txt + image.npy +
  text.npy (or embeddings/embeddings.npz with arrays ids, image, text), ids = IMDb ids;
  for config hdf5, multimodal_imdb.hdf5 instead of the embeddings (needs h5py)."""
  CLASS_NAMES = GENRES
  TASK = "multilabel"
  HOMEPAGE = "http://lisi1.unal.edu.co/mmimdb/"
  CITATION = _CITATION
  LICENSE = "IMDb-derived content: research use"

  def _label_feature(self):
    return tfds.features.Tensor(shape=(NUM_GENRES,), dtype=np.int32)

  @staticmethod
  def _meta_dir(root: str) -> str:
    nested = os.path.join(root, "mmimdb")
    return nested if os.path.exists(os.path.join(nested, "split.json")) or \
        os.path.isdir(os.path.join(nested, "dataset")) else root

  def _hdf5_path(self, root: str) -> str:
    for d in (root, self._meta_dir(root)):
      if os.path.isfile(os.path.join(d, HDF5_FILE)):
        return os.path.join(d, HDF5_FILE)
    return os.path.join(root, HDF5_FILE)

  def _embeddings_dir(self, root: str) -> str | None:
    return None if self.builder_config.name == "hdf5" else super()._embeddings_dir(root)

  def _layout_problems(self, root: str) -> list[str]:
    meta = self._meta_dir(root)
    if self.builder_config.name == "hdf5":
      path = self._hdf5_path(root)
      return [] if os.path.isfile(path) else [
          f"{path}: missing; config 'hdf5' reads the authors' {HDF5_FILE}"]
    problems = []
    split = os.path.join(meta, "split.json")
    if not os.path.isfile(split):
      problems.append(f"{split}: missing; expected MM-IMDb's split.json (train, dev, test ids)")
    dataset = os.path.join(meta, "dataset")
    if not os.path.isdir(dataset) or not os.listdir(dataset):
      problems.append(f"{dataset}: missing or empty; expected one {{id}}.json per movie")
    return problems

  def _check_disjoint(self, splits: dict[str, list[str]], where: str):
    names = list(splits)
    for a in range(len(names)):
      for b in range(a + 1, len(names)):
        shared = sorted(set(map(_image_text.normalize_id, splits[names[a]])) &
                        set(map(_image_text.normalize_id, splits[names[b]])))
        if shared:
          raise ManualDirError(f"{where}: {len(shared)} ids in both {SPLIT_NAMES[names[a]]} and "
                               f"{SPLIT_NAMES[names[b]]} (e.g. {shared[:3]}); expected disjoint "
                               f"splits")

  def _examples(self, split: str, ids, make, where: str) -> list[Example]:
    """Examples of one split, repeated ids skipped; `make(id)` -> Example, or None to skip."""
    out, seen = [], set()
    for i in ids:
      key = _image_text.normalize_id(i)
      if key in seen:
        self._skip(split, i, f"duplicate id: {i} repeats in {where}")
        continue
      seen.add(key)
      example = make(split, i)
      if example is not None:
        out.append(example)
    return out

  def _label(self, split: str, genres) -> np.ndarray | None:
    label, dropped = multi_hot(genres)
    counts = self.info.metadata["dropped_genres"]
    for g in dropped:
      counts[g] = counts.get(g, 0) + 1
    if not label.any():
      self._filtered(split, "no genre among the 23")
      return None
    return label

  def _read_examples(self, root: str):
    self.info.metadata["dropped_genres"] = {}
    if self.builder_config.name == "hdf5":
      return self._read_hdf5(root)
    meta = self._meta_dir(root)
    split_path = os.path.join(meta, "split.json")
    splits = read_split_json(split_path)
    self._check_disjoint(splits, split_path)

    def make(split, i):
      path = os.path.join(meta, "dataset", f"{i}.json")
      movie, problem = read_movie(path)
      if movie is None:
        self._skip(split, i, problem)
        return None
      label = self._label(split, movie["genres"])
      if label is None:
        return None
      image = os.path.relpath(os.path.join(meta, "dataset", f"{i}.jpeg"), root)
      return Example(id=i, keys=(_image_text.normalize_id(i),), label=label,
                     raw_text=movie["plot"], image_file=image)

    examples = {split: self._examples(split, ids, make, split_path)
                for split, ids in splits.items()}
    return examples, dict(source="split.json", rule="the official dev split")

  # ---------------------------------------------------------------- hdf5

  def _read_hdf5(self, root: str):
    path = self._hdf5_path(root)
    if importlib.util.find_spec("h5py") is None:
      raise ModuleNotFoundError(
          f"{path}: config 'hdf5' reads HDF5 files with the package 'h5py', which is not "
          f"installed (pip install h5py); or use config 'json' with your own embeddings",
          name="h5py")
    import h5py  # pylint: disable=import-outside-toplevel
    try:
      f = h5py.File(path, "r")
    except OSError as e:
      raise ManualDirError(f"{path}: not a readable HDF5 file ({e})") from None
    self._h5 = f  # Read lazily while the examples are written.
    missing = [k for k in ("imdb_ids", "genres", "vgg_features", "features") if k not in f]
    if missing:
      raise ManualDirError(f"{path}: no dataset {missing}; expected the authors' "
                           f"{HDF5_FILE} (imdb_ids, genres, vgg_features, features)")
    ids = [i.decode("utf-8") if isinstance(i, bytes) else str(i) for i in f["imdb_ids"][:]]
    genres = np.asarray(f["genres"][:])
    n = len(ids)
    for key, width in (("genres", NUM_GENRES), ("vgg_features", None), ("features", None)):
      shape = f[key].shape
      if len(shape) != 2 or shape[0] != n or (width and shape[1] != width):
        raise ManualDirError(f"{path}: {key} has shape {shape}; expected [{n} (imdb_ids), "
                             f"{width or 'D'}]")
    names = f["genres"].attrs.get("target_names")
    if names is not None:
      names = json.loads(names if isinstance(names, str) else bytes(names).decode("utf-8"))
      if sorted(names) != sorted(GENRES):
        raise ManualDirError(f"{path}: genres.attrs['target_names'] = {names}; expected the 23 "
                             f"MM-IMDb genres")
      genres = genres[:, [names.index(g) for g in GENRES]]  # Into mmbal's (the usual) order.
    if not np.isin(genres, (0, 1)).all():
      raise ManualDirError(f"{path}: genres: expected multi-hot 0/1 values")
    row_of = {_image_text.normalize_id(i): r for r, i in enumerate(ids)}
    splits, validation = self._hdf5_splits(root, f, ids)

    def make(split, i):
      row = row_of.get(_image_text.normalize_id(i))
      if row is None:
        self._skip(split, i, f"missing features: id {i} is not in {path} (imdb_ids)")
        return None
      label = self._label(split, [GENRES[k] for k in np.flatnonzero(genres[row])])
      return None if label is None else Example(id=i, keys=(_image_text.normalize_id(i),),
                                                label=label)

    examples = {split: self._examples(split, split_ids, make, validation["source"])
                for split, split_ids in splits.items()}
    return examples, validation

  def _hdf5_splits(self, root, f, ids):
    split_path = os.path.join(self._meta_dir(root), "split.json")
    if os.path.isfile(split_path):
      splits = read_split_json(split_path)
      self._check_disjoint(splits, split_path)
      return splits, dict(source="split.json", rule="the official dev split")
    table = f.attrs.get("split")
    where = f"{f.filename} (attribute 'split')"
    if table is None:
      raise ManualDirError(f"{split_path}: missing, and {f.filename} has no Fuel 'split' "
                           f"attribute; expected one of them to give the train / dev / test split")
    ranges = {}
    for record in table:
      name = record["split"]
      name = name.decode("utf-8") if isinstance(name, bytes) else str(name)
      ranges.setdefault(name, (int(record["start"]), int(record["stop"])))
    splits = {}
    for split, name in SPLIT_NAMES.items():
      if name not in ranges:
        raise ManualDirError(f"{where}: no '{name}' split (found {sorted(ranges)})")
      start, stop = ranges[name]
      if not 0 <= start < stop <= len(ids):
        raise ManualDirError(f"{where}: '{name}' rows [{start}, {stop}) outside the "
                             f"{len(ids)} rows")
      splits[split] = ids[start:stop]
    self._check_disjoint(splits, where)
    return splits, dict(source="hdf5 split attribute", rule="the official dev split")

  def _embeddings(self, root: str) -> _image_text.Embeddings:
    if self.builder_config.name != "hdf5":
      return super()._embeddings(root)
    f, path = self._h5, self._hdf5_path(root)
    for key, m in (("vgg_features", "image"), ("features", "text")):
      if f[key].dtype.kind != "f":
        raise ManualDirError(f"{path}: {key}: expected float {m} features, got {f[key].dtype}")
    ids = [i.decode("utf-8") if isinstance(i, bytes) else str(i) for i in f["imdb_ids"][:]]
    return _image_text.Embeddings(
        ids=ids, arrays={"image": f["vgg_features"], "text": f["features"]},
        files={"ids": f"{path} (imdb_ids)", "image": f"{path} (vgg_features)",
               "text": f"{path} (features)"})
