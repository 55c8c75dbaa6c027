"""Joint training: the fused loss plus the unimodal losses of the model's probes or heads.

The baseline every method is compared with; ``L = L_fused + sum_m L_m`` (the unimodal
terms train nothing but the probes with ``model.unimodal="probe"``, and are absent with a
split head, whose unimodal logits are parts of the fused ones).
"""
from mmbal.methods.base import Method, MethodSpec, joint_weights, register


def build(ctx, settings) -> MethodSpec:
  del settings
  return MethodSpec(weights=joint_weights(ctx.model))


METHOD = register(Method(name="joint", title="Joint training (the baseline)", build=build,
                         generated=False, baseline=True))
