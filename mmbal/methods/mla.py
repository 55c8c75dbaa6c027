"""MLA (Zhang et al., "Multimodal Representation Learning by Alternating Unimodal
Adaptation", CVPR 2024): alternating unimodal steps through one shared head, whose kernel
gradient is projected (OWM) so it keeps what the other modalities taught it; entropy-weighted
late fusion at test time. Its own step: `mmbal.train.alternating.make_alternating_step`.
"""
import dataclasses

import numpy as np
import optax
from flax import nnx

from mmbal import transforms
from mmbal.methods.base import Method, MethodSpec, register, setting
from mmbal.models import LATE_FUSIONS
from mmbal.train.alternating import alternating_optimizer, make_alternating_step


@dataclasses.dataclass(frozen=True)
class Settings:
  projection: str = setting("replace", choices=("replace", "add", "none"),
                            doc="the head's OWM projection: replace (paper) | add "
                                "(BalanceBenchmark) | none")


def build(ctx, c: Settings) -> MethodSpec:
  model = ctx.model
  graphdef, _, rest = nnx.split(model, nnx.Param, ...)
  names, num = model.names, len(model.names)

  def forward(params, name, x):
    return nnx.merge(graphdef, params, rest).unimodal_forward(name, x)

  def step_builder(make_optimizer, total_steps):
    encoder_tx = make_optimizer(total_steps, 1)   # (steps, updates per step)
    kernel_only = {"kernel": True, "bias": False}
    head_tx = make_optimizer(total_steps * num, num)
    if c.projection != "none":
      head_tx = optax.chain(
          transforms.owm_projection(kernel_only, model.feature_dim, mode=c.projection), head_tx)
    step = make_alternating_step(forward, names, encoder_tx, head_tx, task=ctx.task,
                                 steps_per_epoch=ctx.steps_per_epoch,
                                 fuse=model.fuse_logits)  # uses no parameters
    return alternating_optimizer(encoder_tx, head_tx), step

  return MethodSpec(weights=np.array([0.0] + [1.0] * num, np.float32), step_builder=step_builder)


METHOD = register(Method(
    name="mla", title="MLA (Zhang et al., CVPR 2024): shared head, entropy-weighted late fusion",
    build=build, settings=Settings, docs="mla", unimodal=("shared_head",), fusion=LATE_FUSIONS,
    model_reason="MLA trains one shared head by alternating unimodal steps and fuses their "
                 "logits at test time ('late_entropy' is MLA's fusion)",
    model=dict(fusion="late_entropy", unimodal="shared_head")))
