"""Orbax checkpoints of the train state and the grain iterator position, verified on restore.

Saves are atomic (orbax writes to a temporary directory and renames it when complete),
so a kill at any moment leaves the last complete checkpoint intact. Disk damage after the
save is caught on restore: every checkpoint stores a checksum per state leaf (computed on
device, no copy to the host), a restored state must match it and be finite, and a damaged
checkpoint is skipped for the newest intact one (the trainer moves it to
``checkpoints-damaged/``; nothing is deleted). A state holding NaN/Inf is never saved.
"""
from __future__ import annotations

import logging
import os
import pathlib

import grain
import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp

log = logging.getLogger("mmbal")


class CheckpointDamaged(ValueError):
  """No intact checkpoint could be restored."""


class NonFiniteState(ValueError):
  """The state to save holds NaN or Inf (the run diverged)."""


def _words(x):
  """The array's bits as uint32 words (any dtype mmbal stores but PRNG keys: their data)."""
  if x.dtype == jnp.bool_:
    return x.astype(jnp.uint32)
  unsigned = {1: jnp.uint8, 2: jnp.uint16, 4: jnp.uint32, 8: jnp.uint32}[x.dtype.itemsize]
  return jax.lax.bitcast_convert_type(x, unsigned).astype(jnp.uint32)


@jax.jit
def fingerprint(state):
  """``(checksums [L] uint32, non-finite counts [L] int32)`` over the state's leaves.

  The checksum is ``sum_i mix(w_i + i * 0x9E3779B9) mod 2^32`` over the leaf's 32-bit words,
  ``mix`` being MurmurHash3's finaliser (a bijection): a change in any one word changes its
  term, so any damage confined to one word is caught; integer sums are exact, so the sum
  does not depend on the sharding or device count it is computed on.

  The leaves of each dtype are hashed as one concatenated vector and summed per leaf by a
  segment sum: a handful of kernels for the whole state, where a reduction per leaf made XLA
  compile one kernel per leaf (a 300-leaf state took 25 s to compile on CPU, for a
  computation of milliseconds). Concatenating before the bitcast keeps the concatenation a
  plain copy."""
  leaves = [jax.random.key_data(x) if jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key)
            else x for x in jax.tree.leaves(state)]
  sums, bad = jnp.zeros(len(leaves), jnp.uint32), jnp.zeros(len(leaves), jnp.int32)
  by_dtype: dict = {}
  for i, x in enumerate(leaves):
    by_dtype.setdefault(x.dtype, []).append(i)
  for dtype, index in by_dtype.items():
    values = jnp.concatenate([leaves[i].reshape(-1) for i in index])
    words = _words(values).reshape(-1)
    per_value = words.size // max(values.size, 1)            # 2 for 8-byte dtypes, else 1
    counts = np.array([leaves[i].size for i in index]) * per_value
    leaf = jnp.concatenate([jnp.full(n, i, jnp.int32) for i, n in zip(index, counts)])
    starts = np.zeros(len(leaves), np.uint32)
    starts[index] = np.cumsum(counts) - counts
    h = words + (jnp.arange(words.size, dtype=jnp.uint32) - jnp.asarray(starts)[leaf]) * \
        jnp.uint32(0x9E3779B9)
    h = (h ^ (h >> 16)) * jnp.uint32(0x85EBCA6B)
    h = (h ^ (h >> 13)) * jnp.uint32(0xC2B2AE35)
    sums = sums + jax.ops.segment_sum(h ^ (h >> 16), leaf, len(leaves), indices_are_sorted=True)
    if jnp.issubdtype(dtype, jnp.inexact):
      value_leaf = leaf if per_value == 1 else jnp.concatenate(
          [jnp.full(leaves[i].size, i, jnp.int32) for i in index])
      bad = bad + jax.ops.segment_sum((~jnp.isfinite(values)).astype(jnp.int32), value_leaf,
                                      len(leaves), indices_are_sorted=True)
  return sums, bad


def _leaf_names(state) -> list[str]:
  return [jax.tree_util.keystr(p) for p, _ in jax.tree_util.tree_flatten_with_path(state)[0]]


