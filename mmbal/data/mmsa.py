"""TFDS builder for CMU-MOSI, CMU-MOSEI and CH-SIMS from the MMSA feature pickles (regression).

The multimodal sentiment sets as MMSA (thuiar/MMSA, MIT code; the data are CMU's MOSI /
MOSEI and THUIAR's CH-SIMS, research use) distributes their features: one pickle per data
set and alignment. Nothing is downloaded; the builder reads `<manual_dir>/mmsa/` (or
`<manual_dir>` itself when it holds the config's file):

    MOSI/Processed/unaligned_50.pkl     configs mosi_unaligned (default), mosi_aligned
    MOSI/Processed/aligned_50.pkl
    MOSEI/Processed/unaligned_50.pkl    configs mosei_unaligned, mosei_aligned
    MOSEI/Processed/aligned_50.pkl
    SIMS/Processed/unaligned_39.pkl     config sims_unaligned
    mult/mosi_data.pkl, mult/mosi_data_noalign.pkl                configs mosi_mult_aligned,
    mult/mosei_senti_data.pkl, mult/mosei_senti_data_noalign.pkl  mosi_mult_unaligned, ...

An MMSA pickle is `{"train": {...}, "valid": {...}, "test": {...}}` (an MMSA-FET `config`
key is ignored); each split holds `text` `(N, Lt, 768)` (BERT token features), `text_bert`
`(N, 3, Lt)` (BERT input ids, attention mask, segment ids), `audio` `(N, La, Da)`, `vision`
`(N, Lv, Dv)`, `audio_lengths` / `vision_lengths` `(N,)` (unaligned files only),
`regression_labels` `(N,)`, `id` (`"{video}$_${clip}"`), `raw_text`, and for SIMS
`regression_labels_T` / `_A` / `_V`. The MulT pickles (`mult/`, CGGM's and MulT's MOSI /
MOSEI) hold `text` (GloVe, 300-d), `audio`, `vision`, `labels` `(N, 1, 1)` and `id`
(`(video, start, end)` bytes triples, stored joined with `$_$`).

Pickles are read by a restricted unpickler (`manual.read_plain_pickle`): numpy arrays,
dicts, lists, strings and numbers only; anything else is refused before it is built.
Missing files, splits or keys, non-numeric arrays, and arrays whose sizes disagree are
errors naming the file, the split and the key; a length outside `[0, L]`, a BERT mask that
is not 0/1, and a label that is not finite or lies outside the data set's range are
errors naming the split and the example's index and id.

Stored per example (`float32` sequences; shapes in `info.metadata["shapes"]`, read from
the arrays, never from MMSA's configs):
* `text`: the pickle's `text` array: for MMSA files the precomputed BERT features (768-d,
  `bert-base-uncased`; `bert-base-chinese` for SIMS), not the token ids; for MulT files GloVe.
* `audio`, `vision`: the acoustic (COVAREP / librosa) and visual (FACET / OpenFace) sequences.
* `text_mask`, `audio_mask`, `vision_mask` (bool): real steps. `text_mask` is BERT's
  attention-mask row `text_bert[:, 1]`; `audio_mask` / `vision_mask` are `[True] * length +
  [False] * (L - length)` from `*_lengths`. Files without that information (aligned MMSA
  files have no lengths, MulT files no `text_bert`) get all-True masks;
  `info.metadata["mask_source"]` says which.
* `text_ids` (int32, MMSA configs): `text_bert[:, 0]`, the BERT input ids (for a trainable
  text encoder or LNLN-style token masking); zeros when the file has no `text_bert`.
* `label` (float32 scalar): `regression_labels` (MulT: `labels`), in [-3, 3] for MOSI /
  MOSEI and [-1, 1] for SIMS. SIMS configs also store `label_text`, `label_audio`,
  `label_vision` (the unimodal annotations `regression_labels_T/A/V`).
* `id`, `raw_text` (empty when the file has none).

`info.metadata["task"]` is `"regression"` (`DataSpec.task`, `num_classes` 1). Non-finite
feature values (COVAREP writes `-inf` into MOSI / MOSEI audio; also NaN, `+inf` and float64
values beyond float32's range) are replaced by 0, counted per split and modality in
`info.metadata["nonfinite"]` (`-inf`, `+inf`, `nan` values and affected `examples`) and
logged; nothing non-finite is stored.

Splits: the files' own, records in the files' order: `train`, `validation` (= `valid`),
`test` (MOSI 1,284 / 229 / 686,
MOSEI 16,326 / 1,871 / 4,659, SIMS 1,368 / 456 / 457). The SHA-256 of a file named as in
MMSA's release is compared with the release's (`info.metadata["file"]`); a mismatch is
logged, not an error (files regenerated with MMSA-FET differ).
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import os
import sys
from typing import Any

import numpy as np
import tensorflow_datasets as tfds

from mmbal.data import manual
from mmbal.data.manual import ManualDirError

log = logging.getLogger(__name__)

MODALITIES = ("text", "audio", "vision")
SPLIT_KEYS = {"train": "train", "validation": "valid", "test": "test"}
_CHUNK = 256  # Examples per block when scanning a modality for non-finite values.

# SHA-256 of MMSA's released files (MMSA README).
RELEASE_SHA256 = {
    "MOSI/Processed/unaligned_50.pkl":
        "78e0f8b5ef8ff71558e7307848fc1fa929ecb078203f565ab22b9daab2e02524",
    "MOSI/Processed/aligned_50.pkl":
        "d3994fd25681f9c7ad6e9c6596a6fe9b4beb85ff7d478ba978b124139002e5f9",
    "MOSEI/Processed/unaligned_50.pkl":
        "ad8b23d50557045e7d47959ce6c5b955d8d983f2979c7d9b7b9226f6dd6fec1f",
    "MOSEI/Processed/aligned_50.pkl":
        "45eccfb748a87c80ecab9bfac29582e7b1466bf6605ff29d3b338a75120bf791",
    "SIMS/Processed/unaligned_39.pkl":
        "c9e20c13ec0454d98bb9c1e520e490c75146bfa2dfeeea78d84de047dbdd442f",
}

_CITATION = """\
@article{zadeh2016mosi,
  author = {Zadeh, Amir and Zellers, Rowan and Pincus, Eli and Morency, Louis-Philippe},
  title = {{MOSI}: Multimodal Corpus of Sentiment Intensity and Subjectivity Analysis in Online
           Opinion Videos},
  journal = {arXiv preprint arXiv:1606.06259},
  year = {2016}
}
@inproceedings{zadeh2018mosei,
  author = {Zadeh, AmirAli Bagher and Liang, Paul Pu and Poria, Soujanya and Cambria, Erik and
            Morency, Louis-Philippe},
  title = {Multimodal Language Analysis in the Wild: {CMU-MOSEI} Dataset and Interpretable
           Dynamic Fusion Graph},
  booktitle = {ACL},
  year = {2018}
}
@inproceedings{yu2020sims,
  author = {Yu, Wenmeng and Xu, Hua and Meng, Fanyang and Zhu, Yilin and Ma, Yixiao and Wu, Jiele
            and Zou, Jiyun and Yang, Kaicheng},
  title = {{CH-SIMS}: A {Chinese} Multimodal Sentiment Analysis Dataset with Fine-grained
           Annotation of Modality},
  booktitle = {ACL},
  year = {2020}
}"""


def as_text(value) -> str:
  """A pickled id / text as str: str, bytes (UTF-8), numpy strings, or a sequence of them
  (MulT's `(video, start, end)` ids), joined with `$_$`."""
  if isinstance(value, (bytes, np.bytes_)):
    return bytes(value).decode("utf-8", errors="replace")
  if isinstance(value, (str, np.str_)):
    return str(value)
  if isinstance(value, np.ndarray) and value.ndim == 0:
    return as_text(value.item())
  if isinstance(value, (list, tuple, np.ndarray)):
    return "$_$".join(as_text(v) for v in value)
  return str(value)


@dataclasses.dataclass
class SplitArrays:
  """One split of a feature pickle, checked.

  `features` are the pickle's `[N, L, D]` arrays (converted per example when written);
  `masks` bool `[N, L]`; `labels` `[N]` float32 (or `[N, C]` int32 multi-hot);
  `extras`: further per-example features (`text_ids`, unimodal labels, ...).
  """

  features: dict[str, Any]
  masks: dict[str, np.ndarray]
  labels: np.ndarray
  ids: list[str]
  raw_text: list[str]
  extras: dict[str, np.ndarray] = dataclasses.field(default_factory=dict)

  def __len__(self):
    return len(self.labels)


def nonfinite_counts(array, dtype=np.float32) -> dict[str, int]:
  """`-inf`, `+inf`, `nan` values and affected examples of `array` `[N, ...]` as `dtype`."""
  counts = {"-inf": 0, "+inf": 0, "nan": 0, "examples": 0}
  for start in range(0, len(array), _CHUNK):
    with np.errstate(over="ignore", invalid="ignore"):
      block = np.asarray(array[start:start + _CHUNK]).astype(dtype)
    if np.isfinite(block).all():
      continue
    block = block.reshape(len(block), -1)
    counts["-inf"] += int(np.isneginf(block).sum())
    counts["+inf"] += int(np.isposinf(block).sum())
    counts["nan"] += int(np.isnan(block).sum())
    counts["examples"] += int((~np.isfinite(block)).any(axis=1).sum())
  return counts


def finite_float32(x) -> np.ndarray:
  """`x` as float32 with every non-finite value (after the conversion) replaced by 0."""
  with np.errstate(over="ignore", invalid="ignore"):
    x = np.array(x, dtype=np.float32)
  x[~np.isfinite(x)] = 0.0
  return x


def length_mask(lengths: np.ndarray, length: int) -> np.ndarray:
  """bool `[N, length]`: `True` for the first `lengths[i]` steps of row i."""
  return np.arange(length)[None, :] < np.asarray(lengths)[:, None]


class SequencePickleBuilder(manual.ManualBuilder, skip_registration=True):
  """Base of the builders reading one pickle of `{train, valid, test}` sequence features.

  Subclasses define `_pickle_relpath()` (the config's file, relative to the data set's
  directory), `_parse_split(split, d, where)` -> `SplitArrays`, `_label_feature()`,
  `_extra_features()` and the class attributes `TASK`, `CLASS_NAMES`, `HOMEPAGE`,
  `CITATION`, `LICENSE`.
  """

  TASK = "regression"
  CLASS_NAMES: tuple[str, ...] = ()
  HOMEPAGE = ""
  CITATION = ""
  LICENSE = ""

  # ---------------------------------------------------------------- to override

  def _pickle_relpath(self) -> str:
    raise NotImplementedError

  def _parse_split(self, split: str, d: dict, where: str) -> SplitArrays:
    raise NotImplementedError

  def _label_feature(self):
    return tfds.features.Tensor(shape=(), dtype=np.float32)

  def _extra_features(self) -> dict[str, Any]:
    return {}

  # ---------------------------------------------------------------- info

  @property
  def MANUAL_MARKER(self) -> str:  # pylint: disable=invalid-name
    return self._pickle_relpath()

  def _info(self) -> tfds.core.DatasetInfo:
    features = {
        "id": tfds.features.Text(),
        "raw_text": tfds.features.Text(),
        "label": self._label_feature(),
        **{m: tfds.features.Tensor(shape=(None, None), dtype=np.float32, encoding="bytes")
           for m in MODALITIES},
        **{f"{m}_mask": tfds.features.Tensor(shape=(None,), dtype=np.bool_)
           for m in MODALITIES},
        **self._extra_features(),
    }
    return tfds.core.DatasetInfo(
        builder=self,
        description=sys.modules[type(self).__module__].__doc__,
        features=tfds.features.FeaturesDict(features),
        homepage=self.HOMEPAGE,
        citation=self.CITATION,
        license=self.LICENSE,
        disable_shuffling=True,  # Records in the pickle's order: record i = the file's row i.
        metadata=tfds.core.MetadataDict(modalities=list(MODALITIES), masks=list(MODALITIES),
                                        task=self.TASK, class_names=list(self.CLASS_NAMES)),
    )

  # ---------------------------------------------------------------- reading

  def _file_metadata(self, path: str, relpath: str) -> dict[str, Any]:
    """Path and SHA-256 of the pickle, compared with MMSA's release when it names one."""
    expected = RELEASE_SHA256.get(relpath)
    out = dict(path=path, release_sha256=expected, sha256=None, matches_release=None)
    if expected is None:
      return out
    digest = hashlib.sha256()
    with open(path, "rb") as f:
      for block in iter(lambda: f.read(1 << 24), b""):
        digest.update(block)
    out["sha256"] = digest.hexdigest()
    out["matches_release"] = out["sha256"] == expected
    if not out["matches_release"]:
      log.warning("%s: SHA-256 %s differs from MMSA's released %s (%s); reading it anyway",
                  path, out["sha256"], relpath, expected)
    return out

  def _read_pickle(self, root: str) -> tuple[dict[str, SplitArrays], str]:
    relpath = self._pickle_relpath()
    path = os.path.join(root, relpath)
    if not os.path.isfile(path):
      raise ManualDirError(f"{path}: missing; config {self.builder_config.name!r} reads "
                           f"{relpath} from the {self.MANUAL_NAME} manual directory. Layout:\n"
                           f"{self.MANUAL_DOWNLOAD_INSTRUCTIONS}")
    self.info.metadata["file"] = self._file_metadata(path, relpath)
    data = manual.read_plain_pickle(path, "a dict of splits 'train', 'valid', 'test'")
    if not isinstance(data, dict):
      raise ManualDirError(f"{path}: expected a dict with keys 'train', 'valid', 'test', got "
                           f"{type(data).__name__}")
    missing = [k for k in SPLIT_KEYS.values() if k not in data]
    if missing:
      raise ManualDirError(f"{path}: no split {missing}; expected keys 'train', 'valid', 'test' "
                           f"(found {sorted(map(str, data))})")
    splits = {}
    for split, key in SPLIT_KEYS.items():
      if not isinstance(data[key], dict):
        raise ManualDirError(f"{path}: split '{key}' is a {type(data[key]).__name__}; expected "
                             f"a dict of arrays")
      splits[split] = self._parse_split(key, data[key], path)
    return splits, path

  def _check_shapes(self, splits: dict[str, SplitArrays], path: str) -> dict[str, list[int]]:
    """Per-example `[L, D]` of each modality, the same in every split."""
    shapes = {}
    for split, s in splits.items():
      for m in MODALITIES:
        shape = list(np.shape(s.features[m])[1:])
        if m not in shapes:
          shapes[m] = shape
        elif shape != shapes[m]:
          raise ManualDirError(f"{path}: split '{SPLIT_KEYS[split]}' key '{m}' has per-example "
                               f"shape {shape}, split 'train' has {shapes[m]}; expected the "
                               f"same in every split")
    return shapes

  def _split_generators(self, dl_manager):
    root = self._root(dl_manager)
    self._start_metadata(root)
    splits, path = self._read_pickle(root)
    self.info.metadata["shapes"] = self._check_shapes(splits, path)
    nonfinite = self.info.metadata["nonfinite"] = {}
    for split, s in splits.items():
      nonfinite[split] = {m: nonfinite_counts(s.features[m]) for m in MODALITIES}
      for m, c in nonfinite[split].items():
        if c["examples"]:
          log.warning("%s %s %s: %s has %d -inf, %d +inf and %d NaN values in %d of %d "
                      "examples; replaced by 0", self.name, self.builder_config.name, split, m,
                      c["-inf"], c["+inf"], c["nan"], c["examples"], len(s))
    return {split: self._generate_examples(s) for split, s in splits.items()}

  def _generate_examples(self, s: SplitArrays):
    for i in range(len(s)):
      example = dict(id=s.ids[i], raw_text=s.raw_text[i], label=s.labels[i],
                     **{m: finite_float32(s.features[m][i]) for m in MODALITIES},
                     **{f"{m}_mask": s.masks[m][i] for m in MODALITIES},
                     **{k: v[i] for k, v in s.extras.items()})
      yield i, example


# ----------------------------------------------------------------------------- checks


def get(d: dict, key: str, split: str, path: str, need: str = ""):
  if key not in d:
    raise ManualDirError(f"{path}: split '{split}' has no key '{key}'{need} (found keys "
                         f"{sorted(map(str, d))})")
  return d[key]


def numeric(d: dict, key: str, split: str, path: str, ndim: int | tuple[int, ...],
            n: int | None = None) -> np.ndarray:
  """`d[key]` as a numeric array of `ndim` dims (and `n` rows), else a ManualDirError."""
  try:
    a = np.asarray(get(d, key, split, path))
  except ValueError as e:  # Ragged lists.
    raise ManualDirError(f"{path}: split '{split}' key '{key}': not a regular array ({e})") from None
  ndims = (ndim,) if isinstance(ndim, int) else ndim
  if a.dtype.kind not in "biuf" or a.ndim not in ndims:
    raise ManualDirError(f"{path}: split '{split}' key '{key}': expected a numeric array of "
                         f"{' or '.join(map(str, ndims))} dimensions, got {a.dtype} "
                         f"{a.shape}")
  if n is not None and len(a) != n:
    raise ManualDirError(f"{path}: split '{split}' key '{key}' has {len(a)} rows, '{key}' "
                         f"should have one per example ({n}, as 'regression_labels' / "
                         f"'labels')")
  return a


def texts(d: dict, key: str, split: str, path: str, n: int, default: str | None = None):
  """`d[key]` (strings, bytes, or tuples of them) as `n` str; `default` when absent."""
  if key not in d and default is not None:
    return [default.format(split=split, i=i) for i in range(n)]
  values = get(d, key, split, path)
  if len(values) != n:
    raise ManualDirError(f"{path}: split '{split}' key '{key}' has {len(values)} entries, "
                         f"expected one per example ({n})")
  return [as_text(v) for v in values]


def check_lengths(lengths: np.ndarray, steps: int, key: str, modality: str, split: str,
                  path: str, ids: list[str]) -> np.ndarray:
  """Integral lengths in `[0, steps]`, as int64; else an error naming the example."""
  bad = np.flatnonzero(~np.isfinite(lengths) | (lengths != np.round(lengths))) \
      if lengths.dtype.kind == "f" else np.array([], np.int64)
  if bad.size:
    i = int(bad[0])
    raise ManualDirError(f"{path}: split '{split}' index {i} (id {ids[i]}): {key} = "
                         f"{lengths[i]}; expected a whole number of steps")
  lengths = lengths.astype(np.int64)
  bad = np.flatnonzero((lengths < 0) | (lengths > steps))
  if bad.size:
    i = int(bad[0])
    raise ManualDirError(f"{path}: split '{split}' index {i} (id {ids[i]}): {key} = "
                         f"{lengths[i]} does not fit the {modality} sequence of {steps} steps "
                         f"({bad.size} such examples); expected 0 <= length <= {steps}")
  return lengths


def check_labels(labels: np.ndarray, bound: float, key: str, split: str, path: str,
                 ids: list[str]) -> np.ndarray:
  """Finite labels in `[-bound, bound]` as float32; else an error naming the example."""
  labels = labels.astype(np.float64)
  bad = np.flatnonzero(~np.isfinite(labels) | (np.abs(labels) > bound + 1e-6))
  if bad.size:
    i = int(bad[0])
    raise ManualDirError(f"{path}: split '{split}' index {i} (id {ids[i]}): {key} = "
                         f"{labels[i]}; expected a finite value in [-{bound:g}, {bound:g}] "
                         f"({bad.size} such labels)")
  return labels.astype(np.float32)


def modality_arrays(d: dict, split: str, path: str, n: int, aligned: bool) -> dict[str, Any]:
  """`text`, `audio`, `vision` as `[N, L, D]` numeric arrays; aligned ones share L."""
  arrays = {m: numeric(d, m, split, path, 3, n) for m in MODALITIES}
  if aligned:
    steps = {m: a.shape[1] for m, a in arrays.items()}
    if len(set(steps.values())) != 1:
      raise ManualDirError(f"{path}: split '{split}': an aligned file should have one sequence "
                           f"length for all modalities, got {steps} steps; is this the "
                           f"unaligned file?")
  return arrays


# ----------------------------------------------------------------------------- MMSA builder


class MmsaConfig(tfds.core.BuilderConfig):
  """One data set and alignment: `dataset` (mosi | mosei | sims), `aligned`, `mult` format."""

  def __init__(self, *, dataset: str, aligned: bool, mult: bool = False, **kwargs):
    super().__init__(**kwargs)
    self.dataset, self.aligned, self.mult = dataset, aligned, mult


DATASETS = {  # name -> (MMSA directory, label bound, MMSA file per alignment, MulT file prefix)
    "mosi": ("MOSI", 3.0, {True: "aligned_50.pkl", False: "unaligned_50.pkl"}, "mosi_data"),
    "mosei": ("MOSEI", 3.0, {True: "aligned_50.pkl", False: "unaligned_50.pkl"},
              "mosei_senti_data"),
    "sims": ("SIMS", 1.0, {False: "unaligned_39.pkl"}, None),
}


def _configs():
  configs = []
  for dataset, (_, _, files, mult) in DATASETS.items():
    for aligned in (False, True):
      if aligned in files:
        kind = "aligned" if aligned else "unaligned"
        configs.append(MmsaConfig(name=f"{dataset}_{kind}", dataset=dataset, aligned=aligned,
                                  description=f"{DATASETS[dataset][0]}/Processed/"
                                              f"{files[aligned]} (MMSA)"))
  for dataset, (_, _, _, mult) in DATASETS.items():
    for aligned in (True, False):
      if mult:
        kind = "aligned" if aligned else "unaligned"
        configs.append(MmsaConfig(
            name=f"{dataset}_mult_{kind}", dataset=dataset, aligned=aligned, mult=True,
            description=f"mult/{mult}{'' if aligned else '_noalign'}.pkl (MulT format)"))
  return configs


class Mmsa(SequencePickleBuilder):
  """CMU-MOSI, CMU-MOSEI, CH-SIMS from MMSA (or MulT) pickles; see the module docstring."""

  name = "mmsa"
  VERSION = tfds.core.Version("1.0.0")
  RELEASE_NOTES = {"1.0.0": "MMSA and MulT pickles: sequences, masks, regression labels."}
  BUILDER_CONFIGS = _configs()
  MANUAL_NAME = "mmsa"
  MANUAL_EXAMPLE = "mmsa/MOSI/Processed/unaligned_50.pkl"
  MANUAL_DOWNLOAD_INSTRUCTIONS = """\
  Put MMSA's feature pickles (MMSA README: Google Drive folder
  https://drive.google.com/drive/folders/1A2S4pqCHryGmiqnNSPLv7rEg63WvjCSk or BaiduYun)
  in <manual_dir>/mmsa/ (manual_dir: <data_dir>/downloads/manual, or the builder argument
  manual_dir=), as released: MOSI/Processed/{aligned_50,unaligned_50}.pkl,
  MOSEI/Processed/{aligned_50,unaligned_50}.pkl, SIMS/Processed/unaligned_39.pkl; the
  MulT-format pickles in mmsa/mult/ (mosi_data.pkl, mosi_data_noalign.pkl,
  mosei_senti_data.pkl, mosei_senti_data_noalign.pkl). Only the config's file is needed."""
  HOMEPAGE = "https://github.com/thuiar/MMSA"
  CITATION = _CITATION
  LICENSE = "CMU-MOSI / CMU-MOSEI / CH-SIMS: research use (cite the corpora)"

  def _pickle_relpath(self) -> str:
    c = self.builder_config
    directory, _, files, mult = DATASETS[c.dataset]
    if c.mult:
      return f"mult/{mult}{'' if c.aligned else '_noalign'}.pkl"
    return f"{directory}/Processed/{files[c.aligned]}"

  def _extra_features(self):
    c = self.builder_config
    extra = {} if c.mult else {"text_ids": tfds.features.Tensor(shape=(None,), dtype=np.int32)}
    if c.dataset == "sims":
      extra.update({f"label_{m}": tfds.features.Tensor(shape=(), dtype=np.float32)
                    for m in MODALITIES})
    return extra

  def _parse_split(self, split: str, d: dict, path: str) -> SplitArrays:
    c = self.builder_config
    bound = DATASETS[c.dataset][1]
    if c.mult:
      labels = numeric(d, "labels", split, path, (1, 2, 3))
      n = len(labels)
      if labels.size != n:
        raise ManualDirError(f"{path}: split '{split}' key 'labels' has shape {labels.shape}; "
                             f"expected one sentiment score per example ((N, 1, 1) in MulT's "
                             f"files)")
      ids = texts(d, "id", split, path, n, default="{split}/{i}")
      arrays = modality_arrays(d, split, path, n, c.aligned)
      return SplitArrays(
          features=arrays, labels=check_labels(labels.reshape(n), bound, "labels", split, path, ids),
          masks={m: np.ones(a.shape[:2], bool) for m, a in arrays.items()},
          ids=ids, raw_text=[""] * n)
    labels = numeric(d, "regression_labels", split, path, (1, 2))
    n = len(labels)
    if labels.size != n:
      raise ManualDirError(f"{path}: split '{split}' key 'regression_labels' has shape "
                           f"{labels.shape}; expected one score per example")
    ids = texts(d, "id", split, path, n)
    arrays = modality_arrays(d, split, path, n, c.aligned)
    masks = {m: np.ones(a.shape[:2], bool) for m, a in arrays.items()}
    extras = {}
    steps = arrays["text"].shape[1]
    if "text_bert" in d:
      bert = numeric(d, "text_bert", split, path, 3, n)
      if bert.shape[1:] != (3, steps):
        raise ManualDirError(f"{path}: split '{split}' key 'text_bert' has shape {bert.shape}; "
                             f"expected (N, 3, {steps}): input ids, attention mask, segment ids "
                             f"over the {steps} steps of 'text' {arrays['text'].shape}")
      token_ids, mask = bert[:, 0], bert[:, 1]
      for key, values, ok in (("attention mask text_bert[:, 1]", mask, np.isin(mask, (0, 1))),
                              ("input ids text_bert[:, 0]", token_ids,
                               (token_ids == np.round(token_ids)) & (token_ids >= 0)
                               & (token_ids < 2 ** 31))):
        bad = np.flatnonzero(~ok.all(axis=1))
        if bad.size:
          i = int(bad[0])
          raise ManualDirError(f"{path}: split '{split}' index {i} (id {ids[i]}): the {key} "
                               f"holds {values[i][~ok[i]][:3].tolist()}; expected "
                               f"{'0 or 1' if 'mask' in key else 'token ids (whole numbers)'}")
      masks["text"] = mask.astype(bool)
      extras["text_ids"] = token_ids.astype(np.int32)
    else:
      extras["text_ids"] = np.zeros((n, steps), np.int32)
    for m in ("audio", "vision"):
      key = f"{m}_lengths"
      if c.aligned and key not in d:
        continue
      get(d, key, split, path, " (unaligned MMSA files give each example's audio / vision "
                               "length)")
      lengths = numeric(d, key, split, path, 1, n)
      lengths = check_lengths(lengths, arrays[m].shape[1], key, m, split, path, ids)
      masks[m] = length_mask(lengths, arrays[m].shape[1])
    self.info.metadata.setdefault("mask_source", {}).update(
        text="text_bert[:, 1] (BERT attention mask)" if "text_bert" in d else
        "none: all steps (no text_bert)",
        **{m: f"{m}_lengths" if f"{m}_lengths" in d else f"none: all steps (no {m}_lengths)"
           for m in ("audio", "vision")})
    if c.dataset == "sims":
      for m, k in zip(MODALITIES, "TAV"):
        key = f"regression_labels_{k}"
        unimodal = numeric(d, key, split, path, (1, 2), n).reshape(n)
        extras[f"label_{m}"] = check_labels(unimodal, bound, key, split, path, ids)
    return SplitArrays(
        features=arrays, masks=masks, ids=ids,
        labels=check_labels(labels.reshape(n), bound, "regression_labels", split, path, ids),
        raw_text=texts(d, "raw_text", split, path, n, default=""), extras=extras)

  def _split_generators(self, dl_manager):
    self.info.metadata["mask_source"] = (
        {m: "none: all steps (MulT files)" for m in MODALITIES} if self.builder_config.mult
        else {})
    return super()._split_generators(dl_manager)
