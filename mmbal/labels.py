"""Parameter labels: which modality encoder (or ``shared``) owns each parameter.

Labels are built once from module structure (which submodules a model says belong to
which modality), never by matching parameter names at update time.
"""
from __future__ import annotations

from typing import Any, Mapping, Sequence

import jax
from flax import nnx

SHARED = "shared"


def _key_name(k) -> Any:
  for attr in ("key", "name", "idx"):
    if hasattr(k, attr):
      return getattr(k, attr)
  return k


def param_labels(model: nnx.Module, owners: Mapping[str, nnx.Module | Sequence[nnx.Module]],
                 params: Any = None, default: str = SHARED):
  """Returns a pytree like ``params`` whose leaves name the owning modality.

  Args:
    model: the NNX model.
    owners: ``{label: submodule or list of submodules}``; every parameter below one of
      those submodules gets that label, all others get ``default``.
    params: the params pytree to label (default: ``nnx.state(model, nnx.Param)`` as a
      pure dict, which is what `mmbal.models.split` returns).
  """
  prefixes = {}
  wanted = {id(m): label for label, mods in owners.items()
            for m in (mods if isinstance(mods, (list, tuple)) else [mods])}
  for path, node in nnx.iter_graph(model):
    if id(node) in wanted:
      prefixes[tuple(path)] = wanted[id(node)]
  missing = set(wanted) - {id(n) for p, n in nnx.iter_graph(model) if tuple(p) in prefixes}
  if missing:
    raise ValueError("param_labels: some owner modules are not part of the model")
  if params is None:
    params = nnx.to_pure_dict(nnx.state(model, nnx.Param))

  def label(path, _):
    keys = tuple(_key_name(k) for k in path)
    for n in range(len(keys), 0, -1):
      if keys[:n] in prefixes:
        return prefixes[keys[:n]]
    return default

  return jax.tree_util.tree_map_with_path(label, params)


def label_names(labels) -> tuple[str, ...]:
  """The distinct labels, in first-seen order."""
  return tuple(dict.fromkeys(jax.tree.leaves(labels)))
