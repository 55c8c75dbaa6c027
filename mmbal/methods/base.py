"""What a balancing method is to the trainer, and the registry of methods.

A method is one module in `mmbal.methods` that registers a `Method`: its typed settings
(a frozen dataclass whose defaults are the ``method.<name>.*`` config fields), what it
requires (tasks, ``model.unimodal``, ``model.fusion``, each with the reason shown in the
error), the model its generated configs use, and ``build(context, settings) -> MethodSpec``.
Everything that lists methods (the config's fields and checks, the task limits, the config
generator, the tests, the overhead benchmark) reads `REGISTRY`; see docs/adding-a-method.md.
"""
from __future__ import annotations

import dataclasses
import difflib
from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from mmbal.tasks import is_regression

TASK_KINDS = ("classification", "multilabel", "regression")


def setting(default, *, choices: tuple | None = None, low: float | None = None,
            high: float | None = None, doc: str = ""):
  """A method setting: its default, its valid values (``choices``, or the closed range
  ``[low, high]``; None leaves that end open) and a one-line description."""
  return dataclasses.field(default=default,
                           metadata=dict(choices=choices, low=low, high=high, doc=doc))


@dataclasses.dataclass(frozen=True)
class NoSettings:
  """A method without settings of its own."""


@dataclasses.dataclass(frozen=True)
class MethodSpec:
  """How a built method runs in the trainer (from ``Method.build``)."""
  weights: np.ndarray                       # [K] objective weights ([fused, m_1..m_M])
  grad_mode: str = "sum"                    # "sum" | "stacked"
  transform: optax.GradientTransformation | None = None        # before the base optimizer
  after_optimizer: optax.GradientTransformation | None = None  # e.g. learning-rate scales
  extra_args: Callable[[dict, Any], dict] | None = None  # (aux, key) -> scores for the chain
  # Called at each epoch boundary: (opt_state, report) -> opt_state. The report holds the
  # validation scores and the epoch's mean train losses (`mmbal.train.loop.epoch_report`).
  epoch_end: Callable[[Any, dict], Any] | None = None
  # True: the report's train_losses are measured on the train split with the parameters the
  # validation losses are measured with (one evaluation pass over train per epoch), instead
  # of the running mean of the epoch's step losses.
  measured_train_losses: bool = False
  losses: Callable | None = None            # objectives builder replacing the task's one
  objectives: tuple[str, ...] | None = None  # names of the K objectives (stacked mode)
  supports: dict | None = None              # {objective: labels it touches}, with `objectives`
  selection: str = "fused"                  # validation score: "fused" | "unimodal_mean"
  # A method with its own step (MLA, LNLN): (make_optimizer, total_steps) -> (tx, step_fn).
  step_builder: Callable | None = None
  prepare_batch: Callable | None = None     # (host batch, step) -> batch, before the step (LNLN)
  log_names: tuple[str, ...] | None = None  # names of objectives 2..K in the logs
  extra_results: Callable | None = None     # (params, dataset, mesh, bins) -> more results
  log_state: Callable[[Any], dict] | None = None  # opt_state -> what the logs show of it


class MethodContext(NamedTuple):
  """What ``build`` gets to know about the run."""
  config: Any               # the method's settings (its dataclass)
  model: Any                # the model (a MultimodalClassifier unless the method builds its own)
  labels: Any               # parameter labels (encoders and unimodal heads by modality)
  encoder_labels: Any       # only encoder leaves carry a modality; everything else "shared"
  apply_fn: Callable        # apply_fn(params, inputs, present=None) -> Outputs
  steps_per_epoch: int
  total_steps: int
  task: str = "classification"   # or "multilabel" (multi-hot labels), "regression[_mse]"
  regression_bins: str = "mosi"  # eval.regression_bins: PMR's classes on regression data
  run_config: Any = None         # the whole run config (seed, eval batch size, ...)
  params: Any = None             # the initial parameters (a template of their structure)


