"""MMPareto (Wei & Hu, "MMPareto: Boosting Multimodal Learning with Innocent Unimodal
Assistance", ICML 2024): per encoder, where the fused and unimodal gradients conflict, their
min-norm (Pareto) convex combination, rescaled to the gradients' norm (``gamma``). Transform:
`mmbal.transforms.mmpareto`.
"""
import dataclasses

import numpy as np

from mmbal import transforms
from mmbal.methods.base import Method, MethodSpec, register, setting, state_fields
from mmbal.methods.pcgrad import HEADS_REASON


@dataclasses.dataclass(frozen=True)
class Settings:
  gamma: float = setting(1.0, low=0.0, high=10.0, doc="the rescaled direction's magnitude factor")
  rescale: str = setting("per_leaf", choices=("per_leaf", "global", "none"),
                         doc="where the Pareto direction is rescaled")


def build(ctx, c: Settings) -> MethodSpec:
  num = len(ctx.model.names) + 1
  tx = transforms.mmpareto(ctx.model.names, labels=ctx.labels, gamma=c.gamma, rescale=c.rescale)
  return MethodSpec(weights=np.ones(num, np.float32), grad_mode="stacked", transform=tx,
                    log_state=state_fields(transforms.MMParetoState, "weights"))


METHOD = register(Method(
    name="mmpareto", title="MMPareto (Wei & Hu, ICML 2024)", build=build, settings=Settings,
    docs="mmpareto", unimodal=("heads",), model_reason=HEADS_REASON, model=dict(unimodal="heads")))
