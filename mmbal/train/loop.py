"""``train_and_evaluate``: one linear loop around a single jitted step."""
from __future__ import annotations

import functools
import json
import logging
import pathlib
import time
from typing import NamedTuple

import jax
import jax.numpy as jnp
from jax.experimental import multihost_utils
import numpy as np
import optax
import tqdm
from flax import nnx

from mmbal import data as mmdata
from mmbal.data import corrupt
from mmbal.diagnostics import fit_linear_probes, probe_accuracy
from mmbal.modalities import as_modalities
from mmbal.models import MultimodalClassifier, labels_for, split
from mmbal.train import sharding as shd
from mmbal.train.checkpoint import Checkpoints
from mmbal.train.config import check_config
from mmbal.train.distributed import PreemptionWatch
from mmbal.train.regression import add_regression_metrics
from mmbal.train.report import format_table
from mmbal.train.methods import MethodContext, build_method, encoder_labels
from mmbal.train.step import (TrainState, classification_objectives, epoch_losses,
                              init_train_state, keep_best, make_apply, make_eval_step,
                              make_train_step)
from mmbal.transforms import combine_objectives

log = logging.getLogger("mmbal")


def make_optimizer(cfg, total_steps: int, updates_per_step: int = 1) -> optax.GradientTransformation:
  """The base optimizer; ``updates_per_step`` > 1 stretches the warm-up for optimizers that
  update several times per train step (MLA's shared head)."""
  warmup = cfg.warmup_steps * updates_per_step
  if cfg.schedule == "cosine":
    lr = optax.warmup_cosine_decay_schedule(0.0, cfg.learning_rate, warmup,
                                            max(total_steps, warmup + 1))
  else:
    lr = optax.linear_schedule(0.0, cfg.learning_rate, warmup) if warmup else cfg.learning_rate
  base = (optax.adamw(lr, weight_decay=cfg.weight_decay) if cfg.name == "adamw"
          else optax.chain(optax.add_decayed_weights(cfg.weight_decay), optax.sgd(lr, cfg.momentum)))
  return optax.chain(optax.clip_by_global_norm(cfg.grad_clip_norm), base) if cfg.grad_clip_norm \
      else base


def build_model_and_method(c, modalities, num_classes, steps_per_epoch, total_steps,
                           task: str = "classification"):
  """``(model, params, labels, apply_fn, method)`` for a config."""
  if c.method.name == "lnln":   # its own model (mmbal.models.lnln)
    from mmbal.train.lnln import build_lnln
    from mmbal.train.methods import MethodSpec
    return build_lnln(c, modalities, num_classes, steps_per_epoch, total_steps, task, MethodSpec)
  model = MultimodalClassifier(modalities, num_classes, **c.model, rngs=nnx.Rngs(c.seed))
  graphdef, params, rest = split(model)
  labels = labels_for(model, params)
  apply_fn = make_apply(graphdef, rest)
  method = build_method(c.method.name, MethodContext(
      config=c.method.get(c.method.name), model=model, labels=labels,
      encoder_labels=encoder_labels(model), apply_fn=apply_fn,
      steps_per_epoch=steps_per_epoch, total_steps=total_steps, task=task,
      regression_bins=c.eval.regression_bins))
  return model, params, labels, apply_fn, method


