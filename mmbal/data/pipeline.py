"""Grain input pipelines over prepared TFDS data sets (random-access array_record).

`load` prepares a builder if needed and returns the train / validation / test
splits as `Source`s, with the validation split carved, stratified, from train.
`train_iterator` gives checkpointable, per-process training batches and
`eval_batches` gives padded, masked evaluation batches that score every example
exactly once. Batches are dicts of numpy arrays:
`{<modality>: float32 [B, ...], "label": int32 [B]}` (multi-label data sets:
`"label": int32 [B, C]`, multi-hot; regression: `"label": float32 [B]`; `DataSpec.task`),
plus `"<modality>_mask": bool [B, T]` (real sequence steps) for the modalities in
`DataSpec.masks`, and `"mask": bool [B]` for evaluation.
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import logging
import os
from typing import Sequence

import grain
import jax
import numpy as np
import tensorflow_datasets as tfds

from mmbal.data import _split
from mmbal.data import frames
from mmbal.data import names as data_names
# Imported for their side effect: registering the builders with TFDS.
from mmbal.data import ave  # pylint: disable=unused-import
from mmbal.data import crema_d  # pylint: disable=unused-import
from mmbal.data import easy_vqa  # pylint: disable=unused-import
from mmbal.data import hateful_memes  # pylint: disable=unused-import
from mmbal.data import iemocap  # pylint: disable=unused-import
from mmbal.data import mmimdb  # pylint: disable=unused-import
from mmbal.data import mmsa  # pylint: disable=unused-import
from mmbal.data import kinetics_sounds  # pylint: disable=unused-import
from mmbal.data import synthetic_imbalance  # pylint: disable=unused-import
from mmbal.data import ucf101  # pylint: disable=unused-import
from mmbal.data import upmc_food101  # pylint: disable=unused-import
from mmbal.data import uci_mfeat  # pylint: disable=unused-import
from mmbal.data import vggsound  # pylint: disable=unused-import

log = logging.getLogger("mmbal")

# The batches are produced by a few threads with a short read-ahead (grain's
# default is 16 threads and 500 elements, which is too much for whole batches).
DEFAULT_READ_OPTIONS = grain.ReadOptions(num_threads=2, prefetch_buffer_size=4)


@dataclasses.dataclass(frozen=True)
class DataSpec:
  """What a model needs to know about a data set.

  Attributes:
    modalities: name -> per-example shape, in the order the modalities are used.
    num_classes: labels lie in `[0, num_classes)`.
    split_sizes: split name -> number of examples.
    task: `"classification"` (one class index per example, `label` int32 `[B]`),
      `"multilabel"` (a multi-hot int32 `label` `[B, num_classes]` of 0s and 1s) or
      `"regression"` (a finite float32 `label` `[B]`; `num_classes` is 1, the one output).
    masks: modalities whose batches carry `"<modality>_mask"`, bool `[B, T]`: which of the
      `T` steps of a sequence are real (the builder's `info.metadata["masks"]`).
  """

  modalities: dict[str, tuple[int, ...]]
  num_classes: int
  split_sizes: dict[str, int]
  task: str = "classification"
  masks: tuple[str, ...] = ()


TASKS = ("classification", "multilabel", "regression")


def spec_from_builder(builder: tfds.core.DatasetBuilder,
                      modalities: Sequence[str] | None = None) -> DataSpec:
  """DataSpec of a builder's data; `modalities` picks which ones (default: all, stored order).

  The task is `info.metadata["task"]` when the builder sets it, else `"classification"`
  for a `ClassLabel` label, `"multilabel"` for an integer label vector `[C]` and
  `"regression"` for a float scalar label (`num_classes` 1).
  Features of dynamic shape (`None` dims) take their shape from `info.metadata["shapes"]`.
  """
  features = builder.info.features
  label = features["label"] if features is not None and "label" in features else None
  metadata = builder.info.metadata or {}
  task, num_classes = _label_task(builder.name, label, metadata.get("task"))
  available = list(metadata.get("modalities") or [k for k in features if k != "label"])
  names = _select_modalities(available, modalities, metadata.get("default_modalities"))
  decoder = frames.input_decoder(builder)  # Builders storing encoded media decode in the pipeline.
  if decoder is not None:
    shapes = decoder.shapes
  else:
    stored = metadata.get("shapes") or {}
    shapes = {n: stored[n] if None in tuple(features[n].shape) and n in stored
              else features[n].shape for n in names}
  masked = set(metadata.get("masks") or ())
  return DataSpec(
      modalities={n: tuple(shapes[n]) for n in names},
      num_classes=num_classes,
      split_sizes={k: v.num_examples for k, v in builder.info.splits.items()},
      task=task,
      masks=tuple(n for n in names if n in masked))


def _label_task(name: str, label, task: str | None) -> tuple[str, int]:
  """(task, num_classes) of a builder's `label` feature, checked against its metadata."""
  if task is not None and task not in TASKS:
    raise ValueError(f"task: expected one of {list(TASKS)} in {name}'s metadata, got {task!r}")
  if isinstance(label, tfds.features.ClassLabel) and task in (None, "classification"):
    return "classification", label.num_classes
  shape = tuple(getattr(label, "shape", ()) or ())
  if (isinstance(label, tfds.features.Tensor) and not shape
      and np.issubdtype(np.dtype(label.np_dtype), np.floating) and task in (None, "regression")):
    return "regression", 1
  if (isinstance(label, tfds.features.Tensor) and len(shape) == 1 and shape[0]
      and np.issubdtype(np.dtype(label.np_dtype), np.integer) and task in (None, "multilabel")):
    return "multilabel", int(shape[0])
  raise ValueError(f"label: expected a tfds.features.ClassLabel feature 'label' in {name} "
                   f"(task 'classification'), an integer Tensor of shape [num_classes] "
                   f"(task 'multilabel') or a float scalar Tensor (task 'regression'), got "
                   f"{label!r}" + (f" with task {task!r}" if task else ""))


def _select_modalities(available: list[str], requested, default=None) -> list[str]:
  """The requested modalities, checked; None: all; empty: the builder's defaults, else all."""
  if requested is None:
    return available
  if not isinstance(requested, str) and not len(requested):
    return list(default or available)
  if isinstance(requested, str):
    raise ValueError(f"modalities: expected a sequence of names, got the string {requested!r}")
  requested = list(requested)
  unknown = [m for m in requested if m not in available]
  if not requested or unknown or len(set(requested)) != len(requested):
    raise ValueError(f"modalities: expected a non-empty list of distinct names from "
                     f"{available}, got {requested}" +
                     (f" (unknown: {unknown})" if unknown else ""))
  return requested


class Source:
  """Random access to some examples of one TFDS split, restricted to chosen modalities.

  `indices[i]` is the record number of the i-th example in the TFDS split. With a
  `decoder` (`mmbal.data.frames.Decoder`), records are decoded into the modalities:
  deterministically by `gather(positions)`, with per-example random draws by
  `gather(positions, keys)` (training). `masks`: modalities whose stored
  `"<modality>_mask"` is gathered too (bool).
  """

  def __init__(self, records, indices: np.ndarray, modalities: Sequence[str], name: str,
               decoder: frames.Decoder | None = None, masks: Sequence[str] = ()):
    self.records = records
    self.indices = np.asarray(indices, dtype=np.int64)
    self.modalities = tuple(modalities)
    self.name = name
    self.decoder = decoder
    self.masks = tuple(masks)
    self._arrays = None
    self._records = None  # A decoded source's stored records, when held in memory.

  def __len__(self) -> int:
    return len(self.indices)

  def __repr__(self) -> str:
    return f"Source({self.name!r}, {len(self)} examples, modalities={self.modalities})"

  def gather(self, positions, keys=None) -> dict[str, np.ndarray]:
    """The batch of examples at `positions` (ints in `[0, len(self))`).

    `keys`: per-example random keys for a decoded source's training draws
    (`frames.example_keys`); None decodes deterministically.
    """
    positions = np.asarray(positions, dtype=np.int64)
    if self._arrays is not None:
      return {k: v[positions] for k, v in self._arrays.items()}
    if self._records is not None:
      records = [self._records[p] for p in positions]
    else:
      records = self.records.__getitems__(self.indices[positions].tolist())
    if self.decoder is not None:
      batch = self.decoder(records, self.modalities, keys)
    else:
      batch = {m: np.stack([r[m] for r in records]).astype(np.float32, copy=False)
               for m in self.modalities}
    for m in self.masks:
      batch[f"{m}_mask"] = np.stack([r[f"{m}_mask"] for r in records]).astype(bool, copy=False)
    labels = np.array([r["label"] for r in records])
    batch["label"] = labels.astype(np.float32 if labels.dtype.kind == "f" else np.int32,
                                   copy=False)
    return batch

  def __getitem__(self, position: int) -> dict[str, np.ndarray]:
    return {k: v[0] for k, v in self.gather([position]).items()}

  def to_numpy(self) -> dict[str, np.ndarray]:
    """The whole split as one batch."""
    return self.gather(np.arange(len(self)))

  def load_into_memory(self) -> Source:
    """Reads every example once; later `gather`s are plain numpy indexing.

    A decoded source keeps its stored records instead (decoding stays per `gather`, so
    training draws stay fresh).
    """
    if self.decoder is not None:
      self._records = self.records.__getitems__(self.indices.tolist())
    else:
      self._arrays = self.to_numpy()
    return self


class _ReadOnce:
  """A TFDS data source deserialized in full at the first read, for in-memory loads: the
  label check and the load then share one pass (deserializing is most of a load's time)."""

  def __init__(self, records):
    self.records, self._all = records, None

  def __len__(self) -> int:
    return len(self.records)

  def __getitems__(self, indices):
    if self._all is None:
      self._all = self.records.__getitems__(list(range(len(self.records))))
    return [self._all[i] for i in indices]

  def release(self):
    self._all = None


_reused_loads: dict | None = None


@contextlib.contextmanager
def reuse_in_memory_loads():
  """Within the block, an in-memory `load` called again with the same arguments returns the
  data it loaded the first time (benchmarks that train many runs on one data set in one
  process; the sources are read-only)."""
  global _reused_loads
  outer, _reused_loads = _reused_loads, {} if _reused_loads is None else _reused_loads
  try:
    yield
  finally:
    _reused_loads = outer


@dataclasses.dataclass(frozen=True)
class Splits:
  """A loaded data set: its spec (sizes after carving) and the three splits."""

  spec: DataSpec
  train: Source
  validation: Source
  test: Source
  builder: tfds.core.DatasetBuilder

  def __getitem__(self, split: str) -> Source:
    return {"train": self.train, "validation": self.validation, "test": self.test}[split]


def load(name: str, *, data_dir: str | os.PathLike | None,
         modalities: Sequence[str] | None = None, config=None, val_fraction: float = 0.1,
         seed: int = 0, in_memory: bool = False, non_finite: str = "refuse",
         **builder_kwargs) -> Splits:
  """Prepares (if needed) and opens a TFDS data set with `train` and `test` splits.

  Args:
    name: registered builder name, e.g. `"uci_mfeat"`, `"synthetic_imbalance"`
      (`"synthetic_imbalance/two_modal"` also works), `"crema_d"` or an alias such as
      `"mfeat"` (`mmbal.data.names`).
    data_dir: TFDS data directory; missing data is generated there as array_record.
    modalities: names of the modalities to use, in this order (None: all; empty: the
      builder's `info.metadata["default_modalities"]`, else all).
    config: builder config: a preset name, a `tfds.core.BuilderConfig`, or
      None / "" for the default.
    val_fraction: fraction of train carved out as the validation split,
      stratified by label, chosen with `seed`; test is left untouched. A builder with
      its own `validation` split (e.g. `crema_d`) uses that one instead.
    seed: seed of the validation carve-out.
    in_memory: read every split into numpy arrays once (fast for small data).
    non_finite: what an in-memory load does with examples holding NaN / inf inputs:
      ``"refuse"`` (an error naming the split, modality and count), ``"zero"`` (those
      values set to 0) or ``"drop"`` (those examples removed); both say what they did.
    **builder_kwargs: passed on to `tfds.builder` (e.g. `version`).

  Returns:
    `Splits` with elements `{<modality>: float32, "label": int32}` (regression: float32
    labels; `"<modality>_mask"` for the modalities in `spec.masks`).

  Raises:
    ValueError: naming the field, for unknown modalities, a `val_fraction` outside
      (0, 1) or one that leaves the validation or train split empty, missing
      splits, labels outside `[0, num_classes)`, or (regression) non-finite labels.
  """
  if not 0.0 < val_fraction < 1.0:
    raise ValueError(f"val_fraction: expected a value in (0, 1), got {val_fraction}")
  reuse_key = repr((name, str(data_dir), modalities and tuple(modalities), config, val_fraction,
                    seed, non_finite, sorted(builder_kwargs.items())))
  if in_memory and _reused_loads is not None and reuse_key in _reused_loads:
    return _reused_loads[reuse_key]
  if config:
    builder_kwargs["config"] = config
  base, slash, rest = name.partition("/")
  base = data_names.DATA_SETS.get(data_names.canonical(base), base)
  builder = tfds.builder(base + slash + rest, data_dir=data_dir,
                         **builder_kwargs)
  if not builder.is_prepared():   # TFDS's own stdout lines ("Unknown size") say little
    log.info("preparing %s in %s (first use; later runs reuse it)", builder.name, builder.data_dir)
    with contextlib.redirect_stdout(io.StringIO()):
      builder.download_and_prepare(file_format="array_record")
  spec = spec_from_builder(builder, modalities)
  if not {"train", "test"} <= set(spec.split_sizes):
    raise ValueError(f"split: expected 'train' and 'test' splits in {builder.name}, "
                     f"found {sorted(spec.split_sizes)}")
  read = _ReadOnce if in_memory else (lambda records: records)
  train_records = read(builder.as_data_source("train"))
  test_records = read(builder.as_data_source("test"))
  train_labels = _checked_labels(train_records, spec.num_classes, "train", spec.task)
  _checked_labels(test_records, spec.num_classes, "test", spec.task)
  names, decoder = list(spec.modalities), frames.input_decoder(builder)
  extra = dict(decoder=decoder, masks=spec.masks)

  if "validation" in spec.split_sizes:  # The builder's own validation split.
    val_records = read(builder.as_data_source("validation"))
    _checked_labels(val_records, spec.num_classes, "validation", spec.task)
    val_source = Source(val_records, np.arange(len(val_records)), names, "validation", **extra)
    train_idx = np.arange(len(train_records))
  else:
    num_val = int(round(val_fraction * len(train_labels)))
    if not 0 < num_val < len(train_labels):
      raise ValueError(f"val_fraction: {val_fraction} of {len(train_labels)} train examples "
                       f"gives {num_val} validation examples; expected at least 1 validation "
                       f"and 1 remaining train example")
    if spec.task == "classification":
      strata = train_labels
    elif spec.task == "regression":  # By the label's sign: negative, zero, positive.
      strata = np.sign(train_labels).astype(np.int64)
    else:  # Multi-label: by label set.
      strata = np.unique(train_labels, axis=0, return_inverse=True)[1].reshape(-1)
    val_idx, train_idx = _split.stratified_split(strata, num_val, seed)
    val_source = Source(train_records, val_idx, names, "validation", **extra)
  splits = dict(train=Source(train_records, train_idx, names, "train", **extra),
                validation=val_source,
                test=Source(test_records, np.arange(len(test_records)), names, "test", **extra))
  if in_memory:
    for source in splits.values():
      source.load_into_memory()
      _check_finite(source, builder.name, non_finite)
    for source in splits.values():
      source.records.release()
  spec = dataclasses.replace(spec, split_sizes={k: len(v) for k, v in splits.items()})
  loaded = Splits(spec=spec, builder=builder, **splits)
  if in_memory and _reused_loads is not None:
    _reused_loads[reuse_key] = loaded
  return loaded


def _check_finite(source: Source, data_name: str, policy: str = "refuse"):
  """NaN / inf inputs: refused (naming the split, the modality, how many and the first),
  zeroed or dropped (``policy``), with a warning saying how many."""
  arrays = source._arrays   # pylint: disable=protected-access
  if arrays is None:   # decoded media: checked per batch
    return
  dropped = np.zeros(len(source), bool)
  for m in source.modalities:
    values = arrays[m]
    if values.dtype.kind != "f":
      continue
    finite = np.isfinite(values)
    bad = ~finite.reshape(len(values), -1).all(axis=1)
    if not bad.any():
      continue
    where = (f"{data_name} {source.name}: modality {m!r} has NaN or inf values in "
             f"{int(bad.sum())} of {len(values)} examples (the first: example "
             f"{int(np.flatnonzero(bad)[0])})")
    if policy == "refuse":
      raise ValueError(f"{where}; clean the data, or set data.non_finite=zero (set them to 0) "
                       f"or data.non_finite=drop (leave those examples out)")
    log.warning("%s: %s", where, "set to 0" if policy == "zero" else "examples dropped")
    if policy == "zero":
      values[~finite] = 0
    dropped |= bad
  if policy == "drop" and dropped.any():
    source._arrays = {k: v[~dropped] for k, v in arrays.items()}   # pylint: disable=protected-access
    source.indices = source.indices[~dropped]


def _checked_labels(records, num_classes: int, split: str,
                    task: str = "classification") -> np.ndarray:
  """All labels of a TFDS split, checked: in range, multi-hot 0/1 vectors `[num_classes]`, or
  (regression) finite float scalars."""
  labels = np.array([r["label"] for r in records.__getitems__(list(range(len(records))))])
  if task == "regression":
    if labels.ndim != 1 or labels.dtype.kind != "f":
      raise ValueError(f"label: expected one float label per example in split '{split}' "
                       f"(task 'regression'), got labels of dtype {labels.dtype} and shape "
                       f"{labels.shape}")
    bad = np.flatnonzero(~np.isfinite(labels))
    if bad.size:
      raise ValueError(f"label: expected finite regression labels in split '{split}', found "
                       f"{labels[bad[0]]} at index {bad[0]} ({bad.size} non-finite labels)")
    return labels
  if task == "multilabel":
    if labels.ndim != 2 or labels.shape[1] != num_classes:
      raise ValueError(f"label: expected multi-hot vectors of width {num_classes} in split "
                       f"'{split}', got labels of shape {labels.shape}")
    bad = labels[(labels != 0) & (labels != 1)]
    if bad.size:
      raise ValueError(f"label: expected multi-hot values 0 or 1 in split '{split}', found "
                       f"{sorted(set(bad.tolist()))}")
    return labels
  bad = labels[(labels < 0) | (labels >= num_classes)]
  if bad.size:
    raise ValueError(f"label: expected values in [0, {num_classes}) in split '{split}', "
                     f"found {sorted(set(bad.tolist()))}")
  return labels


def steps_per_epoch(source: Source | int, global_batch_size: int) -> int:
  """Number of full global batches in one pass over `source` (or over that many examples)."""
  n = int(source) if isinstance(source, (int, np.integer)) else len(source)
  if global_batch_size < 1 or n < global_batch_size:
    raise ValueError(f"global_batch_size: expected an int in [1, {n}] (split size), "
                     f"got {global_batch_size}")
  return n // global_batch_size


def _process_shard(global_batch_size: int, shard_index, shard_count) -> tuple[int, int, int]:
  """(shard_index, shard_count, per-process batch size), defaulting to the JAX processes."""
  shard_index = jax.process_index() if shard_index is None else shard_index
  shard_count = jax.process_count() if shard_count is None else shard_count
  if not 0 <= shard_index < shard_count:
    raise ValueError(f"shard_index: expected a value in [0, {shard_count}), got {shard_index}")
  if global_batch_size < 1 or global_batch_size % shard_count:
    raise ValueError(f"global_batch_size: expected a positive multiple of the process count "
                     f"{shard_count}, got {global_batch_size}")
  return shard_index, shard_count, global_batch_size // shard_count


def train_iterator(source: Source, global_batch_size: int, *, seed: int = 0,
                   num_epochs: int | None = None, shard_index: int | None = None,
                   shard_count: int | None = None,
                   read_options: grain.ReadOptions = DEFAULT_READ_OPTIONS,
                   num_workers: int = 0) -> grain.DatasetIterator:
  """Shuffled training batches for this process; checkpointable with `get_state/set_state`.

  Global step t covers examples `t*G ... (t+1)*G - 1` of the shuffled stream
  (G = `global_batch_size`). Each epoch is reshuffled (seeded) and batches may
  span two epochs. Process `shard_index` takes every `shard_count`-th of them,
  so its batches have G / shard_count examples. With `num_epochs`, the stream is
  cut to whole global batches, so every process gets the same number of batches.

  A decoded source with random training draws (frame sampling, augmentation) draws
  those of stream position t from `(seed, t)` (`mmbal.data.frames`): fresh every epoch,
  the same for any process count.

  `num_workers` > 0 builds the batches in that many grain worker processes (for decoding
  that one process cannot keep up with; `benchmarks/pipeline.py` measures it); the batches
  are the same as with none. Each worker holds its own copy of the source (of an in-memory
  data set: its memory once per worker), and the iterator's state is only restorable into an
  iterator with workers (resuming with another `data.num_workers` is refused by the config
  check).
  """
  if not (isinstance(num_workers, int) and num_workers >= 0):
    raise ValueError(f"num_workers: expected an int >= 0, got {num_workers!r}")
  shard_index, shard_count, batch_size = _process_shard(global_batch_size, shard_index,
                                                        shard_count)
  steps_per_epoch(source, global_batch_size)  # Validates the batch size.
  ds = grain.MapDataset.range(len(source)).shuffle(seed=seed).repeat(num_epochs)
  sampled = source.decoder is not None and source.decoder.random
  if sampled:
    ds = ds.map_with_index(lambda t, p: (t, p))
  if num_epochs is not None:
    ds = ds[: len(ds) // global_batch_size * global_batch_size]
  ds = ds[shard_index::shard_count].batch(batch_size, drop_remainder=True)
  if sampled:
    ds = ds.map(lambda b: source.gather(b[1], keys=frames.example_keys(seed, b[0])))
  else:
    ds = ds.map(source.gather)
  ds = ds.to_iter_dataset(read_options)
  if num_workers:
    from absl import flags  # pylint: disable=import-outside-toplevel
    if not flags.FLAGS.is_parsed():   # grain's workers read absl flags; outside absl.app
      flags.FLAGS.mark_as_parsed()    # nothing parses them (their defaults are what we want)
    ds = ds.mp_prefetch(grain.MultiprocessingOptions(num_workers=num_workers))
  return iter(ds)


def eval_batches(source: Source, global_batch_size: int, *, shard_index: int | None = None,
                 shard_count: int | None = None) -> grain.MapDataset:
  """Padded evaluation batches for this process, with a boolean `"mask"` of real examples.

  Process `shard_index` scores examples `shard_index, shard_index + shard_count,
  ...`. Every process gets the same number of batches of G / shard_count
  examples: the last ones are padded with zeros (mask False), and entirely padded
  batches are added where needed. Over all processes, each example is scored
  exactly once.
  """
  shard_index, shard_count, batch_size = _process_shard(global_batch_size, shard_index,
                                                        shard_count)
  per_process = -(-len(source) // shard_count)
  num_batches = max(1, -(-per_process // batch_size))
  positions = np.full(num_batches * batch_size, -1, dtype=np.int64)
  mine = np.arange(shard_index, len(source), shard_count)
  positions[: len(mine)] = mine
  positions = positions.reshape(num_batches, batch_size)

  def make_batch(i):
    mask = positions[i] >= 0
    batch = source.gather(np.where(mask, positions[i], 0))
    for value in batch.values():
      value[~mask] = 0
    batch["mask"] = mask
    return batch

  return grain.MapDataset.range(num_batches).map(make_batch)
