"""SAM (Foret et al., "Sharpness-Aware Minimization for Efficiently Improving Generalization",
ICLR 2021): the gradient taken at the worst-case point within radius rho,
``g_SAM = ∇L(θ + rho g / ||g||)``. Transform: `mmbal.transforms.sam`.

The ascent step moves the model only: the linear probes of ``model.unimodal="probe"`` are
left out of ``g`` and of its norm (with them in, they took up to 99.5% of ||g||^2 on mfeat
and the encoders saw a few percent of rho).
"""
import dataclasses

from mmbal import transforms
from mmbal.methods.base import (Method, MethodSpec, joint_weights, register, setting,
                                state_fields, trained_leaves)


@dataclasses.dataclass(frozen=True)
class Settings:
  rho: float = setting(0.05, low=0.0, high=10.0, doc="perturbation radius")
  normalize: str = setting("l2", choices=("l2", "sign"), doc="the ascent direction's form")


def build(ctx, c: Settings) -> MethodSpec:
  return MethodSpec(weights=joint_weights(ctx.model),
                    transform=transforms.sam(rho=c.rho, normalize=c.normalize,
                                             perturb=trained_leaves(ctx)),
                    log_state=state_fields(transforms.SamState, "perturbation_norm"))


METHOD = register(Method(name="sam", title="SAM (Foret et al., ICLR 2021)", build=build,
                         settings=Settings, docs="sam", model=dict(unimodal="probe")))