def assemble(method, model, apply_fn, labels, c, total_steps, task: str = "classification"):
  """``(tx, train_step)`` for a method: its transform, the base optimizer, its
  ``after_optimizer``, and the (unjitted) step computing the gradients it needs."""
  if method.step_builder is not None:
    return method.step_builder(
        lambda steps, per_step: make_optimizer(c.optimizer, steps, per_step), total_steps)
  grad_mode = "stacked" if method.grad_mode == "stacked" else c.method.grad_mode
  tx = make_optimizer(c.optimizer, total_steps)
  if method.after_optimizer is not None:
    tx = optax.chain(tx, method.after_optimizer)
  if grad_mode == "stacked" and method.transform is None:
    tx = optax.chain(combine_objectives(method.weights), tx)
  if method.transform is not None:
    tx = optax.chain(method.transform, tx)
  losses_fn = (method.losses or functools.partial(classification_objectives, task=task))(
      apply_fn, model.names)
  step_fn = make_train_step(
      losses_fn, tx, method.weights, grad_mode=grad_mode,
      objectives=method.objectives or ("fused",) + model.names, labels=labels,
      supports=method.supports if method.objectives else model.objective_supports(),
      extra_args=method.extra_args, task=task)
  return tx, step_fn


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
  workdir.mkdir(parents=True, exist_ok=True)
  c = config

  # ---- data: validated against the config before anything compiles. Process 0 prepares a
  # shared data dir first; processes preparing it at once would race.
  load = functools.partial(
      mmdata.load, c.data.name, data_dir=c.data.data_dir or None,
      config=c.data.builder_config or None, modalities=tuple(c.data.modalities),
      val_fraction=c.data.val_fraction, seed=c.seed, in_memory=c.data.in_memory)
  dataset = load() if jax.process_index() == 0 else None
  if jax.process_count() > 1:
    multihost_utils.sync_global_devices("mmbal: data prepared")
  dataset = dataset or load()
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

  # ---- model, method, optimizer, state.
  modalities = as_modalities({n: spec.modalities[n] for n in c.data.modalities})
  task = getattr(spec, "task", "classification")   # "multilabel": multi-hot labels
  if task == "regression" and c.train.regression_loss == "mse":
    task = "regression_mse"
  model, params, labels, apply_fn, method = build_model_and_method(
      c, modalities, spec.num_classes, steps_per_epoch, total_steps, task)
  tx, step_fn = assemble(method, model, apply_fn, labels, c, total_steps, task)
  params = jax.device_put(params, shd.param_sharding(mesh, params))
  param_sh = jax.tree.map(lambda x: x.sharding, params)

  init_state = functools.partial(init_train_state, tx=tx, seed=c.seed,
                                 num_objectives=len(method.weights))
  state = jax.jit(init_state, in_shardings=(param_sh,))(params)
  state_sh = jax.tree.map(lambda x: x.sharding, state)
  train_step = jax.jit(step_fn, in_shardings=(state_sh, shd.batch_sharding(mesh)),
                       out_shardings=(state_sh, shd.replicated(mesh)), donate_argnums=0)
  eval_step = jax.jit(make_eval_step(apply_fn, model.names, task),
                      in_shardings=(param_sh, shd.batch_sharding(mesh)),
                      out_shardings=shd.replicated(mesh))
  select_best = jax.jit(keep_best, in_shardings=(state_sh, shd.replicated(mesh)),
                        out_shardings=state_sh, donate_argnums=0)
  def end_of_epoch(state, report):
    """Hands the method the epoch's mean train losses and validation report; resets the sums."""
    train_losses, state = epoch_losses(state)
    if method.epoch_end is None:
      return state
    report = dict(report, train_losses=train_losses)
    return state.replace(opt_state=method.epoch_end(state.opt_state, report))

  epoch_end = jax.jit(end_of_epoch, out_shardings=state_sh, donate_argnums=0)

  def evaluate(params, split_name):
    totals, examples = None, []
    for batch in mmdata.eval_batches(dataset[split_name], c.eval.batch_size):
      sums = eval_step(params, shd.global_batch(mesh, batch))
      per_example = {k: sums.pop(k) for k in list(sums) if k.startswith("pred_") or k in ("label", "mask")}
      if per_example:
        examples.append(jax.device_get(per_example))
      totals = sums if totals is None else jax.tree.map(jnp.add, totals, sums)
    report = report_from_sums(jax.device_get(totals), model.names, c.method.name == "unimodal", task)
    if examples:   # regression: the standard metrics from every prediction of the split
      add_regression_metrics(report, examples, model.names, c.eval.regression_bins)
    return report

  features_step = jax.jit(lambda params, batch: apply_fn(params, {n: batch[n] for n in model.names}).features,
                          in_shardings=(param_sh, shd.batch_sharding(mesh)))

  def split_features(params, split_name):
    """``([M, N, D] features, [N] labels)`` of every example of a split (host arrays)."""
    feats, labels = [], []
    for batch in mmdata.eval_batches(dataset[split_name], c.eval.batch_size):
      out = multihost_utils.process_allgather(features_step(params, shd.global_batch(mesh, batch)),
                                              tiled=True)
      mask = np.asarray(multihost_utils.process_allgather(batch["mask"]))
      labs = np.asarray(multihost_utils.process_allgather(batch["label"]))
      feats.append(np.asarray(out)[:, mask.reshape(-1)])
      labels.append(labs.reshape(-1)[mask.reshape(-1)])
    return np.concatenate(feats, axis=1), np.concatenate(labels)

  def add_linear_probes(params, results):
    """Each encoder's linear-probe accuracy: the same yardstick for every method."""
    probes = fit_linear_probes(*split_features(params, "train"), num_classes=spec.num_classes)
    for split_name in ("validation", "test"):
      accuracy = probe_accuracy(probes, *split_features(params, split_name))
      results[split_name]["probe"] = {m: dict(accuracy=float(a)) for m, a in zip(model.names, accuracy)}

  def selection_score(result):
    if method.selection == "unimodal_mean":
      return float(np.mean([u["accuracy"] for u in result["unimodal"].values()]))
    return result["fused"]["accuracy"]

  # ---- resume.
  train_iter = mmdata.train_iterator(dataset.train, c.train.batch_size, seed=c.seed)
  checkpoints = Checkpoints(workdir / "checkpoints", keep=c.train.keep_checkpoints)
  if checkpoints.latest_step() is not None:
    state = checkpoints.restore(state, train_iter)
    log.info("resumed from step %d", int(state.step))
  start = int(state.step)
  if jax.process_index() == 0:   # `mmbal diagnose` rebuilds the run from it
    (workdir / "config.json").write_text(c.to_json(indent=2))
  metrics_log = MetricsLog(workdir / "metrics.jsonl", start, c.log.tensorboard)
  log.info("%s: %d train / %d val / %d test examples, %d steps (%d per epoch), mesh %s",
           c.data.name, spec.split_sizes["train"], spec.split_sizes["validation"],
           spec.split_sizes["test"], total_steps, steps_per_epoch, dict(mesh.shape))

  # ---- train.
  stop_at = min(total_steps, c.train.stop_after_steps or total_steps)
  pending, t0 = [], time.time()
  bar = tqdm.tqdm(total=total_steps, initial=start, desc="train", unit="step",
                  disable=not c.log.progress or jax.process_index() != 0, dynamic_ncols=True)
  preemption, preempted = PreemptionWatch(), False
  for step in range(start + 1, stop_at + 1):
    batch = next(train_iter)
    if method.prepare_batch is not None:
      batch = method.prepare_batch(batch, step)
    if c.train.modality_dropout:   # seeded by (seed, step): a resumed run drops the same
      rng = np.random.default_rng([c.seed, step, jax.process_index()])
      for m in model.names:
        batch = corrupt.drop_modality(batch, model.names, m, c.train.modality_dropout, rng)
    state, metrics = train_step(state, shd.global_batch(mesh, batch))
    pending.append(metrics)
    bar.update(1)
    if step % c.train.log_every_steps == 0 or step == stop_at or step % eval_every == 0:
      summary = summarize(jax.device_get(pending), model.names, method.weights, method.log_names)
      summary.update(step=step, split="train", steps_per_sec=len(pending) / (time.time() - t0))
      metrics_log.write(summary)
      bar.set_postfix(loss=f"{summary['loss']['total']:.3f}")
      pending, t0 = [], time.time()
    if step % eval_every == 0 or step == total_steps:
      val = evaluate(state.params, "validation")
      state = select_best(state, jnp.float32(selection_score(val)))
      state = epoch_end(state, epoch_report(val, model.names, step // steps_per_epoch))
      metrics_log.write(dict(step=step, split="validation", **val,
                             method=method_state_summary(state.opt_state)))
    preempted = preemption.reached(step)   # every process agrees on the step
    if step % ckpt_every == 0 or step == stop_at or preempted:
      checkpoints.save(step, state, train_iter)
    if preempted:
      break
  bar.close()
  checkpoints.close()
  preemption.close()
  if preempted:
    log.warning("preempted (SIGTERM): checkpoint saved at step %d of %d; run the same command "
                "again to resume", step, total_steps)
    return Run(None, state, preempted=True)
  if stop_at < total_steps:
    log.info("stopped after step %d of %d; run again with the same workdir to resume",
             stop_at, total_steps)
    return Run(None, state)

  # ---- final evaluation of the model selected on validation.
  results = dict(validation=evaluate(state.best_params, "validation"),
                 test=evaluate(state.best_params, "test"),
                 steps=total_steps, modalities=list(model.names), task=task, config=c.to_dict())
  if method.extra_results is not None:
    results.update(method.extra_results(state.best_params, dataset, mesh, c.eval.regression_bins))
  if c.eval.linear_probe and task == "classification":   # the probes are softmax classifiers
    add_linear_probes(state.best_params, results)
  if jax.process_index() == 0:
    (workdir / "results.json").write_text(json.dumps(results, indent=2, default=_jsonable))
    print(format_table(results))
  return Run(results, state)


def f1_scores(tp, fp, fn) -> tuple[np.ndarray, np.ndarray]:
  """``(micro F1, macro F1)`` over the last axis of per-class counts (a class with no
  positives and no predictions scores 0 in the macro mean, as scikit-learn's default)."""
  tp, fp, fn = (np.asarray(x, np.float64) for x in (tp, fp, fn))
  micro = 2 * tp.sum(-1) / np.maximum(2 * tp.sum(-1) + fp.sum(-1) + fn.sum(-1), 1e-12)
  macro = (2 * tp / np.maximum(2 * tp + fp + fn, 1e-12)).mean(-1)
  return micro, macro


def report_from_sums(totals, names, fused_untrained=False, task="classification") -> dict:
  """Scores, mean losses and utilisation from the eval step's summed counts.

  ``accuracy`` is the task's score: accuracy, or micro-F1 for ``"multilabel"`` (which also
  reports ``f1_macro`` and the Hamming accuracy ``hamming``).
  """
  n = max(float(totals["count"]), 1.0)
  score = lambda key, i=None: float(totals[key] if i is None else totals[key][i]) / n
  extra = lambda key, i=None: {}
  if task == "multilabel":
    counts = {k: tuple(totals[f"{k}_{c}"] for c in ("tp", "fp", "fn"))
              for k in ("fused", "unimodal", "without")}
    f1 = {k: f1_scores(*v) for k, v in counts.items()}
    hamming = score
    score = lambda key, i=None: float(f1[key][0] if i is None else f1[key][0][i])
    extra = lambda key, i=None: dict(
        f1_macro=float(f1[key][1] if i is None else f1[key][1][i]), hamming=hamming(key, i))
  fused = score("fused")
  without = {m: score("without", i) for i, m in enumerate(names)}
  return dict(
      count=int(totals["count"]),
      fused=dict(accuracy=None if fused_untrained else fused, loss=float(totals["fused_loss"]) / n,
                 **extra("fused")),
      unimodal={m: dict(accuracy=score("unimodal", i), loss=float(totals["unimodal_loss"][i]) / n,
                        **extra("unimodal", i)) for i, m in enumerate(names)},
      # The fused score with modality m absent, and m's conditional utilisation
      # u_m = (A_all - A_without_m) / A_all (Wu et al., 2022; MILES).
      without={m: dict(accuracy=a, **extra("without", i)) for i, (m, a) in enumerate(without.items())},
      utilisation={m: (fused - a) / max(fused, 1e-8) for m, a in without.items()})


def epoch_report(val: dict, names, epoch: int) -> dict:
  """What a method's ``epoch_end`` sees (plus ``train_losses``, added on device)."""
  return dict(
      fused_accuracy=np.float32(val["fused"]["accuracy"] or 0.0),
      unimodal_accuracy={m: np.float32(val["unimodal"][m]["accuracy"]) for m in names},
      without_accuracy={m: np.float32(val["without"][m]["accuracy"]) for m in names},
      val_losses=np.array([val["fused"]["loss"]] + [val["unimodal"][m]["loss"] for m in names],
                          np.float32),
      epoch=np.int32(epoch))


LOGGED_STATE_FIELDS = ("coefficients", "scales", "weights", "utilisation", "shapley",
                       "dominant_weight", "perturbation_norm", "conflict_fraction")


def method_state_summary(opt_state) -> dict:
  """Per-modality coefficients/scales/weights a method keeps in its state, for the log."""
  found = {}

  def walk(node):
    if hasattr(node, "_fields"):
      for field in node._fields:
        value = getattr(node, field)
        if field in LOGGED_STATE_FIELDS and isinstance(value, (dict, jax.Array, np.ndarray)):
          found[field] = jax.tree.map(lambda v: np.asarray(v).tolist(), jax.device_get(value))
        else:
          walk(value)
    elif isinstance(node, (tuple, list)):
      for child in node:
        walk(child)
    elif isinstance(node, dict):
      for child in node.values():
        walk(child)

  walk(opt_state)
  return found


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
