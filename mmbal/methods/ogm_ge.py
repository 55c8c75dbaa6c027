"""OGM-GE (Peng et al., "Balanced Multimodal Learning via On-the-fly Gradient Modulation",
CVPR 2022): the dominant modality's encoder gradients are damped by ``1 - tanh(alpha rho_m)``
(``rho_m = s_m / mean_{k != m} s_k``, s the true-class confidence), plus Gaussian noise with the
gradient's std (generalisation enhancement). Transform: `mmbal.transforms.ogm_ge`.
"""
import dataclasses

from mmbal import scores, transforms
from mmbal.methods.base import (Method, MethodSpec, for_task, joint_weights, register, setting,
                                state_fields)


@dataclasses.dataclass(frozen=True)
class Settings:
  alpha: float = setting(0.8, low=0.0, high=10.0, doc="modulation strength")
  leaves: str = setting("all", choices=("all", "non_1d", "conv"), doc="which encoder leaves")
  noise: bool = setting(True, doc="the generalisation-enhancement noise (GE)")
  start_epoch: int = setting(0, low=0, doc="first modulated epoch")
  end_epoch: int = setting(0, low=0, doc="epoch where modulation stops (0: never)")
  ratio: str = setting("mean_others", choices=("mean_others", "min_others"),
                       doc="the discrepancy ratio's denominator")


def build(ctx, c: Settings) -> MethodSpec:
  names, epoch = ctx.model.names, ctx.steps_per_epoch
  tx = transforms.ogm_ge(ctx.encoder_labels, alpha=c.alpha, leaves=c.leaves, noise=c.noise,
                         start_step=c.start_epoch * epoch,
                         end_step=c.end_epoch * epoch if c.end_epoch else None, ratio=c.ratio)
  score = for_task(ctx.task, scores.true_class_confidence, scores.multilabel_confidence,
                   scores.regression_confidence)
  confidence = lambda aux, key: dict(confidence=score(aux["unimodal_logits"], aux["labels"], names))
  return MethodSpec(weights=joint_weights(ctx.model), transform=tx, extra_args=confidence,
                    log_state=state_fields(transforms.OgmGeState, "coefficients"))


METHOD = register(Method(
    name="ogm_ge", title="OGM-GE (Peng et al., CVPR 2022)", build=build, settings=Settings,
    docs="ogm-ge", model=dict(unimodal="split_head")))