class Checkpoints:
  """Keeps the latest ``keep`` checkpoints of ``(TrainState, data iterator)`` in ``directory``.

  ``damaged_dir``: where restore moves checkpoints that fail verification (the trainer sets
  it, so that later saves can reuse their steps); ``None`` (readers such as ``mmbal
  diagnose``) leaves them in place."""

  def __init__(self, directory: str | pathlib.Path, keep: int = 2,
               damaged_dir: str | pathlib.Path | None = None):
    self.directory = pathlib.Path(directory).absolute()
    self.damaged_dir = None if damaged_dir is None else pathlib.Path(damaged_dir)
    self.manager = ocp.CheckpointManager(
        self.directory, options=ocp.CheckpointManagerOptions(max_to_keep=keep, create=True))

  def latest_step(self) -> int | None:
    return self.manager.latest_step()

  def save(self, step: int, state, data_iterator):
    """Saves ``state`` at ``step`` with its checksums; refuses a non-finite state (its step
    is named, and the previous checkpoints stay)."""
    sums, bad = jax.device_get(fingerprint(state))
    if bad.any():
      names = _leaf_names(state)
      where = ", ".join(f"{names[i]} ({bad[i]} values)" for i in np.flatnonzero(bad)[:5])
      raise NonFiniteState(
          f"training diverged: the state at step {step} holds NaN/Inf in {where}; not saved, "
          f"the checkpoint of step {self.latest_step()} is kept. Lower "
          f"optimizer.learning_rate, set optimizer.grad_clip_norm, or check the inputs and "
          f"the method's settings")
    self.manager.save(step, args=ocp.args.Composite(
        state=ocp.args.StandardSave(state),
        data=grain.checkpoint.CheckpointSave(data_iterator),
        integrity=ocp.args.JsonSave(dict(checksums=[int(s) for s in sums],
                                         leaves=_leaf_names(state)))))

  def restore(self, state_like, data_iterator=None, step: int | None = None):
    """Restores onto the shapes and shardings of ``state_like`` (any device count); moves
    ``data_iterator`` to the saved position (its save needs the same process count).
    Without ``data_iterator`` only the state is read (e.g. to evaluate a run).

    Without ``step``, the newest checkpoint that passes verification is restored; the ones
    skipped are named in a warning. Raises `CheckpointDamaged` when none is intact."""
    abstract = jax.tree.map(
        lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=x.sharding), state_like)
    steps = sorted(self.manager.all_steps(), reverse=True) if step is None else [step]
    skipped = []
    for candidate in steps:
      try:
        state = self._restore_verified(candidate, abstract, data_iterator)
      except Exception as err:  # pylint: disable=broad-except  (orbax: one error type per fault)
        skipped.append((candidate, f"{type(err).__name__}: {str(err).splitlines()[0][:200]}"))
        continue
      if skipped:
        log.warning("restored the checkpoint of step %d; skipped damaged ones: %s", candidate,
                    "; ".join(f"step {s} ({why})" for s, why in skipped))
        self._move_damaged([s for s, _ in skipped])
      return state
    listed = "; ".join(f"step {s}: {why}" for s, why in skipped) or "none found"
    raise CheckpointDamaged(
        f"no intact checkpoint in {self.directory} ({listed}). Move that directory away to "
        f"train from scratch (nothing was deleted)")

  def _restore_verified(self, step, abstract, data_iterator):
    items = dict(state=ocp.args.StandardRestore(abstract))
    has_checksums = (self.directory / str(step) / "integrity").exists()  # older mmbal: none
    if has_checksums:
      items["integrity"] = ocp.args.JsonRestore()
    if data_iterator is not None:
      items["data"] = grain.checkpoint.CheckpointRestore(data_iterator)
    restored = self.manager.restore(step, args=ocp.args.Composite(**items))
    sums, bad = jax.device_get(fingerprint(restored.state))
    names = _leaf_names(restored.state)
    if bad.any():
      raise CheckpointDamaged(f"NaN/Inf in {[names[i] for i in np.flatnonzero(bad)[:5]]}")
    if has_checksums:
      saved = restored.integrity["checksums"]
      wrong = [names[i] for i in range(len(names)) if i >= len(saved) or int(sums[i]) != saved[i]]
      if wrong or len(saved) != len(names):
        raise CheckpointDamaged(f"checksum mismatch in {wrong[:5]}")
    return restored.state

  def _move_damaged(self, steps):
    if self.damaged_dir is None:
      return
    if jax.process_index() == 0:
      self.damaged_dir.mkdir(parents=True, exist_ok=True)
      for step in steps:
        source = self.directory / str(step)
        target, copy = self.damaged_dir / str(step), 1
        while target.exists():   # damaged twice at the same step: keep both
          target, copy = self.damaged_dir / f"{step}.{copy}", copy + 1
        if source.exists():
          os.replace(source, target)
          log.warning("moved the damaged checkpoint of step %d to %s", step, target)
    if jax.process_count() > 1:
      from jax.experimental import multihost_utils  # pylint: disable=import-outside-toplevel
      multihost_utils.sync_global_devices("mmbal_damaged_checkpoints_moved")
    self.manager.reload()

  def close(self):
    self.manager.wait_until_finished()
    self.manager.close()
