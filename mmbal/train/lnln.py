"""LNLN in the trainer (``method.name="lnln"``; Zhang, Wang, Yu, NeurIPS 2024).

Trains `mmbal.models.lnln.LNLN` on the MMSA data (modalities ``text``, ``audio``, ``vision``
with their ``*_mask`` padding masks) with its four-term loss (`mmbal.objectives.lnln_loss`)
on LNLN's random-missing protocol (`mmbal.data.missing.random_missing`: per-sample rates,
half the samples complete, fresh masks from ``(seed, epoch, step)`` — the official code
reuses one mask set). The checkpoint is selected once on validation (negative / non-negative
accuracy, as every regression run), then the test split is scored at the fixed missing rates
0.0 ... 0.9 over ``eval_seeds`` seeds and averaged over rates, as the paper reports (the
official code selects a checkpoint per metric on the test set).
"""
from __future__ import annotations

import numpy as np
import jax
import jax.numpy as jnp
import optax
from flax import nnx

from mmbal import data as mmdata
from mmbal.data import missing
from mmbal.labels import param_labels
from mmbal.models.classifier import Outputs
from mmbal.models.lnln import LNLN, LNLNConfig, lnln_inputs
from mmbal.objectives.lnln import LNLNLossWeights, lnln_loss
from mmbal.train import sharding as shd
from mmbal.train.regression import regression_metrics
from mmbal.train.step import TrainState, task_correct

NAMES = ("text", "audio", "vision")


def build_lnln(c, modalities, num_classes, steps_per_epoch, total_steps, task, method_spec):
  """``(model, params, labels, apply_fn, method)`` for ``method.name="lnln"``."""
  names = tuple(m.name for m in modalities)
  if names != NAMES or any(len(m.shape) != 2 for m in modalities):
    raise ValueError(f"method 'lnln' needs data.modalities=text,audio,vision sequences, got "
                     f"{[(m.name, m.shape) for m in modalities]}")
  if not task.startswith("regression"):
    raise ValueError(f"method 'lnln' is set up for the sentiment regression data; got {task}")
  lc = c.method.lnln
  shapes = {m.name: m.shape for m in modalities}
  sizes = dict(text_dim=shapes["text"][1], audio_dim=shapes["audio"][1],
               vision_dim=shapes["vision"][1], text_len=shapes["text"][0],
               audio_len=shapes["audio"][0], vision_len=shapes["vision"][0],
               dim=lc.dim, num_tokens=lc.num_tokens, heads=lc.heads, head_dim=lc.head_dim,
               mlp_dim=lc.dim, fusion_depth=lc.fusion_depth, num_outputs=1)
  config = LNLNConfig.official_code(**sizes) if lc.official_code else LNLNConfig(**sizes)
  model = LNLN(config, rngs=nnx.Rngs(c.seed))
  graphdef, params, rest = nnx.split(model, nnx.Param, ...)
  params = nnx.to_pure_dict(params)
  labels = param_labels(model, model.owners(), params)
  weights = LNLNLossWeights(cc=lc.cc, adv=lc.adv, rec=lc.rec)
  merge = lambda params: nnx.merge(graphdef, params, rest)

  def apply_fn(params, inputs, present=None):
    """LNLN's prediction as `Outputs`; an absent modality is erased entirely; the unimodal
    rows are LNLN with only that modality left."""
    net = merge(params)
    masks = {m: inputs[f"{m}_mask"] for m in NAMES if f"{m}_mask" in inputs}

    def predict(keep):   # keep: [B, M] 0/1
      kept = {m: inputs[m] * keep[:, i, None, None] for i, m in enumerate(NAMES)}
      return net(kept, masks).prediction[:, None]

    size = inputs["text"].shape[0]
    full = jnp.ones((size, len(NAMES))) if present is None else present
    alone = jax.vmap(lambda one: predict(jnp.broadcast_to(one, full.shape)))(jnp.eye(len(NAMES)))
    return Outputs(predict(full), alone, jnp.zeros((len(NAMES), size, 1)))

  def prepare_batch(batch, step):
    rng = missing.missing_rng(c.seed, step // steps_per_epoch, step)
    return missing.random_missing(batch, rng)

  def step_builder(make_optimizer, total_steps):
    tx = make_optimizer(total_steps, 1)

    def train_step(state: TrainState, batch):
      def loss(params):
        out = merge(params)(**lnln_inputs(batch, train=True))
        total, terms = lnln_loss(out, batch, weights, task=lc.task_loss)
        return total, (out, jnp.stack([terms[k] for k in ("task", "cc", "adv", "rec")]))
      (_, (out, terms)), grads = jax.value_and_grad(loss, has_aux=True)(state.params)
      updates, opt_state = tx.update(grads, state.opt_state, state.params)
      params = optax.apply_updates(state.params, updates)
      metrics = dict(losses=terms,
                     fused_correct=task_correct(out.prediction[:, None], batch["label"], task).mean())
      return state.replace(step=state.step + 1, params=params, opt_state=opt_state,
                           loss_sum=state.loss_sum + terms, loss_count=state.loss_count + 1), metrics
    return tx, train_step

  def extra_results(params, dataset, mesh, bins):
    """The test split at missing rates 0.0 ... 0.9 (``eval_seeds`` seeds), and their mean."""
    predict = jax.jit(lambda params, batch: merge(params)(**lnln_inputs(batch, train=False)).prediction)
    by_rate = {}
    for rate in missing.EVAL_RATES:
      runs = []
      for seed in missing.EVAL_SEEDS[:lc.eval_seeds]:
        rng = np.random.default_rng([seed, int(round(rate * 100))])
        preds, truth = [], []
        for batch in mmdata.eval_batches(dataset.test, c.eval.batch_size):
          corrupted = missing.fixed_missing(batch, rng, rate)
          keep = batch["mask"].astype(bool)
          preds.append(np.asarray(predict(params, shd.global_batch(mesh, corrupted)))[keep])
          truth.append(np.asarray(batch["label"])[keep])
        runs.append(regression_metrics(np.concatenate(preds), np.concatenate(truth), bins))
      by_rate[f"{rate:.1f}"] = {k: float(np.mean([r[k] for r in runs])) for k in runs[0]}
    average = {k: float(np.mean([m[k] for m in by_rate.values()])) for k in next(iter(by_rate.values()))}
    return dict(lnln_missing=dict(rates=by_rate, average=average,
                                  seeds=list(missing.EVAL_SEEDS[:lc.eval_seeds])))

  model.names = NAMES
  method = method_spec(weights=np.array([weights.task, weights.cc, weights.adv, weights.rec],
                                        np.float32),
                       step_builder=step_builder, prepare_batch=prepare_batch,
                       log_names=("cc", "adv", "rec"), extra_results=extra_results)
  return model, params, labels, apply_fn, method
