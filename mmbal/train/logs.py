"""The run's logs: per-step summaries, ``metrics.jsonl`` and TensorBoard scalars."""
from __future__ import annotations

import json
import logging
import pathlib

import jax
import numpy as np

log = logging.getLogger("mmbal")


def summarize(history, names, weights, loss_names=None):
  """Means of a list of per-step metric dicts, named by objective (``loss_names``: of
  objectives 2..K when they are not the modalities)."""
  losses = np.mean([h["losses"] for h in history], axis=0)
  uni_acc = (np.mean([h["unimodal_correct"] for h in history], axis=0)
             if "unimodal_correct" in history[0] else [])
  summary = dict(loss=dict(total=float(weights @ losses), fused=float(losses[0]),
                           **{n: float(v) for n, v in zip(loss_names or names, losses[1:])}),
                 accuracy=dict(fused=float(np.mean([h["fused_correct"] for h in history])),
                               **{n: float(v) for n, v in zip(names, uni_acc)}))
  if history[0].get("method"):   # a method's own per-step quantities (e.g. MNL's dominance)
    summary["method"] = jax.tree.map(lambda *v: float(np.mean(v)), *[h["method"] for h in history])
  return summary


def method_log(method, opt_state) -> dict:
  """What the method's spec wants logged of its optimizer state (``log_state``), as lists."""
  if method.log_state is None:
    return {}
  return jax.tree.map(lambda v: np.asarray(v).tolist(), jax.device_get(method.log_state(opt_state)))


class MetricsLog:
  """JSON-lines metrics (+ TensorBoard scalars if asked); written by process 0 only.

  On resume, lines past the restored step are dropped: those steps run again.
  """

  def __init__(self, path: pathlib.Path, resume_step: int, tensorboard: bool = False):
    self.path, self.tensorboard = path, None
    if jax.process_index() != 0:
      return
    if path.exists():
      kept = []
      for number, line in enumerate(path.read_text().splitlines(), 1):
        try:
          record = json.loads(line) if line.strip() else None
        except json.JSONDecodeError:   # e.g. a last line cut short by a full disk
          log.warning("%s: line %d is not JSON (a truncated write?); dropped", path, number)
          continue
        if record is not None and record.get("step", 0) <= resume_step:
          kept.append(line)
      path.write_text("".join(l + "\n" for l in kept))
    elif resume_step:
      log.warning("%s is missing: the metrics of steps 1-%d are lost (checkpoints hold the "
                  "state, not the history); logging continues from step %d", path,
                  resume_step, resume_step + 1)
    if tensorboard:
      try:
        import tensorboardX  # optional: pip install "mmbal[tensorboard]"
      except ImportError as err:
        raise ValueError("config field 'log.tensorboard' needs tensorboardX: "
                         "pip install 'mmbal[tensorboard]'") from err
      self.tensorboard = tensorboardX.SummaryWriter(str(path.parent / "tensorboard"),
                                                    purge_step=resume_step + 1)

  def write(self, record: dict):
    if jax.process_index() != 0:
      return
    with self.path.open("a") as f:
      f.write(dumps(record) + "\n")
    if self.tensorboard is not None:
      for name, value in _scalars(record, record["split"]):
        self.tensorboard.add_scalar(name, value, record["step"])
      self.tensorboard.flush()


def _scalars(record, prefix):
  for key, value in record.items():
    if isinstance(value, dict):
      yield from _scalars(value, f"{prefix}/{key}")
    elif isinstance(value, (int, float)) and key != "step":
      yield f"{prefix}/{key}", value


def dumps(data, **kwargs) -> str:
  """Strict JSON (what every parser accepts): NaN and inf become null."""
  return json.dumps(_finite(data), default=jsonable, allow_nan=False, **kwargs)


def _finite(x):
  if isinstance(x, dict):
    return {k: _finite(v) for k, v in x.items()}
  if isinstance(x, (list, tuple)):
    return [_finite(v) for v in x]
  if isinstance(x, (np.generic, np.ndarray)):
    return _finite(x.tolist())
  if isinstance(x, float) and not np.isfinite(x):
    return None
  return x


def jsonable(x):
  if isinstance(x, (np.generic, np.ndarray)):
    return x.tolist()
  if isinstance(x, tuple):
    return list(x)
  raise TypeError(type(x))
