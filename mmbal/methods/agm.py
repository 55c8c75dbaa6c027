"""AGM (Li et al., "Boosting Multi-modal Model Performance with Adaptive Gradient Modulation",
ICCV 2023): Shapley-style unimodal outputs ``o_m`` from all 2^M - 1 modality subsets; each
modality's share of the gradient is scaled by ``kappa_m = exp(-alpha (s_m - mean_k s_k))``
against the running mean of its score. Transform: `mmbal.transforms.agm`.

On regression / multi-label data the shares and scores use the task's loss (scores: the
floored task loss of each unimodal output; see `mmbal.transforms.agm_shares`).
"""
import dataclasses

import jax.numpy as jnp
import numpy as np

from mmbal import scores, transforms
from mmbal.methods.base import (Method, MethodSpec, register, setting, state_fields,
                                subset_logits)
from mmbal.tasks import task_loss


@dataclasses.dataclass(frozen=True)
class Settings:
  alpha: float = setting(1.0, low=0.0, high=10.0, doc="modulation strength")
  clip: float = setting(0.0, low=0.0, doc="clip kappa to [1/clip, clip]; 0 = off (official)")
  start_epoch: int = setting(0, low=0, doc="first modulated epoch")
  end_epoch: int = setting(0, low=0, doc="epoch where modulation stops (0: never)")


def build(ctx, c: Settings) -> MethodSpec:
  names, num = ctx.model.names, len(ctx.model.names)
  masks = jnp.asarray(scores.subset_masks(num)[1:])   # the empty set is dropped, as in AGM

  def losses_builder(apply_fn, names):
    def losses(params, batch, opt_state=None, step=None):
      del opt_state, step
      labels = batch["label"]
      logits = subset_logits(apply_fn, params, batch, names, masks)
      res = transforms.agm_shares(logits, labels, names, task=ctx.task)
      uni = task_loss(res.outputs, labels, ctx.task).mean(-1)
      aux = dict(logits=logits[-1], unimodal_logits=res.outputs, labels=labels,
                 agm_scores=res.scores, log_losses=jnp.concatenate([res.loss[None], uni]))
      return res.shares, aux
    return losses

  epoch = ctx.steps_per_epoch
  tx = transforms.agm(names, alpha=c.alpha, clip=c.clip or None, start_step=c.start_epoch * epoch,
                      end_step=c.end_epoch * epoch if c.end_epoch else None)
  return MethodSpec(weights=np.array([1.0] + [0.0] * num, np.float32), grad_mode="stacked",
                    transform=tx, losses=losses_builder,
                    objectives=tuple(f"share_{n}" for n in names),
                    extra_args=lambda aux, key: dict(agm_scores=aux["agm_scores"]),
                    log_state=state_fields(transforms.AgmState, "coefficients"))


METHOD = register(Method(
    name="agm", title="AGM (Li et al., ICCV 2023)", build=build, settings=Settings, docs="agm",
    unimodal=("split_head",), model_reason="AGM's unimodal outputs come from the fused model",
    model=dict(unimodal="split_head"),
    regression_form="its scores are the (floored) L1 errors of the Shapley unimodal outputs"))
