"""Explicit description of a model's input modalities."""
from __future__ import annotations

import dataclasses
import re
from typing import Mapping, Sequence

import numpy as np

KINDS = ("vector", "sequence", "image", "video")
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
RESERVED = ("shared", "label", "mask")


@dataclasses.dataclass(frozen=True)
class Modality:
  """One input modality.

  Attributes:
    name: identifier used as the batch key and as the parameter label.
    shape: per-example shape, e.g. ``(64,)`` for a vector, ``(T, F)`` for a
      sequence, ``(H, W, C)`` for an image or spectrogram.
    kind: which encoder family reads it; inferred from ``len(shape)`` if None.
  """
  name: str
  shape: tuple[int, ...]
  kind: str | None = None

  def __post_init__(self):
    if not isinstance(self.name, str) or not _NAME.match(self.name):
      raise ValueError(f"modality name {self.name!r} must be a Python identifier")
    if self.name in RESERVED:
      raise ValueError(f"modality name {self.name!r} is reserved ({RESERVED})")
    shape = tuple(self.shape)
    if not shape or not all(isinstance(d, (int, np.integer)) and d > 0 for d in shape):
      raise ValueError(f"modality {self.name!r}: shape must be positive ints, got {self.shape!r}")
    object.__setattr__(self, "shape", tuple(int(d) for d in shape))
    kind = self.kind or {1: "vector", 2: "sequence", 3: "image", 4: "video"}.get(len(shape))
    if kind not in KINDS:
      raise ValueError(f"modality {self.name!r}: kind must be one of {KINDS}, got {self.kind!r} "
                       f"for shape {shape}")
    object.__setattr__(self, "kind", kind)


def as_modalities(spec: Sequence[Modality] | Mapping[str, Sequence[int]]) -> tuple[Modality, ...]:
  """Normalises ``{name: shape}`` or a sequence of `Modality` to a checked tuple."""
  if isinstance(spec, Mapping):
    mods = tuple(Modality(name, tuple(shape)) for name, shape in spec.items())
  else:
    mods = tuple(m if isinstance(m, Modality) else Modality(*m) for m in spec)
  if not mods:
    raise ValueError("at least one modality is required")
  names = [m.name for m in mods]
  if len(set(names)) != len(names):
    raise ValueError(f"modality names must be unique, got {names}")
  return mods


def check_matches_data(modalities: Sequence[Modality], data_shapes: Mapping[str, Sequence[int]]):
  """Raises ValueError unless every modality exists in the data with the same shape."""
  for m in modalities:
    if m.name not in data_shapes:
      raise ValueError(f"modality {m.name!r} is not in the data; available: {sorted(data_shapes)}")
    if tuple(data_shapes[m.name]) != m.shape:
      raise ValueError(f"modality {m.name!r}: model expects shape {m.shape}, "
                       f"data has {tuple(data_shapes[m.name])}")
