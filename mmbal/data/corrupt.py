"""Seeded input corruptions for the robustness protocol, applied to evaluation batches.

Every function takes a numpy batch ``{modality: [B, ...], "label": [B], "mask": [B]}`` and
an explicit ``numpy.random.Generator``; the same seed gives the same corruption, so sweeps
are reproducible and methods are compared on identical inputs.

* `drop_modality`: each example loses modality m with probability ``rate`` (MultiBench's
  missing-modality imperfection; BalGrad's missing image / missing text at ``rate=1``).
* `add_noise`: Gaussian noise of ``severity`` times the modality's (training) std.
* `drop_steps`: LNLN-style random missing data in sequences: each time step of each example
  is removed with probability ``rate`` (zeroed).

A removed modality is zeroed; the returned ``present`` mask (``[B, M]``) lets models that
handle absence natively (``apply_fn(params, inputs, present)``) see it as absent instead.
"""
from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np

KINDS = ("missing", "noise", "steps")


def _present(batch, names):
  size = len(batch["label"])
  return batch.get("present", np.ones((size, len(names)), np.float32)).copy()


def drop_modality(batch: Mapping, names: Sequence[str], modality: str, rate: float,
                  rng: np.random.Generator, fill: Mapping | None = None) -> dict:
  """Removes ``modality`` from each example with probability ``rate`` (zeros, or ``fill[m]``)."""
  out, present = dict(batch), _present(batch, names)
  x = np.asarray(batch[modality])
  gone = rng.random(len(x)) < rate
  value = np.zeros(x.shape[1:], x.dtype) if fill is None else np.asarray(fill[modality], x.dtype)
  out[modality] = np.where(gone.reshape((-1,) + (1,) * (x.ndim - 1)), value, x)
  present[:, list(names).index(modality)] *= ~gone
  out["present"] = present
  return out


def add_noise(batch: Mapping, names: Sequence[str], modality: str, severity: float,
              rng: np.random.Generator, scale: Mapping | None = None) -> dict:
  """``x + severity * scale[m] * N(0, 1)`` (``scale``: the modality's training std; default 1)."""
  out = dict(batch)
  x = np.asarray(batch[modality])
  std = 1.0 if scale is None else float(scale[modality])
  out[modality] = (x + severity * std * rng.standard_normal(x.shape)).astype(x.dtype)
  out.setdefault("present", _present(batch, names))
  return out


def drop_steps(batch: Mapping, names: Sequence[str], modality: str, rate: float,
               rng: np.random.Generator) -> dict:
  """Zeroes each time step (axis 1) of ``modality`` with probability ``rate``, per example."""
  x = np.asarray(batch[modality])
  if x.ndim < 3:
    raise ValueError(f"drop_steps: modality {modality!r} must be a sequence [B, T, ...], "
                     f"got shape {x.shape}")
  out = dict(batch)
  keep = rng.random(x.shape[:2]) >= rate
  out[modality] = x * keep.reshape(keep.shape + (1,) * (x.ndim - 2)).astype(x.dtype)
  out.setdefault("present", _present(batch, names))
  return out


def corrupt(batch: Mapping, names: Sequence[str], kind: str, modalities: Sequence[str],
            rate: float, rng: np.random.Generator, *, fill=None, scale=None) -> dict:
  """Applies corruption ``kind`` at ``rate`` to each of ``modalities`` (independently)."""
  if kind not in KINDS:
    raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
  for m in modalities:
    if m not in names:
      raise ValueError(f"modality {m!r} is not one of {tuple(names)}")
    if kind == "missing":
      batch = drop_modality(batch, names, m, rate, rng, fill)
    elif kind == "noise":
      batch = add_noise(batch, names, m, rate, rng, scale)
    else:
      batch = drop_steps(batch, names, m, rate, rng)
  return batch
