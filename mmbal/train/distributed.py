"""Multi-process runs on JAX's own runtime: start-up, and agreeing on preemption.

Every process runs the same program (multi-controller): `initialize` joins the JAX
distributed runtime, the mesh spans all processes' devices, each process feeds its own
shard of the batch, and orbax coordinates the checkpoint writes.
"""
from __future__ import annotations

import logging
import signal
import threading

import jax
from jax.experimental import multihost_utils

log = logging.getLogger("mmbal")


def initialize(coordinator: str | None = None, num_processes: int | None = None,
               process_id: int | None = None, heartbeat_timeout: int | None = None):
  """`jax.distributed.initialize`: auto-detected on TPU pods and SLURM (no arguments), explicit
  for local runs (``coordinator="127.0.0.1:PORT"``, ``num_processes``, ``process_id``).

  ``heartbeat_timeout``: seconds after which a silent process counts as dead and the
  runtime stops the others with an error (JAX's default is 100 s).
  """
  kwargs = {} if heartbeat_timeout is None else dict(heartbeat_timeout_seconds=heartbeat_timeout)
  jax.distributed.initialize(coordinator_address=coordinator, num_processes=num_processes,
                             process_id=process_id, **kwargs)
  log.info("process %d of %d, %d local / %d global devices", jax.process_index(),
           jax.process_count(), jax.local_device_count(), jax.device_count())


class PreemptionWatch:
  """``reached(step)`` is True at the step where every process should checkpoint and stop.

  Multi-process: JAX's preemption service catches SIGTERM on any process and all processes
  agree on the same step (`multihost_utils.reached_preemption_sync_point`). One process:
  a SIGTERM handler sets a flag (restored by `close`).
  """

  def __init__(self):
    self.signalled = False
    self.previous = None
    self.multi_process = jax.process_count() > 1
    if not self.multi_process and threading.current_thread() is threading.main_thread():
      self.previous = signal.signal(signal.SIGTERM, self._on_sigterm)

  def _on_sigterm(self, signum, frame):
    del signum, frame
    self.signalled = True

  def reached(self, step: int) -> bool:
    if self.multi_process:
      return multihost_utils.reached_preemption_sync_point(step)
    return self.signalled

  def close(self):
    if self.previous is not None:
      signal.signal(signal.SIGTERM, self.previous)
      self.previous = None
