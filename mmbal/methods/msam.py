"""M-SAM (Nowdeh et al., NeurIPS 2025): SAM on the share of the loss owned by the batch's
dominant modality, ``L_d = v_d L`` with v the normalised Shapley values of the modality
subsets' scores (2^M subset forwards). Transform: `mmbal.transforms.msam`.

Subset values on regression / multi-label data: ``value="accuracy"`` is the task's
correctness (regression: sign agreement; multi-label: Hamming accuracy), ``"loss"`` the
negative task loss (`mmbal.transforms.subset_values`).
"""
import dataclasses

import jax
import jax.numpy as jnp

from mmbal import scores, transforms
from mmbal.methods.base import (Method, MethodSpec, joint_weights, register, setting,
                                state_fields, subset_logits, trained_leaves)
from mmbal.train.step import classification_objectives


@dataclasses.dataclass(frozen=True)
class Settings:
  rho: float = setting(0.05, low=0.0, high=10.0, doc="perturbation radius")
  normalize: str = setting("l2", choices=("l2", "sign"), doc="the ascent direction's form")
  value: str = setting("accuracy", choices=("accuracy", "loss"), doc="the subsets' score")
  decomposition: str = setting("scaled_loss", choices=("scaled_loss", "modality"),
                               doc="SAM on v_d * loss (paper's notation) or on the dominant "
                                   "modality's encoder and the shared parameters (mmbal)")


def build(ctx, c: Settings) -> MethodSpec:
  names = ctx.model.names
  masks = jnp.asarray(scores.subset_masks(len(names)))

  def losses_builder(apply_fn, names):
    base = classification_objectives(apply_fn, names, ctx.task)

    def losses(params, batch, opt_state=None, step=None):
      values, aux = base(params, batch)
      # The 2^M subset forwards only score the modalities: no gradient flows through them.
      frozen = jax.lax.stop_gradient(params)
      subset = transforms.subset_values(subset_logits(apply_fn, frozen, batch, names, masks),
                                        batch["label"], value=c.value, task=ctx.task)
      return values, dict(aux, shapley_values=transforms.modality_shapley(subset, names))
    return losses

  tx = transforms.msam(names, rho=c.rho, normalize=c.normalize, value=c.value, task=ctx.task,
                       perturb=trained_leaves(ctx),   # the probes are not part of the model
                       decomposition=c.decomposition, labels=ctx.encoder_labels)
  return MethodSpec(weights=joint_weights(ctx.model), transform=tx, losses=losses_builder,
                    extra_args=lambda aux, key: dict(shapley_values=aux["shapley_values"]),
                    log_state=state_fields(transforms.MsamState, "shapley", "dominant_weight",
                                           "perturbation_norm"))


METHOD = register(Method(
    name="msam", title="M-SAM (Nowdeh et al., NeurIPS 2025)", build=build, settings=Settings,
    docs="msam", model=dict(unimodal="probe"),
    regression_form="its subset values are sign agreements (method.msam.value=loss: negative "
                    "L1 errors)"))
