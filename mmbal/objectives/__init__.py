"""Loss-side balancing methods: terms added to the task loss."""
from mmbal.objectives.lnln import MOSI_WEIGHTS, SIMS_WEIGHTS, LNLNLossWeights, lnln_loss
from mmbal.objectives.negative_learning import negative_learning
from mmbal.objectives.prototypes import (PrototypeLoss, PrototypeState, prototype_logits,
                                         prototype_memory, prototype_rebalance)
from mmbal.objectives.vlm_alignment import (counterfactual_hinge, infonce_alignment,
                                            same_rows_targets)
