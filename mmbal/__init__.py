"""mmbal: balanced multimodal learning in JAX.

Everything loads on first use (``mmbal.transforms``, ``mmbal.objective_grads``, ...), so
``import mmbal`` is instant and every public subpackage is reachable from it.
"""
import importlib

__version__ = "0.1.0"

_SUBPACKAGES = ("data", "diagnostics", "grads", "labels", "methods", "modalities", "models",
                "objectives", "scores", "tasks", "train", "transforms")
_ATTRS = {"ObjectiveGrads": "grads", "objective_grads": "grads", "plan_backward_passes": "grads",
          "SHARED": "labels", "label_names": "labels", "labels_from_paths": "labels",
          "param_labels": "labels", "Modality": "modalities", "as_modalities": "modalities"}


def __getattr__(name):
  if name in _SUBPACKAGES:
    return importlib.import_module(f"mmbal.{name}")
  if name in _ATTRS:
    return getattr(importlib.import_module(f"mmbal.{_ATTRS[name]}"), name)
  raise AttributeError(f"module 'mmbal' has no attribute {name!r}")


def __dir__():
  return sorted(list(globals()) + list(_SUBPACKAGES) + list(_ATTRS))
