"""Training configuration: Python files with ``get_config()`` plus ``key=value`` overrides."""
from __future__ import annotations

import ast
import difflib
import importlib.util
import json
import math
import os
import pathlib

import ml_collections



def _methods():
  """The method registry, imported when first needed: the method modules import jax, the
  data sets and mmbal.train, which `mmbal --help` and this module's importers need not pay for."""
  from mmbal import methods  # pylint: disable=import-outside-toplevel
  return methods


def __getattr__(name):
  if name == "METHODS":   # every registered method (mmbal/methods/<name>.py)
    return tuple(_methods().REGISTRY)
  raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def default_config() -> ml_collections.ConfigDict:
  """Every field a run understands, with the embedded default (mfeat, imbalanced views)."""
  c = ml_collections.ConfigDict()
  c.seed = 0
  c.data = dict(
      name="uci_mfeat",        # a registered TFDS builder: uci_mfeat | synthetic_imbalance
      builder_config="",       # builder config name (synthetic_imbalance presets), "" = default
      modalities=(),           # which modalities to use, in this order; () = the data set's
                               # defaults (uci_mfeat: pix, fou, mor), else all of them
      data_dir="",             # TFDS data dir; "" = ~/tensorflow_datasets
      manual_dir="",           # hand-downloaded files of a manual builder; "" = TFDS's
                               # <data_dir>/downloads/manual
      path="",                 # name=arrays: your .npz / per-split .npz folder / .mat / CSVs
      val_fraction=0.15,       # validation split carved (stratified) from train
      in_memory=True,          # read the splits into host memory once (small data sets)
      non_finite="refuse",     # NaN/inf inputs: refuse | zero | drop (in-memory loads)
      num_workers=0,           # grain worker processes building training batches (decoding
                               # frames; benchmarks/pipeline.py); 0: threads in this process
  )
  c.model = dict(
      feature_dim=64,
      hidden_dim=128,
      fusion="concat",         # concat | sum | film | gated | attention | late | late_entropy
      unimodal="probe",        # probe | heads | split_head | shared_head (mmbal.models.classifier)
      image_encoder="cnn",     # cnn | cnn_flat | resnet18: the encoder of image-shaped modalities
      missing="zero",          # an absent modality: zero | learned (a learned feature vector)
      dtype="float32",         # the encoders' compute dtype: float32 | bfloat16 (parameters
                               # and the fused head stay float32)
  )
  c.method = dict(
      name="joint",            # see METHODS
      grad_mode="sum",         # sum: one backward pass of the weighted loss;
                               # stacked: per-objective gradients through the optax chain
      backward="unrolled",     # stacked gradients' backward passes: unrolled (one VJP each)
                               # | vmap (one batched VJP; mmbal.objective_grads)
      # Each method's own settings (used when method.name selects it): the defaults of its
      # settings dataclass in mmbal/methods/<name>.py, where each field is documented.
      **{name: m.defaults() for name, m in _methods().REGISTRY.items() if m.defaults()},
  )
  c.optimizer = dict(
      name="adamw",            # adamw | sgd
      learning_rate=1e-3,
      weight_decay=1e-4,
      momentum=0.9,            # sgd only
      warmup_steps=0,
      schedule="cosine",       # cosine | constant
      grad_clip_norm=0.0,      # 0 = off
  )
  c.train = dict(
      batch_size=64,           # global batch, split over the mesh's data axis
      num_epochs=20,
      num_steps=0,             # > 0 overrides num_epochs
      eval_every_steps=0,      # 0 = once per epoch
      log_every_steps=20,
      checkpoint_every_steps=0,  # 0 = at every evaluation
      keep_checkpoints=2,
      stop_after_steps=0,      # > 0: stop early (simulated preemption); resume continues
      regression_loss="l1",    # regression data sets: l1 | mse
      modality_dropout=0.0,    # each example drops each modality with this probability
      allow_changed=(),        # fields that may differ from the workdir's config on resume
                               # (seeded per step; the model sees it as absent)
  )
  c.eval = dict(
      batch_size=256,
      linear_probe=True,       # after training, fit a linear probe per encoder (train split)
      regression_bins="mosi",  # regression metrics: mosi (MOSI/MOSEI, labels in [-3, 3]) | sims
  )
  c.mesh = dict(data=-1, model=1)   # -1 = all remaining devices; model > 1 shards parameters
  c.log = dict(tensorboard=False, progress=True)
  return c


