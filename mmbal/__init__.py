"""mmbal: balanced multimodal learning in JAX."""
from mmbal import scores, transforms
from mmbal.grads import ObjectiveGrads, objective_grads, plan_backward_passes
from mmbal.labels import SHARED, label_names, param_labels
from mmbal.modalities import Modality, as_modalities

__version__ = "0.1.0"
