"""``train_and_evaluate``: one linear loop around a single jitted step."""
from __future__ import annotations

import json
import logging
import pathlib
import time
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
import tqdm
from flax import nnx

from mmbal import data as mmdata
from mmbal.modalities import as_modalities
from mmbal.models import MultimodalClassifier, labels_for, split
from mmbal.train import sharding as shd
from mmbal.train.checkpoint import Checkpoints
from mmbal.train.config import check_config
from mmbal.train.report import format_table
from mmbal.train.step import (TrainState, classification_objectives, keep_best, make_apply,
                              make_eval_step, make_train_step)
from mmbal.transforms import combine_objectives

log = logging.getLogger("mmbal")


def make_optimizer(cfg, total_steps: int) -> optax.GradientTransformation:
  if cfg.schedule == "cosine":
    lr = optax.warmup_cosine_decay_schedule(0.0, cfg.learning_rate, cfg.warmup_steps,
                                            max(total_steps, cfg.warmup_steps + 1))
  else:
    lr = optax.linear_schedule(0.0, cfg.learning_rate, cfg.warmup_steps) if cfg.warmup_steps \
        else cfg.learning_rate
  base = (optax.adamw(lr, weight_decay=cfg.weight_decay) if cfg.name == "adamw"
          else optax.chain(optax.add_decayed_weights(cfg.weight_decay), optax.sgd(lr, cfg.momentum)))
  return optax.chain(optax.clip_by_global_norm(cfg.grad_clip_norm), base) if cfg.grad_clip_norm \
      else base


def objective_weights(method: str, model: MultimodalClassifier) -> np.ndarray:
  """Weights of ``[L_fused, L_1..L_M]``: probes always train (they cannot touch encoders)."""
  num = len(model.names)
  if method == "unimodal":
    return np.array([0.0] + [1.0] * num, np.float32)
  uni = 1.0 if model.unimodal in ("probe", "heads") else 0.0
  return np.array([1.0] + [uni] * num, np.float32)


class Run(NamedTuple):
  results: dict | None   # None when train.stop_after_steps stopped the run early
  state: TrainState      # the final train state (params, optimizer state, best params)


