"""LNLN (Zhang, Wang, Yu, "Towards Robust Multimodal Sentiment Analysis with Incomplete Data",
NeurIPS 2024) in the trainer (``method.name="lnln"``): its own model and step.

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

import dataclasses

import numpy as np
import jax
import jax.numpy as jnp
from flax import nnx

from mmbal import data as mmdata
from mmbal.data import missing
from mmbal.labels import param_labels
from mmbal.models.classifier import Outputs
from mmbal.models.lnln import LNLN, LNLNConfig, lnln_inputs
from mmbal.objectives.lnln import LNLNLossWeights, lnln_loss
from mmbal.train import sharding as shd
from mmbal.train.evaluate import split_sums
from mmbal.train.regression import regression_metrics
from mmbal.methods.base import Method, MethodSpec, register, setting
from mmbal.train.step import TrainState, apply_optimizer, task_correct

NAMES = ("text", "audio", "vision")


@dataclasses.dataclass(frozen=True)
class Settings:
  dim: int = setting(128, low=1, doc="model width")
  num_tokens: int = setting(8, low=1, doc="tokens per modality after the encoders")
  heads: int = setting(8, low=1, doc="attention heads")
  head_dim: int = setting(64, low=1, doc="width of one attention head")
  fusion_depth: int = setting(4, low=1, doc="fusion layers")
  block_depth: int = setting(0, low=0, doc="0: the paper's depths; n > 0: n blocks in every other "
                             "sub-transformer and n + 1 hyper-modality layers (quick CPU runs)")
  official_code: bool = setting(False, doc="the documented paper-vs-code differences as in the code")
  cc: float = setting(0.9, low=0.0, doc="weight of the completeness-check loss")
  adv: float = setting(0.8, low=0.0, doc="weight of the adversarial loss")
  rec: float = setting(0.1, low=0.0, doc="weight of the reconstruction loss")
  task_loss: str = setting("mse", choices=("mse", "l1"), doc="the task loss (paper: mse)")
  eval_seeds: int = setting(3, low=1, high=len(missing.EVAL_SEEDS),
                            doc="seeds of the missing-rate evaluation")


def build_model(c, modalities, num_classes, task):
  """``(model, params, labels, apply_fn)``: `LNLN` with its prediction as `Outputs`."""
  del num_classes, task
  names = tuple(m.name for m in modalities)
  if names != NAMES or any(len(m.shape) != 2 for m in modalities):
    raise ValueError(f"method 'lnln' needs data.modalities=text,audio,vision sequences, got "
                     f"{[(m.name, m.shape) for m in modalities]}")
  lc, shapes = c.method.lnln, {m.name: m.shape for m in modalities}
  sizes = dict(text_dim=shapes["text"][1], audio_dim=shapes["audio"][1],
               vision_dim=shapes["vision"][1], text_len=shapes["text"][0],
               audio_len=shapes["audio"][0], vision_len=shapes["vision"][0],
               dim=lc.dim, num_tokens=lc.num_tokens, heads=lc.heads, head_dim=lc.head_dim,
               mlp_dim=lc.dim, fusion_depth=lc.fusion_depth, num_outputs=1)
  if lc.block_depth:
    n = lc.block_depth
    sizes.update(embed_depth=n, cc_depth=n, proxy_depth=n, rec_depth=n, hyper_depth=n + 1)
  config = LNLNConfig.official_code(**sizes) if lc.official_code else LNLNConfig(**sizes)
  model = LNLN(config, rngs=nnx.Rngs(c.seed))
  model.names = NAMES
  graphdef, params, rest = nnx.split(model, nnx.Param, ...)
  params = nnx.to_pure_dict(params)
  labels = param_labels(model, model.owners(), params)
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

  return model, params, labels, apply_fn


def build(ctx, lc: Settings) -> MethodSpec:
  c, task, steps_per_epoch = ctx.run_config, ctx.task, ctx.steps_per_epoch
  graphdef, _, rest = nnx.split(ctx.model, nnx.Param, ...)
  merge = lambda params: nnx.merge(graphdef, params, rest)
  weights = LNLNLossWeights(cc=lc.cc, adv=lc.adv, rec=lc.rec)

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
      params, opt_state = apply_optimizer(tx, grads, state.opt_state, state.params)
      metrics = dict(losses=terms,
                     fused_correct=task_correct(out.prediction[:, None], batch["label"], task).mean())
      return state.advance(params, opt_state, terms), metrics
    return tx, train_step

  def extra_results(params, dataset, mesh, bins):
    return missing_rate_results(merge, params, dataset, mesh, bins, lc.eval_seeds,
                                c.eval.batch_size)

  return MethodSpec(weights=np.array([weights.task, weights.cc, weights.adv, weights.rec],
                                     np.float32),
                    step_builder=step_builder, prepare_batch=prepare_batch,
                    log_names=("cc", "adv", "rec"), extra_results=extra_results)


def missing_rate_results(merge, params, dataset, mesh, bins, eval_seeds: int, batch_size: int):
  """The test split at missing rates 0.0 ... 0.9 (``eval_seeds`` seeds), and their mean."""
  predict = jax.jit(lambda params, batch: dict(
      pred_fused=merge(params)(**lnln_inputs(batch, train=False)).prediction,
      label=batch["label"], mask=batch["mask"]))
  put = lambda batch: shd.global_batch(mesh, batch)
  by_rate = {}
  for rate in missing.EVAL_RATES:
    runs = []
    for seed in missing.EVAL_SEEDS[:eval_seeds]:
      rng = np.random.default_rng([seed, int(round(rate * 100))])
      batches = (missing.fixed_missing(b, rng, rate) for b in mmdata.eval_batches(dataset.test, batch_size))
      _, examples = split_sums(predict, params, batches, put)
      keep = np.concatenate([e["mask"] for e in examples]).astype(bool)
      runs.append(regression_metrics(np.concatenate([e["pred_fused"] for e in examples])[keep],
                                     np.concatenate([e["label"] for e in examples])[keep], bins))
    by_rate[f"{rate:.1f}"] = {k: float(np.mean([r[k] for r in runs])) for k in runs[0]}
  average = {k: float(np.mean([m[k] for m in by_rate.values()])) for k in next(iter(by_rate.values()))}
  return dict(lnln_missing=dict(rates=by_rate, average=average,
                                seeds=list(missing.EVAL_SEEDS[:eval_seeds])))


METHOD = register(Method(
    name="lnln", title="LNLN (Zhang, Wang, Yu, NeurIPS 2024): robust to missing modalities",
    build=build, settings=Settings, docs="lnln", tasks=("regression",),
    tasks_reason="LNLN is a model for sentiment regression (MMSA's data) with its own "
                 "language-dominated architecture", data=("mmsa",), generated=False,
    build_model=build_model))
