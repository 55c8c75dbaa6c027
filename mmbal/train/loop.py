"""``train_and_evaluate``: one linear loop around a single jitted step.

The run (data, model, method, optax chain, step, shardings) comes from
`mmbal.train.run.build_run`; this module only drives it: train steps, logging, evaluation
and checkpoint selection, the method's epoch hook at epoch boundaries, checkpoints, and the
final evaluation of the model selected on validation.
"""
from __future__ import annotations

import json
import logging
import pathlib
import time
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import tqdm

from mmbal.data import corrupt
from mmbal import data as mmdata
from mmbal.train import sharding as shd
from mmbal.train.checkpoint import Checkpoints
from mmbal.train.config import check_config
from mmbal.train.distributed import PreemptionWatch
from mmbal.train.evaluate import add_linear_probes, epoch_report, evaluate, selection_score
from mmbal.train.logs import MetricsLog, dumps, method_log, summarize
from mmbal.train.workdir import check_resume_config, exclusive
from mmbal.train.report import format_table
from mmbal.train.run import BuiltRun, build_run
from mmbal.train.step import TrainState, epoch_losses, keep_best

log = logging.getLogger("mmbal")


class Run(NamedTuple):
  results: dict | None   # None when the run stopped early (stop_after_steps or SIGTERM)
  state: TrainState      # the final train state (params, optimizer state, best params)
  preempted: bool = False  # stopped by SIGTERM: checkpointed, rerun to resume


def train_and_evaluate(config, workdir, *, devices=None) -> Run:
  """Trains, selects on validation, evaluates on test, writes ``workdir/results.json``.

  Calling it again with the same ``workdir`` resumes from the latest checkpoint (also
  after ``train.stop_after_steps`` stopped a run early, or after the process was killed).
  """
  check_config(config)
  workdir = pathlib.Path(workdir)
  try:
    workdir.mkdir(parents=True, exist_ok=True)
  except OSError as err:
    raise ValueError(f"--workdir {workdir} cannot be created ({err.strerror})") from None
  with exclusive(workdir, primary=jax.process_index() == 0):
    check_resume_config(workdir, config)   # under the lock: no trainer changes it meanwhile
    return _train_and_evaluate(config, workdir, devices)


def _train_and_evaluate(c, workdir: pathlib.Path, devices) -> Run:
  mesh = shd.make_mesh(c.mesh.data, c.mesh.model, devices)
  for field, size in (("train.batch_size", c.train.batch_size), ("eval.batch_size", c.eval.batch_size)):
    if size % mesh.shape["data"] or size % jax.process_count():
      raise ValueError(f"config field {field!r}={size} must be divisible by the mesh data axis "
                       f"({mesh.shape['data']} devices) and the process count ({jax.process_count()})")
  run = build_run(c, mesh=mesh)   # validates the data against the config before compiling

  train_iter = mmdata.train_iterator(run.dataset.train, c.train.batch_size, seed=c.seed,
                                     num_workers=c.data.num_workers)
  checkpoints = Checkpoints(workdir / "checkpoints", keep=c.train.keep_checkpoints,
                            damaged_dir=workdir / "checkpoints-damaged")
  state = run.state
  if checkpoints.latest_step() is not None:
    state = checkpoints.restore(state, train_iter)
    log.info("resumed from step %d", int(state.step))
  if jax.process_index() == 0:   # `mmbal diagnose` / `mmbal eval` rebuild the run from these
    (workdir / "config.json").write_text(c.to_json(indent=2))
    (workdir / "run.json").write_text(json.dumps(dict(
        task=run.task, modalities=list(run.model.names), steps_per_epoch=run.steps_per_epoch,
        total_steps=run.total_steps), indent=2))
  metrics_log = MetricsLog(workdir / "metrics.jsonl", int(state.step), c.log.tensorboard)
  spec = run.dataset.spec
  log.info("%s: %d train / %d val / %d test examples, %d steps (%d per epoch), mesh %s; "
           "compiling the train step", c.data.name, spec.split_sizes["train"],
           spec.split_sizes["validation"], spec.split_sizes["test"], run.total_steps,
           run.steps_per_epoch, dict(mesh.shape))

  state, step, preempted = _train(run, state, train_iter, checkpoints, metrics_log)
  if preempted:
    log.warning("preempted (SIGTERM): checkpoint saved at step %d of %d; run the same command "
                "again to resume", step, run.total_steps)
    return Run(None, state, preempted=True)
  if step < run.total_steps:
    log.info("stopped after step %d of %d; run again with the same workdir to resume",
             step, run.total_steps)
    return Run(None, state)
  log.info("final evaluation of the model selected on validation%s",
           " (+ linear probes)" if c.eval.linear_probe and run.task == "classification" else "")
  results = final_results(run, state)
  if jax.process_index() == 0:
    (workdir / "results.json").write_text(dumps(results, indent=2))
    print(format_table(results))
  return Run(results, state)


class _Events(NamedTuple):
  """The steps at which something other than a train step happens."""
  log_every: int
  eval_every: int
  epoch: int
  checkpoint_every: int
  total: int
  stop_at: int

  def log(self, step):
    return step % self.log_every == 0 or step == self.stop_at or step % self.eval_every == 0

  def evaluation(self, step):
    return step % self.eval_every == 0 or step == self.total

  def epoch_end(self, step):
    return step % self.epoch == 0

  def checkpoint(self, step):
    return step % self.checkpoint_every == 0 or step == self.stop_at


