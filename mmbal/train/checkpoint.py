"""Orbax checkpoints of the train state and the grain iterator position.

Saves are atomic (orbax writes to a temporary directory and renames it when complete),
so a kill at any moment leaves the last complete checkpoint intact.
"""
from __future__ import annotations

import pathlib

import grain
import jax
import orbax.checkpoint as ocp


class Checkpoints:
  """Keeps the latest ``keep`` checkpoints of ``(TrainState, data iterator)`` in ``directory``."""

  def __init__(self, directory: str | pathlib.Path, keep: int = 2):
    self.manager = ocp.CheckpointManager(
        pathlib.Path(directory).absolute(),
        options=ocp.CheckpointManagerOptions(max_to_keep=keep, create=True))

  def latest_step(self) -> int | None:
    return self.manager.latest_step()

  def save(self, step: int, state, data_iterator):
    self.manager.save(step, args=ocp.args.Composite(
        state=ocp.args.StandardSave(state),
        data=grain.checkpoint.CheckpointSave(data_iterator)))

  def restore(self, state_like, data_iterator=None, step: int | None = None):
    """Restores onto the shapes and shardings of ``state_like`` (any device count); moves
    ``data_iterator`` to the saved position (its save needs the same process count).
    Without ``data_iterator`` only the state is read (e.g. to evaluate a run)."""
    step = self.latest_step() if step is None else step
    abstract = jax.tree.map(
        lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=x.sharding), state_like)
    items = dict(state=ocp.args.StandardRestore(abstract))
    if data_iterator is not None:
      items["data"] = grain.checkpoint.CheckpointRestore(data_iterator)
    return self.manager.restore(step, args=ocp.args.Composite(**items)).state

  def close(self):
    self.manager.wait_until_finished()
    self.manager.close()
