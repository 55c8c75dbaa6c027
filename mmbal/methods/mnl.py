"""MNL (Gong et al., NeurIPS 2025): per sample, the robust dominant modality guides the
others on the non-target classes (negative learning),
``L += weight * sum_{m != d} KL-style guidance of p_m by p_d over the classes k != y``.
Loss term: `mmbal.objectives.negative_learning`.

Classification only: the guidance is a distribution over the classes other than the one
target class, which a regression target or a multi-hot label does not have.
"""
import dataclasses

from mmbal import objectives
from mmbal.methods.base import Method, MethodSpec, joint_weights, register, setting, warmed_up
from mmbal.methods.pcgrad import HEADS_REASON
from mmbal.train.step import classification_objectives


@dataclasses.dataclass(frozen=True)
class Settings:
  weight: float = setting(0.7, low=0.0, high=10.0, doc="weight of the guidance term")
  competitor: str = setting("own", choices=("own", "fused"),
                            doc="whom the dominant modality beats: own (paper) | fused (code)")
  released_code: bool = setting(False, doc="the released code's extra weak CE and 1/C scaling")
  warmup_epochs: int = setting(1, low=0, doc="epochs before the guidance starts")
  normalize: str = setting("per_class", choices=("per_class", "per_sample"),
                           doc="guidance averaged over B x C (the released code's strength) "
                               "or over B (C times stronger)")


def build(ctx, c: Settings) -> MethodSpec:
  def losses_builder(apply_fn, names):
    base = classification_objectives(apply_fn, names)

    def losses(params, batch, opt_state=None, step=None):
      values, aux = base(params, batch)
      rival = aux["logits"] if c.competitor == "fused" else None
      guidance, dominant = objectives.negative_learning(
          aux["unimodal_logits"], aux["labels"], weight=c.weight, competitor_logits=rival,
          released_code=c.released_code, normalize=c.normalize)
      guidance = guidance * warmed_up(step, ctx.steps_per_epoch, c.warmup_epochs)
      shares = {n: (dominant == i).mean() for i, n in enumerate(names)}
      logged = dict(dominant_share=shares, undecided_share=(dominant < 0).mean())
      return values.at[0].add(guidance), dict(aux, log_losses=values, method_metrics=logged)
    return losses

  return MethodSpec(weights=joint_weights(ctx.model), losses=losses_builder)


METHOD = register(Method(
    name="mnl", title="MNL (Gong et al., NeurIPS 2025), on late fusion of unimodal heads",
    build=build, settings=Settings, docs="mnl", tasks=("classification",),
    tasks_reason="its negative learning guides the distribution over the non-target classes of "
                 "one target class, which a regression target or a multi-hot label does not have",
    unimodal=("heads",), model_reason=HEADS_REASON, model=dict(fusion="late", unimodal="heads")))
