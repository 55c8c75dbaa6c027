"""Optax gradient transformations for balanced multimodal learning.

Every factory returns an ``optax.GradientTransformationExtraArgs``: per-modality scores
arrive as keyword extra args (``{modality: value}`` dicts), so each drops into any chain:
``optax.chain(mmbal.transforms.ogm_ge(labels, alpha=0.8), optax.sgd(1e-3))``.
"""
from mmbal.transforms.accumulate import AccumulateState, accumulate_objectives
from mmbal.transforms.blending import (BlendingState, blending_update, find_blending_state,
                                       gradient_blending)
from mmbal.transforms.combine import combine_objectives
from mmbal.transforms.modulation import (AgmShares, AgmState, CggmState, OgmGeState, agm,
                                         agm_shares, cggm, cggm_coefficients, cggm_cosines,
                                         cggm_direction_loss, linear_head_gradient, ogm_ge)
from mmbal.transforms.project import (BalGradState, MMParetoState, PCGradState, balgrad,
                                      balgrad_kl_losses, balgrad_objective_names, min_norm_weights,
                                      mmpareto, pcgrad, pcgrad_coefficients)
from mmbal.transforms.schedule import MilesState, find_miles_state, miles, miles_update
from mmbal.transforms.sharpness import (MsamState, SamState, modality_shapley, msam, sam,
                                        subset_values)
from mmbal.transforms.alternating import OwmState, owm_projection
from mmbal.transforms._state import state_of
