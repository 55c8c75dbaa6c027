"""PCGrad (Yu et al., "Gradient Surgery for Multi-Task Learning", NeurIPS 2020) over the fused
and unimodal objectives: where ``<g_i, g_j> < 0``, ``g_i <- g_i - <g_i, g_j> / ||g_j||^2 g_j``
(in random order), then summed. Two backward passes for any M. Transform:
`mmbal.transforms.pcgrad`.
"""
import dataclasses

import numpy as np

from mmbal import transforms
from mmbal.methods.base import Method, MethodSpec, register, setting, state_fields

HEADS_REASON = "its unimodal losses train their encoders through unimodal heads"


@dataclasses.dataclass(frozen=True)
class Settings:
  reduction: str = setting("sum", choices=("sum", "mean"), doc="how projected gradients combine")
  order: str = setting("random", choices=("random", "fixed"), doc="projection order")
  project: str = setting("all", choices=("all", "shared"),
                         doc="project whole gradients or the shared parameters' only")


def build(ctx, c: Settings) -> MethodSpec:
  num = len(ctx.model.names) + 1
  tx = transforms.pcgrad(reduction=c.reduction, order=c.order, project=c.project,
                         labels=ctx.labels if c.project == "shared" else None, num_objectives=num)
  return MethodSpec(weights=np.ones(num, np.float32), grad_mode="stacked", transform=tx,
                    log_state=state_fields(transforms.PCGradState, "conflict_fraction"))


METHOD = register(Method(
    name="pcgrad", title="PCGrad (Yu et al., NeurIPS 2020)", build=build, settings=Settings,
    docs="pcgrad", unimodal=("heads",), model_reason=HEADS_REASON, model=dict(unimodal="heads")))
