"""CGGM (Guo et al., "Classifier-guided Gradient Modulation for Enhanced Multimodal Learning",
NeurIPS 2024): classifiers on detached features measure each modality's accuracy gain
``delta_m``; encoder m's gradient is scaled by ``rho * B_m`` with
``B_m = (sum_k delta_k - delta_m) / sum_k delta_k`` (magnitude), and with ``lam > 0`` the
loss gets ``lam * sum_m B_m (1 - cos(g_m^uni, g_m^fused))`` (direction). Transform:
`mmbal.transforms.cggm`.
"""
import dataclasses

from mmbal import scores, transforms
from mmbal.methods.base import (Method, MethodSpec, for_task, joint_weights, register, setting,
                                state_fields)
from mmbal.train.step import classification_objectives
from mmbal.transforms._state import find_state


@dataclasses.dataclass(frozen=True)
class Settings:
  rho: float = setting(1.3, low=0.0, high=10.0, doc="gradient scale (official 1.3)")
  lam: float = setting(0.1, low=0.0, high=10.0, doc="weight of the direction term (0: off)")
  guard: str = setting("softmax", choices=("softmax", "clip", "none"),
                       doc="B_m as (M-1) softmax(-d/T) (mmbal), clipped to [0, 1], or raw (code)")
  temperature: float = setting(0.2, low=1e-4, high=10.0, doc="of guard='softmax'")
  start_epoch: int = setting(0, low=0, doc="epochs before the modulation starts")
  direction: str = setting("gradient", choices=("gradient", "weights"),
                           doc="cosine of head gradients (paper) or head weights (code)")


def build(ctx, c: Settings) -> MethodSpec:
  model = ctx.model
  names = model.names
  if c.lam and model.fusion_kind != "concat":
    raise ValueError("method.cggm.lam > 0 (the direction term) needs model.fusion='concat'")
  if c.lam and c.direction == "gradient" and ctx.task != "classification":
    raise ValueError("method.cggm.direction='gradient' uses softmax head gradients; for "
                     f"{ctx.task} data set method.cggm.direction='weights' or method.cggm.lam=0")
  score = for_task(ctx.task, scores.accuracy, scores.multilabel_f1, scores.sign_agreement)
  accuracy = lambda aux: score(aux["unimodal_logits"], aux["labels"], names)
  tx = transforms.cggm(ctx.encoder_labels, rho=c.rho, guard=c.guard, temperature=c.temperature,
                       start_step=c.start_epoch * ctx.steps_per_epoch)

  def losses_builder(apply_fn, names):
    base = classification_objectives(apply_fn, names, ctx.task)

    def losses(params, batch, opt_state=None, step=None):
      values, aux = base(params, batch)
      if not c.lam or opt_state is None:
        return values, aux
      # Direction term with this step's B (no lag) at the current parameters.
      previous = find_state(opt_state, transforms.CggmState, "cggm").previous_accuracy
      b = transforms.cggm_coefficients(accuracy(aux), previous, guard=c.guard,
                                       temperature=c.temperature)
      direction = transforms.cggm_direction_loss(b, _cosines(params, aux, model, c.direction))
      return values.at[0].add(c.lam * direction), aux
    return losses

  return MethodSpec(weights=joint_weights(model), transform=tx, losses=losses_builder,
                    extra_args=lambda aux, key: dict(unimodal_accuracy=accuracy(aux)),
                    log_state=state_fields(transforms.CggmState, "coefficients"))


def _cosines(params, aux, model, direction):
  """Per modality, the cosine of the unimodal and fused heads' (gradients or weights)."""
  names, num, dim = model.names, len(model.names), model.feature_dim
  blocks = params["head"]["kernel"].reshape(num, dim, -1)
  if direction == "weights":   # the released code: cosine of output-layer weights
    uni = {n: params["unimodal_heads"][n]["kernel"] for n in names}
    fused = {n: blocks[i] for i, n in enumerate(names)}
  else:                        # the paper's intent: cosine of their gradients
    feats, y = aux["features"], aux["labels"]
    uni = {n: transforms.linear_head_gradient(feats[i], aux["unimodal_logits"][i], y)
           for i, n in enumerate(names)}
    fused = {n: transforms.linear_head_gradient(feats[i], aux["logits"], y)
             for i, n in enumerate(names)}
  return transforms.cggm_cosines(uni, fused)


METHOD = register(Method(
    name="cggm", title="CGGM (Guo et al., NeurIPS 2024)", build=build, settings=Settings,
    docs="cggm", unimodal=("probe",),
    model_reason="CGGM's classifiers sit on detached features (probes)",
    model=dict(unimodal="probe"),
    # Its gradient-form direction term needs softmax heads.
    generated_settings=lambda kind: {} if kind == "classification" else dict(direction="weights")))
