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
  if not isinstance(model, nnx.Module):
    raise TypeError(f"param_labels: expected a Flax NNX module, got {type(model).__name__}; for "
                    f"any other pytree of parameters (Flax linen, equinox, a dict) use "
                    f"mmbal.labels_from_paths(params, {{'audio': r'audio', ...}})")
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


def labels_from_paths(params, patterns: Mapping[str, str], default: str = SHARED):
  """Labels for any pytree of parameters, from regular expressions on the leaves' key paths.

  ``patterns``: ``{label: regex}``; a leaf whose path (``jax.tree_util.keystr``, e.g.
  ``['params']['audio_encoder']['Dense_0']['kernel']`` for Flax linen or
  ``.audio.layers[0].weight`` for equinox) matches ``regex`` (`re.search`) gets ``label``;
  leaves matching none get ``default``. Raises when a pattern matches no leaf or a leaf
  matches two patterns, naming them. Non-array leaves (equinox's static fields filtered
  out beforehand, or None) are labelled too; filter them as the optimizer does.

  >>> params = {"audio_enc": {"w": 1.0}, "video_enc": {"w": 2.0}, "head": {"w": 3.0}}
  >>> labels_from_paths(params, {"audio": "audio_", "video": "video_"})
  {'audio_enc': {'w': 'audio'}, 'head': {'w': 'shared'}, 'video_enc': {'w': 'video'}}
  """
  import re  # pylint: disable=import-outside-toplevel
  compiled = {}
  for label, pattern in patterns.items():
    try:
      compiled[label] = re.compile(pattern)
    except re.error as e:
      raise ValueError(f"labels_from_paths: pattern {pattern!r} of {label!r} is not a valid "
                       f"regular expression ({e})") from None
  leaves, treedef = jax.tree_util.tree_flatten_with_path(params)
  if not leaves:
    raise ValueError("labels_from_paths: `params` has no leaves")
  used, out = set(), []
  for path, _ in leaves:
    where = jax.tree_util.keystr(path)
    hits = [label for label, rx in compiled.items() if rx.search(where)]
    if len(hits) > 1:
      raise ValueError(f"labels_from_paths: the leaf {where} matches the patterns of {hits}; "
                       f"each leaf may belong to one modality")
    used.update(hits)
    out.append(hits[0] if hits else default)
  unused = ", ".join(f"{label} ({patterns[label]!r})" for label in patterns if label not in used)
  if unused:
    some = ", ".join(jax.tree_util.keystr(p) for p, _ in leaves[:4])
    raise ValueError(f"labels_from_paths: no leaf matches {unused}; the paths look like {some}")
  return jax.tree.unflatten(treedef, out)


def label_names(labels) -> tuple[str, ...]:
  """The distinct labels, in first-seen order."""
  return tuple(dict.fromkeys(jax.tree.leaves(labels)))