def load_config(path: str | None) -> ml_collections.ConfigDict:
  """Loads ``get_config()`` from a Python file (or a run's ``config.json``), checked
  against `default_config`.

  A config file may name another as its base, ``BASE = "joint.py"`` (relative to itself):
  the base is applied first, then this file's ``get_config()`` on top. Per-method configs
  of a data set are thus a few lines over its ``joint.py``.
  """
  config = default_config()
  if not path:
    return config
  file = pathlib.Path(path)
  if not file.is_file():
    raise FileNotFoundError(f"--config: no such file {path}")
  if file.suffix == ".json":
    _merge(config, json.loads(file.read_text()), "")
    return config
  _apply_file(config, file, ())
  return config


def _apply_file(config, file: pathlib.Path, chain: tuple):
  file = file.resolve()
  if file in chain:
    raise ValueError(f"--config: BASE cycle {' -> '.join(str(f) for f in chain + (file,))}")
  if not file.is_file():
    raise FileNotFoundError(f"--config: BASE of {chain[-1]} names {file}, which does not exist")
  spec = importlib.util.spec_from_file_location(f"mmbal_config_{file.stem}", file)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  if not hasattr(module, "get_config"):
    raise ValueError(f"--config {file}: defines no get_config()")
  if getattr(module, "BASE", None):
    _apply_file(config, file.parent / module.BASE, chain + (file,))
  _merge(config, module.get_config(), "")


def _merge(base, update, prefix):
  for key, value in update.items():
    name = prefix + key
    if key not in base:
      raise ValueError(_unknown(name, base, prefix))
    if isinstance(base[key], ml_collections.ConfigDict):
      _merge(base[key], value, name + ".")
    else:
      base[key] = _coerce(name, base[key], value)


def _unknown(name, node, prefix):
  options = [prefix + k for k in node.keys()]
  close = difflib.get_close_matches(name, options, n=1)
  hint = f"; did you mean {close[0]!r}?" if close else ""
  return f"unknown config field {name!r}{hint} (fields here: {', '.join(options)})"


def _coerce(name, current, value):
  """Converts ``value`` to the type of the field's default."""
  if isinstance(current, tuple):
    if isinstance(value, str):
      value = tuple(v.strip() for v in value.split(",") if v.strip())
    return tuple(value) if isinstance(value, (list, tuple)) else (value,)
  if isinstance(current, bool):
    if isinstance(value, str) and value.lower() in ("true", "false", "1", "0"):
      return value.lower() in ("true", "1")
    if isinstance(value, bool):
      return value
  elif isinstance(current, (int, float)) and not isinstance(value, bool):
    try:
      number = float(value)
      if isinstance(current, int) and number == int(number):
        return int(number)
      if isinstance(current, float):
        return number
    except (TypeError, ValueError, OverflowError):   # inf or 1e400 for an integer field
      pass
  elif isinstance(current, str) and isinstance(value, str):
    return value
  raise ValueError(f"config field {name!r} expects {type(current).__name__}, got {value!r}")


def apply_overrides(config: ml_collections.ConfigDict, overrides) -> ml_collections.ConfigDict:
  """Applies ``["train.batch_size=128", "data.modalities=pix,fou"]``."""
  for item in overrides:
    if "=" not in item:
      raise ValueError(f"override {item!r} must look like field.name=value")
    key, raw = item.split("=", 1)
    try:
      value = ast.literal_eval(raw)
    except (ValueError, SyntaxError):
      value = raw
    node, parts = config, key.split(".")
    for i, part in enumerate(parts[:-1]):
      if part not in node or not isinstance(node[part], ml_collections.ConfigDict):
        raise ValueError(_unknown(".".join(parts[:i + 1]), node, ".".join(parts[:i]) + "." if i else ""))
      node = node[part]
    prefix = ".".join(parts[:-1]) + "." if len(parts) > 1 else ""
    if parts[-1] not in node or isinstance(node[parts[-1]], ml_collections.ConfigDict):
      raise ValueError(_unknown(key, node, prefix))
    node[parts[-1]] = _coerce(key, node[parts[-1]], value)
  return config


