"""BalGrad (Kwon et al., NAACL 2025; mmbal's documented reconstruction): reweighted
inter-modality KL gradients; the task gradient projected off them where they conflict.
Transform: `mmbal.transforms.balgrad`.

On regression / multi-label data the task and unimodal losses are the task's, and the KL
is between the predictive distributions those losses are the NLL of (regression: unit
Laplace for L1, unit Gaussian for MSE; multi-label: per-class Bernoulli); see
`mmbal.transforms.balgrad_kl_losses`.
"""
import dataclasses

import jax.numpy as jnp
import numpy as np

from mmbal import transforms
from mmbal.methods.base import Method, MethodSpec, register, setting, state_fields
from mmbal.methods.pcgrad import HEADS_REASON
from mmbal.train.step import classification_objectives


@dataclasses.dataclass(frozen=True)
class Settings:
  reweight: str = setting("loss_share", choices=("loss_share", "uniform"),
                          doc="the KL gradients' weights")
  project: bool = setting(True, doc="project the task gradient off the KL gradient on conflict")


def build(ctx, c: Settings) -> MethodSpec:
  names = ctx.model.names

  def losses_builder(apply_fn, names):
    base = classification_objectives(apply_fn, names, ctx.task)

    def losses(params, batch, opt_state=None, step=None):
      values, aux = base(params, batch)
      kl = transforms.balgrad_kl_losses(aux["unimodal_logits"], task=ctx.task)
      stacked = jnp.concatenate([values[:1], kl, values[1:]])   # [task, kl_1..kl_M, uni_1..uni_M]
      return stacked, dict(aux, log_losses=values)
    return losses

  objectives = tuple(transforms.balgrad_objective_names(names))
  supports = {o: (n,) for o, n in zip(objectives[1:], names + names)}
  unimodal_losses = lambda aux, key: dict(unimodal_losses={
      n: l for n, l in zip(names, aux["log_losses"][1:])})
  return MethodSpec(weights=np.ones(len(names) + 1, np.float32), grad_mode="stacked",
                    transform=transforms.balgrad(names, reweight=c.reweight, project=c.project),
                    losses=losses_builder, objectives=objectives, supports=supports,
                    extra_args=unimodal_losses,
                    log_state=state_fields(transforms.BalGradState, "weights"))


METHOD = register(Method(
    name="balgrad", title="BalGrad (Kwon et al., NAACL 2025; mmbal's documented reconstruction)",
    build=build, settings=Settings, docs="balgrad", unimodal=("heads",),
    model_reason=HEADS_REASON, model=dict(unimodal="heads"),
    regression_form="its KL is between unit-scale Laplace predictive distributions (L1's)"))
