"""Finding a transform's state inside any optimizer state (chains, named chains, nesting)."""
from __future__ import annotations

from typing import Callable

import jax


def replace_states(opt_state, state_type, fn: Callable, caller: str):
  """Applies ``fn`` to every ``state_type`` node of ``opt_state``; errors if there is none."""
  found = []

  def visit(node):
    if isinstance(node, state_type):
      found.append(node)
      return fn(node)
    return node

  out = jax.tree.map(visit, opt_state, is_leaf=lambda node: isinstance(node, state_type))
  if not found:
    raise ValueError(f"{caller}: no {state_type.__name__} in the optimizer state")
  return out


def state_of(opt_state, state_type):
  """A transform's state inside any optimizer state, by its type, e.g.
  ``state_of(opt_state, mmbal.transforms.OgmGeState).coefficients``: unambiguous when
  several transforms share a chain (``optax.tree_utils.tree_get(state, "coefficients")``
  raises there, since OGM-GE and CGGM both have the field)."""
  return find_state(opt_state, state_type, "state_of")


def find_state(opt_state, state_type, caller: str):
  """The single ``state_type`` node inside ``opt_state``."""
  found = [n for n in jax.tree.leaves(opt_state, is_leaf=lambda n: isinstance(n, state_type))
           if isinstance(n, state_type)]
  if len(found) != 1:
    raise ValueError(f"{caller}: expected one {state_type.__name__}, found {len(found)}")
  return found[0]