def check_config(c: ml_collections.ConfigDict):
  """Value checks that need no data; raises ValueError naming the field."""
  def need(ok, field, expected):
    if not ok:
      raise ValueError(f"config field {field!r} must be {expected}, got {_get(c, field)!r}")
  for field, kind, low, high in NUMERIC_RANGES:
    _check_number(c, field, kind, low, high)
  need(isinstance(c.data.modalities, (tuple, list)) and
       all(isinstance(m, str) for m in c.data.modalities), "data.modalities",
       "a list of modality names, e.g. data.modalities=pix,fou")
  method = _methods().get(c.method.name)   # "did you mean" for a misspelled name
  method.parse(c.method.get(c.method.name))   # each setting's choices / range
  method.check_model(c.model)
  need(c.model.dtype in ("float32", "bfloat16"), "model.dtype", "'float32' or 'bfloat16'")
  need(c.method.grad_mode in ("sum", "stacked"), "method.grad_mode", "'sum' or 'stacked'")
  from mmbal.grads import BACKWARD_MODES  # pylint: disable=import-outside-toplevel
  need(c.method.backward in BACKWARD_MODES, "method.backward",
       " or ".join(repr(mode) for mode in BACKWARD_MODES))
  need(c.optimizer.name in ("adamw", "sgd"), "optimizer.name", "'adamw' or 'sgd'")
  need(c.optimizer.schedule in ("cosine", "constant"), "optimizer.schedule", "'cosine' or 'constant'")
  need(c.train.num_epochs > 0 or c.train.num_steps > 0, "train.num_epochs", "> 0 (or train.num_steps > 0)")
  need(len(set(c.data.modalities)) == len(c.data.modalities), "data.modalities", "unique names")
  from mmbal.data import names  # pylint: disable=import-outside-toplevel
  names.check(c.data.name)
  need(c.data.name != "arrays" or bool(c.data.path), "data.path",
       "the file or folder to read with data.name=arrays (a .npz, a .mat, a folder of "
       "train/test .npz or of CSVs)")
  need(not c.data.path or os.path.exists(os.path.expanduser(c.data.path)), "data.path",
       "an existing file or folder")
  need(c.data.non_finite in ("refuse", "zero", "drop"), "data.non_finite",
       "'refuse', 'zero' or 'drop'")
  need(c.mesh.model >= 1, "mesh.model", ">= 1")
  need(c.mesh.data == -1 or c.mesh.data >= 1, "mesh.data", "-1 or >= 1")
  need(c.train.regression_loss in ("l1", "mse"), "train.regression_loss", "'l1' or 'mse'")
  need(c.eval.regression_bins in ("mosi", "sims"), "eval.regression_bins", "'mosi' or 'sims'")


# Numeric fields: (field, int | float, low, high); both ends inclusive, None = open. Checked
# before anything loads or compiles: finite, of the right kind, in range.
NUMERIC_RANGES = (
    ("seed", int, 0, 2**32 - 1),
    ("data.val_fraction", float, 1e-6, 0.9), ("data.num_workers", int, 0, 1024),
    ("model.feature_dim", int, 1, 1 << 16), ("model.hidden_dim", int, 1, 1 << 16),
    ("optimizer.learning_rate", float, 1e-12, 10.0), ("optimizer.weight_decay", float, 0.0, 1.0),
    ("optimizer.momentum", float, 0.0, 0.999), ("optimizer.warmup_steps", int, 0, None),
    ("optimizer.grad_clip_norm", float, 0.0, None),
    ("train.batch_size", int, 1, 1 << 20), ("train.num_epochs", int, 0, 1 << 20),
    ("train.num_steps", int, 0, None), ("train.eval_every_steps", int, 0, None),
    ("train.log_every_steps", int, 1, None), ("train.checkpoint_every_steps", int, 0, None),
    ("train.keep_checkpoints", int, 1, None), ("train.stop_after_steps", int, 0, None),
    ("train.modality_dropout", float, 0.0, 0.99),
    ("eval.batch_size", int, 1, 1 << 20),
)


def _check_number(c, field, kind, low, high):
  value = _get(c, field)
  ok = (isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
        and (kind is float or float(value).is_integer()))
  if ok and ((low is not None and value < low) or (high is not None and value > high)):
    ok = False
  if not ok:
    span = f"[{low}, {'inf' if high is None else high}]"
    raise ValueError(f"config field {field!r} must be {'an integer' if kind is int else 'a number'} "
                     f"in {span}, got {value!r}")


def _get(c, field):
  for part in field.split("."):
    c = c[part]
  return c
