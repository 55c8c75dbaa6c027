"""A workdir's contract: the config it was started with is the config it resumes with, and
one trainer at a time writes to it."""
from __future__ import annotations

import contextlib
import datetime
import fcntl
import json
import os
import pathlib
import socket

# Fields that may differ when a run resumes: where things are, how much is printed or kept,
# how the selected model is evaluated, and how the same gradients are computed; none changes
# what is trained.
FREE_TO_CHANGE = ("log.", "data.data_dir", "data.manual_dir", "train.stop_after_steps",
                  "train.allow_changed", "train.checkpoint_every_steps", "train.keep_checkpoints",
                  "train.log_every_steps", "eval.", "method.backward")


def _flat(tree: dict, prefix: str = "") -> dict:
  out = {}
  for key, value in tree.items():
    if isinstance(value, dict):
      out.update(_flat(value, f"{prefix}{key}."))
    else:
      out[f"{prefix}{key}"] = list(value) if isinstance(value, tuple) else value
  return out


def changed_fields(saved: dict, config: dict) -> dict[str, tuple]:
  """``{field: (saved value, new value)}`` for every field that differs; a field the saved
  config lacks (written by an older mmbal) counts as its default."""
  from mmbal.train.config import default_config  # pylint: disable=import-outside-toplevel
  defaults = _flat(json.loads(default_config().to_json()))
  old, new = _flat(saved), _flat(json.loads(json.dumps(config)))
  return {k: (old.get(k, defaults.get(k)), new.get(k)) for k in sorted(set(old) | set(new))
          if old.get(k, defaults.get(k)) != new.get(k)}


def check_resume_config(workdir: pathlib.Path, config) -> None:
  """Refuses to resume ``workdir`` with a config that differs from the one it was trained
  with, except in `FREE_TO_CHANGE` and the fields listed in ``train.allow_changed``."""
  saved_file = workdir / "config.json"
  if not saved_file.is_file() or not (workdir / "checkpoints").is_dir():
    return
  allowed = tuple(config.train.allow_changed) + FREE_TO_CHANGE
  changes = {k: v for k, v in changed_fields(json.loads(saved_file.read_text()),
                                             config.to_dict()).items()
             if not any(k == a or (a.endswith(".") and k.startswith(a)) for a in allowed)}
  if changes:
    listed = "; ".join(f"{k}: {old!r} -> {new!r}" for k, (old, new) in changes.items())
    raise ValueError(
        f"--workdir {workdir} holds a run trained with another config ({listed}). Resuming "
        f"would mix the two. Use a new --workdir, or, to continue anyway, pass "
        f"train.allow_changed={','.join(changes)}")


@contextlib.contextmanager
def exclusive(workdir: pathlib.Path, primary: bool = True):
  """Holds an exclusive lock on ``workdir`` (``workdir/.lock``, released when the process
  ends, even if it is killed); a second trainer on the same workdir is refused, naming the
  holder. Only the ``primary`` process (process 0) locks."""
  if not primary:
    yield
    return
  path = workdir / ".lock"
  try:
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
  except OSError as err:
    raise ValueError(f"--workdir {workdir} is not writable ({err.strerror})") from None
  try:
    try:
      fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
      holder = path.read_text().strip() or "another process"
      raise ValueError(f"--workdir {workdir} is in use by another trainer ({holder}); wait "
                       f"for it to finish, or use another --workdir") from None
    os.ftruncate(fd, 0)
    os.write(fd, (f"pid {os.getpid()} on {socket.gethostname()}, since "
                  f"{datetime.datetime.now().isoformat(timespec='seconds')}").encode())
    yield
  finally:
    os.close(fd)   # releases the lock
