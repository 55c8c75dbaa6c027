"""MLA's train step: one compiled step that cycles through the modalities.

Per batch, each modality m in turn takes an optimizer step on its own loss
``CE(h(phi_m(x_m)), y)`` through the shared head ``h``, whose kernel gradient is projected
(`mmbal.transforms.owm_projection`) so that the head keeps what the other modalities
taught it. The cycle is a ``lax.scan`` over modality indices with a ``lax.switch`` picking
the modality's branch: one jit, not M compiles or a Python loop.

Encoder m only enters modality m's loss, so its M sub-steps reduce to one update per
batch with that loss's gradient: the encoders take a single optimizer step after the
cycle, exactly as PyTorch's Adam skips parameters whose gradient is None. The head steps
M times per batch (its learning-rate schedule is stretched accordingly by the caller).
"""
from __future__ import annotations

from typing import Callable, Sequence

import jax
import jax.numpy as jnp
import optax

from mmbal.train.step import TrainState, apply_optimizer, task_correct, task_loss


def alternating_optimizer(encoder_tx: optax.GradientTransformation,
                          head_tx: optax.GradientTransformation) -> optax.GradientTransformation:
  """The state holder for `make_alternating_step`: ``(encoder state, head state)``.

  Only ``init`` is meaningful; updates happen inside the alternating step.
  """
  def init(params):
    return (encoder_tx.init(params["encoders"]), head_tx.init(params["head"]))

  def update(updates, state, params=None):
    raise NotImplementedError("MLA's optimizer steps inside make_alternating_step")

  return optax.GradientTransformation(init, update)


def make_alternating_step(unimodal_forward: Callable, names: Sequence[str],
                          encoder_tx: optax.GradientTransformation,
                          head_tx: optax.GradientTransformationExtraArgs, *,
                          steps_per_epoch: int, fuse: Callable, task: str = "classification"):
  """``train_step(state, batch) -> (state, metrics)`` for params ``{"encoders", "head"}``.

  ``unimodal_forward(params, name, x) -> ([B, C] logits, [B, D] features)``;
  ``fuse(unimodal_logits [M, B, C]) -> [B, C]`` is the model's test-time fusion (logged).
  ``head_tx`` receives the extra args ``feature_mean`` and ``progress``.
  """
  names = tuple(names)

  def branch(name, batch):
    def run(encoders, head):
      def loss(encoders, head):
        logits, features = unimodal_forward({"encoders": encoders, "head": head}, name, batch[name])
        ce = task_loss(logits, batch["label"], task).mean()
        return ce, (logits, features.mean(0))
      (ce, (logits, mean)), grads = jax.value_and_grad(loss, argnums=(0, 1), has_aux=True)(
          encoders, head)
      return ce, logits, mean, grads
    return run

  def train_step(state: TrainState, batch):
    encoders = state.params["encoders"]
    encoder_state, head_state = state.opt_state
    progress = (state.step % steps_per_epoch) / steps_per_epoch
    branches = [branch(n, batch) for n in names]

    def modality_step(carry, index):
      head, head_state, encoder_grads = carry
      ce, logits, mean, (g_enc, g_head) = jax.lax.switch(index, branches, encoders, head)
      head, head_state = apply_optimizer(head_tx, g_head, head_state, head, feature_mean=mean,
                                         progress=progress)
      encoder_grads = jax.tree.map(jnp.add, encoder_grads, g_enc)
      return (head, head_state, encoder_grads), (ce, logits)

    zeros = jax.tree.map(jnp.zeros_like, encoders)
    (head, head_state, encoder_grads), (uni_losses, uni_logits) = jax.lax.scan(
        modality_step, (state.params["head"], head_state, zeros), jnp.arange(len(names)))
    encoders, encoder_state = apply_optimizer(encoder_tx, encoder_grads, encoder_state, encoders)
    params = {"encoders": encoders, "head": head}

    labels = batch["label"]
    fused = fuse(uni_logits)
    fused_loss = task_loss(fused, labels, task).mean()
    values = jnp.concatenate([fused_loss[None], uni_losses])
    correct = lambda logits: task_correct(logits, labels, task).mean(-1)
    # MLA's per-sample entropy weights softmax_m(-H_m), batch-averaged: who the fusion trusts.
    logp = jax.nn.log_softmax(uni_logits, axis=-1)
    trust = jax.nn.softmax((jnp.exp(logp) * logp).sum(-1), axis=0).mean(-1)
    metrics = dict(losses=values, fused_correct=correct(fused), unimodal_correct=correct(uni_logits),
                   method=dict(entropy_weight={n: trust[i] for i, n in enumerate(names)}))
    return state.advance(params, (encoder_state, head_state), values), metrics

  return train_step