def _events(run: BuiltRun) -> _Events:
  t = run.config.train
  eval_every = t.eval_every_steps or run.steps_per_epoch
  return _Events(log_every=t.log_every_steps, eval_every=eval_every, epoch=run.steps_per_epoch,
                 checkpoint_every=t.checkpoint_every_steps or eval_every, total=run.total_steps,
                 stop_at=min(run.total_steps, t.stop_after_steps or run.total_steps))


def _train(run: BuiltRun, state, train_iter, checkpoints, metrics_log):
  """Steps from the state's step to the stop step: ``(state, last step, preempted)``."""
  c, method, names = run.config, run.method, run.model.names
  events = _events(run)
  select_best = jax.jit(keep_best, in_shardings=(run.state_sharding, shd.replicated(run.mesh)),
                        out_shardings=run.state_sharding, donate_argnums=0)
  epoch_end = jax.jit(_end_of_epoch(method), out_shardings=run.state_sharding, donate_argnums=0)
  start = step = int(state.step)
  pending, t0 = [], time.time()
  bar = tqdm.tqdm(total=run.total_steps, initial=start, desc="train", unit="step",
                  disable=not c.log.progress or jax.process_index() != 0, dynamic_ncols=True)
  preemption, preempted = PreemptionWatch(), False
  for step in range(start + 1, events.stop_at + 1):
    state, metrics = run.train_step(state, shd.global_batch(run.mesh, _next_batch(run, train_iter, step)))
    pending.append(metrics)
    bar.update(1)
    if events.log(step):
      summary = summarize(jax.device_get(pending), names, method.weights, method.log_names)
      summary.update(step=step, split="train", steps_per_sec=len(pending) / (time.time() - t0))
      metrics_log.write(summary)
      check_finite_loss(summary, step, checkpoints.latest_step())
      bar.set_postfix(loss=f"{summary['loss']['total']:.3f}")
      pending, t0 = [], time.time()
    val = None
    if events.evaluation(step):
      val = evaluate(run, state.params, "validation")
      state = select_best(state, jnp.float32(selection_score(method, val)))
    if method.epoch_end is not None and events.epoch_end(step):   # the method's epoch hook
      val = val or evaluate(run, state.params, "validation")
      train = evaluate(run, state.params, "train") if method.measured_train_losses else None
      state = epoch_end(state, epoch_report(val, names, step // run.steps_per_epoch, train))
    if events.evaluation(step):
      metrics_log.write(dict(step=step, split="validation", **val,
                             method=method_log(method, state.opt_state)))
    preempted = preemption.reached(step)   # every process agrees on the step
    if events.checkpoint(step) or preempted:
      checkpoints.save(step, state, train_iter)
    if preempted:
      break
  bar.close()
  checkpoints.close()
  preemption.close()
  return state, step, preempted


class TrainingDiverged(ValueError):
  """The training loss became NaN or infinite."""


def check_finite_loss(summary: dict, step: int, last_checkpoint) -> None:
  """Stops a run whose loss is no longer finite (read at logging steps only: no extra host
  synchronisation); nothing after the last finite checkpoint is saved."""
  losses = {k: v for k, v in summary["loss"].items() if isinstance(v, (int, float))}
  bad = {k: v for k, v in losses.items() if not np.isfinite(v)}
  if bad:
    kept = (f"the checkpoint of step {last_checkpoint} is kept" if last_checkpoint is not None
            else "no checkpoint was saved")
    raise TrainingDiverged(
        f"training diverged: loss {bad} at step {step} (logged every train.log_every_steps); "
        f"{kept}. Lower optimizer.learning_rate, set optimizer.grad_clip_norm, or check the "
        f"inputs and the method's settings")


def _next_batch(run: BuiltRun, train_iter, step: int) -> dict:
  """The next host batch, prepared by the method and with modality dropout applied."""
  c, batch = run.config, next(train_iter)
  if run.method.prepare_batch is not None:
    batch = run.method.prepare_batch(batch, step)
  if c.train.modality_dropout:   # seeded by (seed, step): a resumed run drops the same
    rng = np.random.default_rng([c.seed, step, jax.process_index()])
    for m in run.model.names:
      batch = corrupt.drop_modality(batch, run.model.names, m, c.train.modality_dropout, rng)
  return batch


def _end_of_epoch(method):
  def end_of_epoch(state, report):
    """Hands the method the validation report and the epoch's train losses (measured, or the
    running mean of the step losses); resets the running sums."""
    running, state = epoch_losses(state)
    report = dict(report, train_losses=report.get("train_losses", running))
    return state.replace(opt_state=method.epoch_end(state.opt_state, report))
  return end_of_epoch


def final_results(run: BuiltRun, state) -> dict:
  """Validation and test reports of the model selected on validation (+ the method's own
  results and, for classification, the encoders' linear probes)."""
  c, params = run.config, state.best_params
  results = dict(validation=evaluate(run, params, "validation"), test=evaluate(run, params, "test"),
                 steps=run.total_steps, modalities=list(run.model.names), task=run.task,
                 config=c.to_dict())
  if run.method.extra_results is not None:
    results.update(run.method.extra_results(params, run.dataset, run.mesh, c.eval.regression_bins))
  if c.eval.linear_probe and run.task == "classification":   # the probes are softmax classifiers
    add_linear_probes(run, params, results)
  return results
