"""G-Blending (Wang, Tran & Feiszli, "What Makes Training Multi-modal Classification Networks
Hard?", CVPR 2020): the fused and unimodal-head losses weighted by
``w_k ∝ ΔG_k / ΔO_k^2`` (generalisation gain over squared overfitting change), re-estimated on
validation every ``super_epoch`` epochs. Transform: `mmbal.transforms.gradient_blending`.

The paper compares train and validation losses measured at the same checkpoints; by default
(``train_loss="measured"``) the trainer measures the train losses with an evaluation pass
over the train split at each epoch end, with the parameters the validation losses use.
``train_loss="running"`` uses the mean of the epoch's step losses instead (cheaper, but
taken along the epoch's moving parameters, so not comparable with the validation losses).
"""
import dataclasses

import jax
import numpy as np

from mmbal import transforms
from mmbal.methods.base import Method, MethodSpec, register, setting, state_fields


@dataclasses.dataclass(frozen=True)
class Settings:
  super_epoch: int = setting(1, low=1, doc="epochs between weight re-estimations")
  train_loss: str = setting("measured", choices=("measured", "running"),
                            doc="train losses measured at the checkpoint (paper) or the "
                                "epoch's running mean of step losses")


def build(ctx, c: Settings) -> MethodSpec:
  every = c.super_epoch

  def update(opt_state, r):
    blended = lambda: transforms.blending_update(opt_state, r["train_losses"], r["val_losses"])
    return jax.lax.cond(r["epoch"] % every == 0, blended, lambda: opt_state)

  num = len(ctx.model.names) + 1
  return MethodSpec(weights=np.full(num, 1.0 / num, np.float32), grad_mode="stacked",
                    transform=transforms.gradient_blending(("fused",) + ctx.model.names),
                    epoch_end=update, measured_train_losses=c.train_loss == "measured",
                    log_state=state_fields(transforms.BlendingState, "weights"))


METHOD = register(Method(
    name="gradient_blending", title="G-Blending (Wang et al., CVPR 2020)", build=build,
    settings=Settings, docs="gradient-blending", unimodal=("heads",),
    model_reason="its weights blend the losses of unimodal heads that train their encoders",
    model=dict(unimodal="heads")))
