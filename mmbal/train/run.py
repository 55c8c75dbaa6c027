"""``build_run``: the one place where a config becomes a runnable run.

data -> task -> model -> method (`mmbal.methods`) -> optax chain -> train step -> state
template -> shardings. Training (`mmbal.train.loop`), restoring (`mmbal.train.restore`, and
so ``mmbal diagnose`` / ``mmbal eval``), the benchmarks and the tests all build runs here,
so a run restores exactly as it was trained.
"""
from __future__ import annotations

import functools
from typing import Any, Callable, NamedTuple

import jax
import optax
from flax import nnx
from jax.experimental import multihost_utils

from mmbal import data as mmdata
from mmbal import methods
from mmbal.labels import param_labels
from mmbal.methods import MethodContext, MethodSpec
from mmbal.modalities import as_modalities
from mmbal.models import MultimodalClassifier, labels_for, split
from mmbal.train import sharding as shd
from mmbal.train.step import (classification_objectives, init_train_state, make_apply,
                              make_eval_step, make_train_step)
from mmbal.transforms import combine_objectives


def make_optimizer(cfg, total_steps: int, updates_per_step: int = 1) -> optax.GradientTransformation:
  """The base optimizer of ``optimizer.*``; ``updates_per_step`` > 1 stretches the warm-up
  for optimizers that update several times per train step (MLA's shared head)."""
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


def task_of(data_spec, config) -> str:
  """The run's task: the data set's (`DataSpec.task`), with ``train.regression_loss=mse``
  making regression ``"regression_mse"``."""
  task = getattr(data_spec, "task", "classification")
  if task == "regression" and config.train.regression_loss == "mse":
    return "regression_mse"
  return task


class Parts(NamedTuple):
  """A config's model, method and step, before any data, mesh or jit."""
  model: Any                # names, num_classes, ...
  params: Any               # initial parameters (host)
  labels: Any               # parameter labels by modality
  apply_fn: Callable        # apply_fn(params, inputs, present=None) -> Outputs
  method: MethodSpec
  tx: optax.GradientTransformation
  step_fn: Callable         # train_step(state, batch) -> (state, metrics), not jitted
  init_state: Callable      # params -> a fresh TrainState


def build_parts(c, modalities, num_classes: int, *, task: str, steps_per_epoch: int,
                total_steps: int) -> Parts:
  """The model, the method's spec, the optax chain and the (unjitted) step for a config."""
  method_def = methods.get(c.method.name)
  method_def.check_task(task)
  method_def.check_model(c.model)
  settings = method_def.parse(c.method.get(c.method.name))
  modalities = as_modalities(modalities)
  model, params, labels, apply_fn = (method_def.build_model or classifier)(
      c, modalities, num_classes, task)
  spec = method_def.build(MethodContext(
      config=settings, model=model, labels=labels, encoder_labels=encoder_labels(model),
      apply_fn=apply_fn, steps_per_epoch=steps_per_epoch, total_steps=total_steps, task=task,
      regression_bins=c.eval.regression_bins, run_config=c, params=params), settings)
  tx, step_fn = assemble(spec, model, apply_fn, labels, c, total_steps, task)
  init_state = functools.partial(init_train_state, tx=tx, seed=c.seed,
                                 num_objectives=len(spec.weights))
  return Parts(model, params, labels, apply_fn, spec, tx, step_fn, init_state)


def classifier(c, modalities, num_classes: int, task: str):
  """``(model, params, labels, apply_fn)`` of the `MultimodalClassifier` of ``model.*``."""
  del task
  model = MultimodalClassifier(modalities, num_classes, **c.model, rngs=nnx.Rngs(c.seed))
  graphdef, params, rest = split(model)
  return model, params, labels_for(model, params), make_apply(graphdef, rest)


def encoder_labels(model):
  """Labels where only encoder parameters belong to a modality (heads/probes are shared)."""
  if not hasattr(model, "encoders"):
    return None
  return param_labels(model, {n: model.encoders[n] for n in model.names})


