"""Trace-time checks shared by the transforms: one error style, naming the transform, the
argument and what was expected, raised where the mistake is made (not a step later).
"""
from __future__ import annotations

import difflib
from typing import Any, Iterable, Mapping

import jax
import numpy as np
import optax


class TransformInputError(ValueError):
  """A transform got the wrong kind of input; the message names the fix."""


def _path(path) -> str:
  return jax.tree_util.keystr(path) or "<root>"


def check_labels(transform: str, labels, updates):
  """``labels`` has the tree structure of the gradients (one label per parameter leaf);
  returns them masked like the gradients: inside ``optax.multi_transform`` / ``partition``
  the leaves of other partitions arrive as ``optax.MaskedNode`` and their labels are dropped."""
  is_masked = lambda x: isinstance(x, optax.MaskedNode)
  try:
    labels = jax.tree.map(lambda u, label: u if is_masked(u) else label, updates, labels,
                          is_leaf=is_masked)
    jax.tree.structure(updates).flatten_up_to(labels)
    return labels
  except (ValueError, TypeError) as e:
    raise TransformInputError(
        f"{transform}: `labels` must have the structure of the gradients, one label string per "
        f"parameter leaf (e.g. from mmbal.param_labels or mmbal.labels_from_paths); they differ: "
        f"{str(e).splitlines()[0]}") from None


def check_per_parameter(transform: str, updates, params):
  """Per-parameter gradients (each leaf shaped like its parameter), not stacked ``[K, ...]``
  per-objective gradients; checked when the chain passes ``params``."""
  if params is None:
    return
  grads = jax.tree_util.tree_flatten_with_path(updates)[0]
  try:
    param_leaves = jax.tree.structure(updates).flatten_up_to(params)
  except (ValueError, TypeError):
    return   # a structure mismatch is optax's own error; shapes are what we check here
  for (path, g), p in zip(grads, param_leaves):
    g_shape, p_shape = np.shape(g), np.shape(p)
    if g_shape == p_shape:
      continue
    stacked = len(g_shape) == len(p_shape) + 1 and g_shape[1:] == p_shape
    raise TransformInputError(
        f"{transform}: expected per-parameter gradients shaped like `params`, but the leaf "
        f"{_path(path)} has shape {g_shape} for a parameter of shape {p_shape}" +
        (f": these are stacked per-objective gradients [K={g_shape[0]}, ...] (as "
         f"mmbal.objective_grads returns). Sum or combine them first (e.g. "
         f"mmbal.transforms.combine_objectives or pcgrad/mmpareto/balgrad, which take stacked "
         f"gradients) before {transform}." if stacked else "."))


def check_extra_args(transform: str, others: Mapping[str, Any], own: Mapping[str, Any]):
  """Extra args (``others``: the ones this transform does not take) that look like a
  misspelling of one of its own (``own``: name -> the value it got, None when missing).

  In an optax chain every transform receives every extra arg, so names meant for other
  transforms are normal and pass; a name within a typo of one of this transform's own
  arguments, while that argument is missing, is an error instead of being silently ignored.
  """
  missing = [name for name, value in own.items() if value is None]
  for name in others:
    close = difflib.get_close_matches(name, missing, n=1, cutoff=0.8)
    if close:
      raise TransformInputError(f"{transform}: got the extra argument {name!r}; did you mean "
                                f"{close[0]!r}? ({transform} takes {sorted(own)})")


def injected(value) -> bool:
  """Whether a factory argument is an array: set by ``optax.inject_hyperparams`` (a tracer
  under jit), so it is range-checked where it is set, not in the factory."""
  return isinstance(value, jax.Array)


def check_static(transform: str, **values):
  """Structural arguments (shapes, modes, optional settings) must be Python values: under
  ``optax.inject_hyperparams`` a numeric argument becomes an array (a tracer under jit) and
  would fail later with a `TracerBoolConversionError`."""
  for name, value in values.items():
    if injected(value):
      raise TransformInputError(
          f"{transform}: {name!r} sets the transform's structure and must be a Python value, got "
          f"an array; with optax.inject_hyperparams pass static_args=({name!r},)")


def check_axis_names(transform: str, objectives, expected: tuple[str, ...], *,
                     free_first: bool = False, aliases: Mapping[str, str] | None = None):
  """The stacked axis is read by name, never by position alone.

  ``objectives`` (the extra arg of ``update``) names the rows of the stacked gradients in
  order, as given to `mmbal.objective_grads`; it must equal ``expected`` (the order the
  transform reads them in). ``free_first``: the first row (the fused / task objective) may
  have any name. ``aliases``: accepted alternative names (AGM's ``share_<m>``).
  """
  if objectives is None:
    raise TransformInputError(
        f"{transform}: name the rows of the stacked gradients: pass the extra argument "
        f"objectives={expected!r} to update (the names, in order, of the objectives you stacked, "
        f"e.g. those given to mmbal.objective_grads); {transform} reads row k as objective "
        f"{expected!r}[k], so a different order would silently swap modalities")
  if isinstance(objectives, str) or not all(isinstance(o, str) for o in objectives):
    raise TransformInputError(f"{transform}: `objectives` must be a tuple of names (Python "
                              f"strings), got {objectives!r}")
  got = tuple((aliases or {}).get(o, o) for o in objectives)
  same = len(got) == len(expected) and (got[1:] == expected[1:] if free_first else got == expected)
  if not same:
    raise TransformInputError(
        f"{transform}: the stacked gradients hold the objectives {tuple(objectives)} but "
        f"{transform} reads its rows as {expected}" +
        (" (the first, fused row may have any name)" if free_first else "") +
        "; give the transform's modalities in the order of the stacked axis")