def train_and_evaluate(config, workdir, *, devices=None) -> Run:
  """Trains, selects on validation, evaluates on test, writes ``workdir/results.json``.

  Calling it again with the same ``workdir`` resumes from the latest checkpoint (also
  after ``train.stop_after_steps`` stopped a run early, or after the process was killed).
  """
  check_config(config)
  workdir = pathlib.Path(workdir)
  workdir.mkdir(parents=True, exist_ok=True)
  c = config

  # ---- data: validated against the config before anything compiles.
  dataset = mmdata.load(c.data.name, data_dir=c.data.data_dir or None,
                        config=c.data.builder_config or None, modalities=tuple(c.data.modalities),
                        val_fraction=c.data.val_fraction, seed=c.seed, in_memory=c.data.in_memory)
  spec = dataset.spec
  mesh = shd.make_mesh(c.mesh.data, c.mesh.model, devices)
  data_devices = mesh.shape["data"]
  for field, size in (("train.batch_size", c.train.batch_size), ("eval.batch_size", c.eval.batch_size)):
    if size % data_devices or size % jax.process_count():
      raise ValueError(f"config field {field!r}={size} must be divisible by the mesh data axis "
                       f"({data_devices} devices) and the process count ({jax.process_count()})")
  steps_per_epoch = mmdata.steps_per_epoch(dataset.train, c.train.batch_size)
  total_steps = c.train.num_steps or c.train.num_epochs * steps_per_epoch
  eval_every = c.train.eval_every_steps or steps_per_epoch
  ckpt_every = c.train.checkpoint_every_steps or eval_every

  # ---- model, optimizer, state.
  modalities = as_modalities({n: spec.modalities[n] for n in c.data.modalities})
  model = MultimodalClassifier(modalities, spec.num_classes, **c.model, rngs=nnx.Rngs(c.seed))
  graphdef, params, rest = split(model)
  labels = labels_for(model, params)
  weights = objective_weights(c.method.name, model)
  tx = make_optimizer(c.optimizer, total_steps)
  if c.method.grad_mode == "stacked":
    tx = optax.chain(combine_objectives(weights), tx)
  params = jax.device_put(params, shd.param_sharding(mesh, params))
  param_sh = jax.tree.map(lambda x: x.sharding, params)

  def init_state(params):
    return TrainState(step=jnp.zeros((), jnp.int32), params=params, opt_state=tx.init(params),
                      best_params=params, best_score=jnp.full((), -1.0, jnp.float32))

  state = jax.jit(init_state, in_shardings=(param_sh,))(params)
  state_sh = jax.tree.map(lambda x: x.sharding, state)
  apply_fn = make_apply(graphdef, rest)
  losses_fn = classification_objectives(apply_fn, model.names)
  step_fn = make_train_step(losses_fn, tx, weights, grad_mode=c.method.grad_mode,
                            objectives=("fused",) + model.names, labels=labels,
                            supports=model.objective_supports())
  train_step = jax.jit(step_fn, in_shardings=(state_sh, shd.batch_sharding(mesh)),
                       out_shardings=(state_sh, shd.replicated(mesh)), donate_argnums=0)
  eval_step = jax.jit(make_eval_step(apply_fn, model.names),
                      in_shardings=(param_sh, shd.batch_sharding(mesh)),
                      out_shardings=shd.replicated(mesh))
  select_best = jax.jit(keep_best, in_shardings=(state_sh, shd.replicated(mesh)),
                        out_shardings=state_sh, donate_argnums=0)

  def evaluate(params, split_name):
    totals = None
    for batch in mmdata.eval_batches(dataset[split_name], c.eval.batch_size):
      counts = eval_step(params, shd.global_batch(mesh, batch))
      totals = counts if totals is None else jax.tree.map(jnp.add, totals, counts)
    totals = jax.device_get(totals)
    n = max(float(totals["count"]), 1.0)
    return dict(count=int(totals["count"]),
                fused=dict(accuracy=None if c.method.name == "unimodal" else float(totals["fused"]) / n),
                unimodal={m: dict(accuracy=float(v) / n) for m, v in zip(model.names, totals["unimodal"])})

  def selection_score(result):
    if c.method.name == "unimodal":
      return float(np.mean([u["accuracy"] for u in result["unimodal"].values()]))
    return result["fused"]["accuracy"]

  # ---- resume.
  train_iter = mmdata.train_iterator(dataset.train, c.train.batch_size, seed=c.seed)
  checkpoints = Checkpoints(workdir / "checkpoints", keep=c.train.keep_checkpoints)
  if checkpoints.latest_step() is not None:
    state = checkpoints.restore(state, train_iter)
    log.info("resumed from step %d", int(state.step))
  start = int(state.step)
  metrics_log = MetricsLog(workdir / "metrics.jsonl", start, c.log.tensorboard)
  log.info("%s: %d train / %d val / %d test examples, %d steps (%d per epoch), mesh %s",
           c.data.name, spec.split_sizes["train"], spec.split_sizes["validation"],
           spec.split_sizes["test"], total_steps, steps_per_epoch, dict(mesh.shape))

  # ---- train.
  stop_at = min(total_steps, c.train.stop_after_steps or total_steps)
  pending, t0 = [], time.time()
  bar = tqdm.tqdm(total=total_steps, initial=start, disable=not c.log.progress,
                  desc="train", unit="step", dynamic_ncols=True)
  for step in range(start + 1, stop_at + 1):
    state, metrics = train_step(state, shd.global_batch(mesh, next(train_iter)))
    pending.append(metrics)
    bar.update(1)
    if step % c.train.log_every_steps == 0 or step == stop_at:
      summary = summarize(jax.device_get(pending), model.names, weights)
      summary.update(step=step, split="train", steps_per_sec=len(pending) / (time.time() - t0))
      metrics_log.write(summary)
      bar.set_postfix(loss=f"{summary['loss']['total']:.3f}")
      pending, t0 = [], time.time()
    if step % eval_every == 0 or step == total_steps:
      val = evaluate(state.params, "validation")
      state = select_best(state, jnp.float32(selection_score(val)))
      metrics_log.write(dict(step=step, split="validation", **val))
    if step % ckpt_every == 0 or step == stop_at:
      checkpoints.save(step, state, train_iter)
  bar.close()
  checkpoints.close()
  if stop_at < total_steps:
    log.info("stopped after step %d of %d; run again with the same workdir to resume",
             stop_at, total_steps)
    return Run(None, state)

  # ---- final evaluation of the model selected on validation.
  results = dict(validation=evaluate(state.best_params, "validation"),
                 test=evaluate(state.best_params, "test"),
                 steps=total_steps, modalities=list(model.names), config=c.to_dict())
  if jax.process_index() == 0:
    (workdir / "results.json").write_text(json.dumps(results, indent=2, default=_jsonable))
  print(format_table(results))
  return Run(results, state)


def summarize(history, names, weights):
  """Means of a list of per-step metric dicts, named by objective."""
  losses = np.mean([h["losses"] for h in history], axis=0)
  uni_acc = np.mean([h["unimodal_correct"] for h in history], axis=0)
  return dict(loss=dict(total=float(weights @ losses), fused=float(losses[0]),
                        **{n: float(v) for n, v in zip(names, losses[1:])}),
              accuracy=dict(fused=float(np.mean([h["fused_correct"] for h in history])),
                            **{n: float(v) for n, v in zip(names, uni_acc)}))


class MetricsLog:
  """JSON-lines metrics (+ TensorBoard scalars if asked); written by process 0 only.

  On resume, lines past the restored step are dropped: those steps run again.
  """

  def __init__(self, path: pathlib.Path, resume_step: int, tensorboard: bool = False):
    self.path, self.tensorboard = path, None
    if jax.process_index() != 0:
      return
    if path.exists():
      kept = [l for l in path.read_text().splitlines() if l and json.loads(l)["step"] <= resume_step]
      path.write_text("".join(l + "\n" for l in kept))
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
      f.write(json.dumps(record, default=_jsonable) + "\n")
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


def _jsonable(x):
  if isinstance(x, (np.generic, np.ndarray)):
    return x.tolist()
  if isinstance(x, tuple):
    return list(x)
  raise TypeError(type(x))
