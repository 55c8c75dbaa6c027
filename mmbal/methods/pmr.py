"""PMR (Fan et al., "PMR: Prototypical Modal Rebalance for Multimodal Learning", CVPR 2023):
per-modality class prototypes (feature means); a prototype cross-entropy
``alpha * beta_m * CE(-||h_m - c_m,k||^2, y)`` for the modalities whose prototype score lags
behind (``beta_m``: continuous, paper, or binary, code). Loss term and prototype memory:
`mmbal.objectives.prototype_rebalance`, `mmbal.objectives.prototype_memory`.

Regression (mmbal's variant; PMR is a classification method): the prototypes are the
feature means of binned labels, MMSA's finest metric bins of the data set
(`mmbal.tasks.regression_classes` with ``eval.regression_bins``: MOSI/MOSEI's Acc-7
classes ``round(clip(y, -3, 3))``, SIMS's Acc-5 bins), and the prototype cross-entropy
and scores are over those bins. The task loss stays the regression loss.
"""
import dataclasses

import jax.numpy as jnp

from mmbal import objectives
from mmbal.methods.base import (Method, MethodSpec, joint_weights, register, setting,
                                state_fields, warmed_up)
from mmbal.tasks import REGRESSION_BINS, is_regression, regression_classes
from mmbal.train.step import classification_objectives
from mmbal.transforms._state import find_state


@dataclasses.dataclass(frozen=True)
class Settings:
  alpha: float = setting(1.0, low=0.0, high=10.0, doc="weight of the prototype cross-entropy")
  coefficient: str = setting("continuous", choices=("continuous", "binary"),
                             doc="beta_m: continuous (paper) | binary (code)")
  fraction: float = setting(0.1, low=1e-6, high=1.0,
                            doc="prototypes from the first fraction of each epoch's steps")
  momentum: float = setting(0.2, low=0.0, high=1.0, doc="prototype update momentum")
  entropy_weight: float = setting(0.0, low=0.0, doc="entropy regulariser's weight")
  entropy_epochs: int = setting(0, low=0, doc="epochs the entropy regulariser is on")


def build(ctx, c: Settings) -> MethodSpec:
  model = ctx.model
  if is_regression(ctx.task):
    num_classes = REGRESSION_BINS[ctx.regression_bins]
    classes = lambda labels: regression_classes(labels, ctx.regression_bins)
  else:
    num_classes, classes = model.num_classes, lambda labels: labels
  memory = objectives.prototype_memory(len(model.names), num_classes, model.feature_dim,
                                       steps_per_epoch=ctx.steps_per_epoch, fraction=c.fraction,
                                       momentum=c.momentum)

  def losses_builder(apply_fn, names):
    base = classification_objectives(apply_fn, names, ctx.task)

    def losses(params, batch, opt_state=None, step=None):
      values, aux = base(params, batch)
      if opt_state is None:
        return values, aux
      state = find_state(opt_state, objectives.PrototypeState, "pmr")
      entropy_weight = c.entropy_weight and c.entropy_weight * (
          1.0 - warmed_up(step, ctx.steps_per_epoch, c.entropy_epochs))   # the first epochs only
      pmr = objectives.prototype_rebalance(
          aux["features"], classes(aux["labels"]), state.prototypes, alpha=c.alpha,
          coefficient=c.coefficient, entropy_weight=entropy_weight, seen=state.seen)
      ready = state.seen.any()
      return (values.at[0].add(jnp.where(ready, pmr.loss, 0.0)),
              dict(aux, log_losses=values, pmr_coefficients=pmr.coefficients * ready))
    return losses

  def extra(aux, key):
    del key
    return dict(features=aux["features"], labels=classes(aux["labels"]),
                coefficients=aux.get("pmr_coefficients"))

  return MethodSpec(weights=joint_weights(model), transform=memory, losses=losses_builder,
                    extra_args=extra,
                    log_state=state_fields(objectives.PrototypeState, "coefficients"))


METHOD = register(Method(
    name="pmr", title="PMR (Fan et al., CVPR 2023)", build=build, settings=Settings, docs="pmr",
    tasks=("classification", "regression"),
    tasks_reason="its prototypes are feature means of one class per example (regression labels "
                 "are binned), and a multi-hot example has several",
    model=dict(unimodal="probe"),
    regression_form="its prototypes are feature means of the labels' metric bins "
                    "(eval.regression_bins)"))
