"""Rebuilds a training run from its workdir: config, data, model and the latest checkpoint.

Used by ``mmbal diagnose``. The run may be finished (``results.json`` exists) or still
running / stopped early: the latest complete checkpoint is restored either way, and the
model selected on validation so far (``best_params``) is used once there has been an
evaluation (``best_score >= 0``), else the latest ``params``.
"""
from __future__ import annotations

import json
import pathlib
from typing import Any, NamedTuple

from mmbal.train import sharding as shd
from mmbal.train.checkpoint import CheckpointDamaged, Checkpoints
from mmbal.train.config import check_config, load_config
from mmbal.train.run import build_run


class RestoredRun(NamedTuple):
  workdir: pathlib.Path
  config: Any               # the run's ConfigDict (from config.json)
  dataset: Any              # mmbal.data Splits (train / validation / test)
  model: Any                # the MultimodalClassifier (names, num_classes, ...)
  apply_fn: Any             # apply_fn(params, inputs, present=None) -> Outputs
  params: Any               # the selected parameters (see ``selected``)
  selected: str             # "best" (best on validation so far) or "latest"
  step: int                 # the restored checkpoint's step
  total_steps: int
  finished: bool            # results.json exists
  results: dict | None      # its contents
  mesh: Any                 # the device mesh the params live on
  task: str                 # classification | multilabel | regression[_mse]
  run: Any                  # the `mmbal.train.run.BuiltRun` (steps, shardings, method)


def restore_run(workdir, *, devices=None) -> RestoredRun:
  """Restores the latest checkpoint of the run in ``workdir`` (clear errors if there is none)."""
  workdir = pathlib.Path(workdir)
  if not workdir.is_dir():
    raise ValueError(f"--workdir {workdir}: no such directory")
  if not (workdir / "config.json").is_file():
    raise ValueError(f"--workdir {workdir}: no config.json (not an mmbal training run, or one "
                     f"that has not started yet)")
  ckpt_dir = workdir / "checkpoints"
  if not ckpt_dir.is_dir() or not any(p.name.isdigit() for p in ckpt_dir.iterdir()):
    raise ValueError(f"--workdir {workdir}: no checkpoint yet (the run saves one at its first "
                     f"evaluation or checkpoint step); try again later")
  c = load_config(str(workdir / "config.json"))
  check_config(c)
  run = build_run(c, mesh=_mesh(c, devices))   # as train_and_evaluate built it
  checkpoints = Checkpoints(ckpt_dir, keep=c.train.keep_checkpoints)
  try:
    state = _restore_latest(checkpoints, run.state)
  finally:
    checkpoints.close()
  best = float(state.best_score) >= 0
  results_file = workdir / "results.json"
  results = json.loads(results_file.read_text()) if results_file.is_file() else None
  return RestoredRun(workdir=workdir, config=c, dataset=run.dataset, model=run.model,
                     apply_fn=run.apply_fn, params=state.best_params if best else state.params,
                     selected="best" if best else "latest", step=int(state.step),
                     total_steps=int(run.total_steps), finished=results is not None,
                     results=results, mesh=run.mesh, task=run.task, run=run)


def _restore_latest(checkpoints, template, attempts: int = 3):
  """The newest intact checkpoint (`Checkpoints.restore` skips damaged ones); a running
  trainer may delete an old checkpoint while we read it: then retry on the newest."""
  for attempt in range(attempts):
    if attempt:
      checkpoints.manager.reload()
    if checkpoints.latest_step() is None:
      break
    try:   # parameters only: the data position is not needed (and is per process count)
      return checkpoints.restore(template)
    except CheckpointDamaged:
      if attempt == attempts - 1:
        raise
  raise ValueError("no checkpoint could be restored")


def _mesh(c, devices):
  """The run's mesh if this machine has it, else every device on the data axis."""
  try:
    mesh = shd.make_mesh(c.mesh.data, c.mesh.model, devices)
  except ValueError:
    mesh = shd.make_mesh(-1, 1, devices)
  if c.eval.batch_size % mesh.shape["data"]:
    devices = list(mesh.devices.flat)
    data = max(d for d in range(1, len(devices) + 1)
               if c.eval.batch_size % d == 0 and len(devices) % d == 0)
    mesh = shd.make_mesh(data, 1, devices)
  return mesh
