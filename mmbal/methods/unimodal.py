"""Unimodal baselines: each encoder trained alone by its own head, ``L = sum_m L_m``.

The validation score that selects the checkpoint is the mean unimodal accuracy (the fused
head is untrained).
"""
import numpy as np

from mmbal.methods.base import Method, MethodSpec, register


def build(ctx, settings) -> MethodSpec:
  del settings
  return MethodSpec(weights=np.array([0.0] + [1.0] * len(ctx.model.names), np.float32),
                    selection="unimodal_mean")


METHOD = register(Method(
    name="unimodal", title="Each encoder trained alone by its own head (the unimodal baselines)",
    build=build, baseline=True, unimodal=("heads",), model_reason="each encoder is trained by its own head",
    model=dict(unimodal="heads")))
