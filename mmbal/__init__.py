"""mmbal: balanced multimodal learning in JAX."""
from mmbal import scores, transforms
from mmbal.grads import ObjectiveGrads, objective_grads, plan_backward_passes
from mmbal.labels import SHARED, label_names, labels_from_paths, param_labels
from mmbal.modalities import Modality, as_modalities

__version__ = "0.1.0"

# The other public subpackages load on first use, so `import mmbal` stays fast and
# `mmbal.objectives.negative_learning` works after a plain `import mmbal`.
_LAZY = ("data", "diagnostics", "methods", "models", "objectives", "train")


def __getattr__(name):
  if name in _LAZY:
    import importlib  # pylint: disable=import-outside-toplevel
    return importlib.import_module(f"mmbal.{name}")
  raise AttributeError(f"module 'mmbal' has no attribute {name!r}")
