"""Training: config, the jitted step, the loop, checkpoints and the CLI.

Names load on first use, so the CLI's ``--help`` and ``--version`` do not import jax.
"""
import importlib

_ATTRS = {"apply_overrides": "config", "default_config": "config", "load_config": "config",
          "TrainState": "step", "classification_objectives": "step", "make_eval_step": "step",
          "make_train_step": "step"}


def __getattr__(name):
  if name in _ATTRS:
    return getattr(importlib.import_module(f"mmbal.train.{_ATTRS[name]}"), name)
  raise AttributeError(f"module 'mmbal.train' has no attribute {name!r}")


def __dir__():
  return sorted(list(globals()) + list(_ATTRS))