@dataclasses.dataclass(frozen=True)
class Method:
  """A registered balancing method (see the module docstring)."""
  name: str
  title: str                                 # paper (for generated configs and errors)
  build: Callable[[MethodContext, Any], MethodSpec]
  settings: type = NoSettings                # frozen dataclass: method.<name>.* and defaults
  docs: str = ""                             # docs/methods/<docs>.md
  tasks: tuple[str, ...] = TASK_KINDS        # task kinds it runs on
  tasks_reason: str = ""
  unimodal: tuple[str, ...] | None = None    # allowed model.unimodal (None: any)
  fusion: tuple[str, ...] | None = None      # allowed model.fusion (None: any)
  model_reason: str = ""                     # why unimodal / fusion are required
  model: dict = dataclasses.field(default_factory=dict)  # model fields of generated configs
  # Method settings of generated configs, per task kind (e.g. CGGM's direction on regression).
  generated_settings: Callable[[str], dict] | None = None
  generated: bool = True                     # configs/<data>/<name>.py comes from the generator
  baseline: bool = False                     # a reference point (joint, unimodal), not a balancer
  data: tuple[str, ...] | None = None        # data builders it runs on (None: any)
  regression_form: str = ""                  # how it works on regression, for generated configs
  # A method with its own model: (run config, modalities, num_classes, task) -> model,
  # else the `MultimodalClassifier` of ``model.*``.
  build_model: Callable | None = None

  def defaults(self) -> dict:
    """``method.<name>.*`` with their default values."""
    return {f.name: f.default for f in dataclasses.fields(self.settings)}

  def parse(self, values) -> Any:
    """The settings from a config block, value-checked (errors name ``method.<name>.<field>``)."""
    values = dict(values or {})
    for f in dataclasses.fields(self.settings):
      check_setting(f"method.{self.name}.{f.name}", values.get(f.name, f.default), f.metadata)
    return self.settings(**values)

  def check_model(self, model_config):
    """Errors, naming the field and why, when ``model.*`` does not suit the method."""
    for field, allowed in (("unimodal", self.unimodal), ("fusion", self.fusion)):
      value = model_config[field]
      if allowed is not None and value not in allowed:
        need = " or ".join(repr(a) for a in allowed)
        raise ValueError(f"method {self.name!r} needs model.{field}={need}, got {value!r}: "
                         f"{self.model_reason}")

  def check_task(self, task: str):
    """Errors, naming why, when the method does not run on the data set's task."""
    kind = task_kind(task)
    if kind not in self.tasks:
      raise ValueError(f"method.name={self.name!r} runs on {' and '.join(map(_spell, self.tasks))} "
                       f"data only: {self.tasks_reason}. This data set is {_spell(kind)}; methods "
                       f"for it: {methods_for(task)}")

  def runs_on(self, data_name: str, task: str) -> bool:
    return task_kind(task) in self.tasks and (self.data is None or data_name in self.data)


def check_setting(field: str, value, meta):
  choices, low, high = meta.get("choices"), meta.get("low"), meta.get("high")
  if choices is not None and value not in choices:
    raise ValueError(f"config field {field!r} must be one of {choices}, got {value!r}")
  if (low is not None and value < low) or (high is not None and value > high):
    lo = "-inf" if low is None else low
    hi = "inf" if high is None else high
    raise ValueError(f"config field {field!r} must be in [{lo}, {hi}], got {value!r}")


REGISTRY: dict[str, Method] = {}


def register(method: Method) -> Method:
  if method.name in REGISTRY:
    raise ValueError(f"method {method.name!r} is registered twice")
  if not dataclasses.is_dataclass(method.settings) or not method.settings.__dataclass_params__.frozen:
    raise TypeError(f"method {method.name!r}: settings must be a frozen dataclass")
  REGISTRY[method.name] = method
  return method


def get(name: str) -> Method:
  """The registered method ``name`` (an error with the closest name otherwise)."""
  if name not in REGISTRY:
    close = difflib.get_close_matches(name, list(REGISTRY), n=1)
    hint = f"; did you mean {close[0]!r}?" if close else ""
    raise ValueError(f"config field 'method.name' must be one of {sorted(REGISTRY)}, "
                     f"got {name!r}{hint}")
  return REGISTRY[name]


def task_kind(task: str) -> str:
  """``"classification"``, ``"multilabel"`` or ``"regression"`` (either regression loss)."""
  return "regression" if is_regression(task) else task


def methods_for(task: str) -> list[str]:
  """The methods that run on a task."""
  return sorted(n for n, m in REGISTRY.items() if task_kind(task) in m.tasks)


def _spell(kind: str) -> str:
  return "multi-label" if kind == "multilabel" else kind


# ---- helpers the method modules share.

def joint_weights(model) -> np.ndarray:
  """Fused loss, plus the unimodal losses of probes or unimodal heads (not of a split head)."""
  uni = 0.0 if model.unimodal == "split_head" else 1.0
  return np.array([1.0] + [uni] * len(model.names), np.float32)


def for_task(task: str, classification, multilabel, regression):
  """The per-modality score a method uses for the data set's task."""
  if is_regression(task):
    return regression
  return multilabel if task == "multilabel" else classification


def state_fields(state_type, *fields: str) -> Callable[[Any], dict]:
  """``log_state`` that shows ``fields`` of the method's ``state_type`` in the logs."""
  from mmbal.transforms._state import find_state  # pylint: disable=import-outside-toplevel

  def log_state(opt_state):
    state = find_state(opt_state, state_type, "log")
    return {f: getattr(state, f) for f in fields}
  return log_state


def subset_logits(apply_fn, params, batch, names, masks):
  """``[S, B, C]`` fused logits with only the modalities of each mask row present (one vmap)."""
  inputs = {n: batch[n] for n in names}
  size = batch["label"].shape[0]
  present = lambda mask: jnp.broadcast_to(mask, (size, len(names)))
  return jax.vmap(lambda mask: apply_fn(params, inputs, present(mask)).logits)(masks)


def warmed_up(step, steps_per_epoch: int, epochs: int):
  """1.0 once ``epochs`` epochs have passed (0.0 before; 1.0 when ``step`` is unknown)."""
  return 1.0 if step is None else (step >= epochs * steps_per_epoch).astype(jnp.float32)


def trained_leaves(ctx: MethodContext):
  """A tree of bools over the parameters: False on the linear probes of
  ``model.unimodal="probe"`` (they train on detached features and do not shape the model)."""
  probes = getattr(ctx.model, "unimodal", None) == "probe"
  return {k: jax.tree.map(lambda _, keep=not (probes and k == "unimodal_heads"): keep, v)
          for k, v in ctx.params.items()}