def assemble(method, model, apply_fn, labels, c, total_steps, task):
  """``(tx, train_step)``: the method's transform, the base optimizer, its
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
      extra_args=method.extra_args, backward=c.method.backward, task=task)
  return tx, step_fn


class BuiltRun(NamedTuple):
  """Everything a run needs, sharded over its mesh (the steps jitted, not yet compiled)."""
  config: Any
  dataset: Any              # mmbal.data Splits (train / validation / test)
  task: str
  mesh: Any
  parts: Parts
  steps_per_epoch: int
  total_steps: int
  state: Any                # the initial TrainState (also the checkpoint template)
  state_sharding: Any
  param_sharding: Any
  train_step: Callable      # (state, global batch) -> (state, metrics); state donated
  eval_step: Callable       # (params, global batch) -> summed scores

  @property
  def model(self):
    return self.parts.model

  @property
  def method(self) -> MethodSpec:
    return self.parts.method

  @property
  def apply_fn(self):
    return self.parts.apply_fn


def load_dataset(c):
  """The config's data set. Process 0 prepares a shared data dir first; processes preparing
  it at once would race."""
  load = functools.partial(
      mmdata.load, c.data.name, data_dir=c.data.data_dir or None,
      config=c.data.builder_config or None, modalities=tuple(c.data.modalities),
      val_fraction=c.data.val_fraction, seed=c.seed, in_memory=c.data.in_memory,
      non_finite=c.data.non_finite,
      **({"manual_dir": c.data.manual_dir} if c.data.manual_dir else {}),
      **({"path": c.data.path} if c.data.path else {}))
  dataset = load() if jax.process_index() == 0 else None
  if jax.process_count() > 1:
    multihost_utils.sync_global_devices("mmbal: data prepared")
  return dataset or load()


def build_run(config, *, devices=None, mesh=None, dataset=None) -> BuiltRun:
  """The run of ``config`` on ``mesh`` (default: the config's ``mesh.*`` over ``devices``),
  reading its data set unless ``dataset`` is given."""
  c = config
  dataset = dataset if dataset is not None else load_dataset(c)
  spec = dataset.spec
  mesh = mesh if mesh is not None else shd.make_mesh(c.mesh.data, c.mesh.model, devices)
  steps_per_epoch = mmdata.steps_per_epoch(dataset.train, c.train.batch_size)
  total_steps = c.train.num_steps or c.train.num_epochs * steps_per_epoch
  task = task_of(spec, c)
  names = tuple(c.data.modalities) or tuple(spec.modalities)   # () = the data set's defaults
  parts = build_parts(c, {n: spec.modalities[n] for n in names}, spec.num_classes,
                      task=task, steps_per_epoch=steps_per_epoch, total_steps=total_steps)
  params = jax.device_put(parts.params, shd.param_sharding(mesh, parts.params))
  param_sh = jax.tree.map(lambda x: x.sharding, params)
  state = jax.jit(parts.init_state, in_shardings=(param_sh,))(params)
  state_sh = jax.tree.map(lambda x: x.sharding, state)
  train_step = jax.jit(parts.step_fn, in_shardings=(state_sh, shd.batch_sharding(mesh)),
                       out_shardings=(state_sh, shd.replicated(mesh)), donate_argnums=0)
  eval_step = jax.jit(make_eval_step(parts.apply_fn, parts.model.names, task),
                      in_shardings=(param_sh, shd.batch_sharding(mesh)),
                      out_shardings=shd.replicated(mesh))
  return BuiltRun(config=c, dataset=dataset, task=task, mesh=mesh, parts=parts,
                  steps_per_epoch=steps_per_epoch, total_steps=total_steps, state=state,
                  state_sharding=state_sh, param_sharding=param_sh, train_step=train_step,
                  eval_step=eval_step)
