"""MILES (Guerra-Manzanares & Shamout, IJCNN 2025): per-encoder learning-rate scales from the
epoch's conditional utilisation ``u_m = (A_all - A_without_m) / A_all`` on validation; when
``max u - min u > tau`` the dominant modality's rate is scaled by ``mu``. Transform:
`mmbal.transforms.miles` (after the optimizer), updated at each epoch boundary.
"""
import dataclasses

from mmbal import transforms
from mmbal.methods.base import Method, MethodSpec, joint_weights, register, setting, state_fields


@dataclasses.dataclass(frozen=True)
class Settings:
  tau: float = setting(0.2, low=0.0, high=1.0, doc="utilisation-gap threshold")
  mu: float = setting(0.5, low=0.0, high=10.0, doc="the dominant modality's rate factor (> 0)")
  cumulative: bool = setting(False, doc="scales compound over epochs (mu <= 1)")


def build(ctx, c: Settings) -> MethodSpec:
  tx = transforms.miles(ctx.encoder_labels, tau=c.tau, mu=c.mu, cumulative=c.cumulative)
  update = lambda opt_state, r: transforms.miles_update(opt_state, r["fused_accuracy"],
                                                        r["without_accuracy"])
  return MethodSpec(weights=joint_weights(ctx.model), after_optimizer=tx, epoch_end=update,
                    log_state=state_fields(transforms.MilesState, "scales", "utilisation"))


METHOD = register(Method(
    name="miles", title="MILES (Guerra-Manzanares & Shamout, IJCNN 2025)", build=build,
    settings=Settings, docs="miles", model=dict(unimodal="probe")))
