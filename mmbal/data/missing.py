"""LNLN's random data-missing protocol (Zhang, Wang, Yu; NeurIPS 2024, Sec. 3.2 and 4.2; the
official ``core/dataset.py``), as pure seeded functions on a numpy batch.

Training (`random_missing`), for each modality independently:

* every sample draws a missing rate ``r_i ~ U(0, 1)`` (``rate=(low, high)``: ``U(low, high)``);
* a random ``floor(complete_fraction * B)`` of the samples (half, as in the code) get
  ``r_i = 0``: they stay complete;
* position ``t`` of sample ``i`` is erased iff ``u_{i,t} <= r_i`` with ``u ~ U(0, 1)``, and only
  inside the valid length (padding is never "erased"); for the language modality the first
  and the last valid positions (BERT's [CLS] and [SEP]) are always kept (``keep_ends``);
* erased positions are filled with 0 (features, the paper's choice for audio and vision) or,
  for integer token ids, with BERT's [UNK] id 100 (the paper's choice for language). With
  precomputed BERT features (the MMSA ``text``) an erased word's feature vector is zeroed; the
  neighbouring contextual features still carry some of it, unlike the code's masked input ids.

Evaluation (`fixed_missing`): every sample and modality gets the same ``r``, no complete half;
the paper sweeps ``EVAL_RATES`` = 0.0, 0.1, ..., 0.9 with seeds ``EVAL_SEEDS`` and reports the
average over rates, then over seeds.

Randomness: an explicit ``numpy.random.Generator`` per call, e.g. ``missing_rng(seed, epoch,
step)``, so every step of every epoch draws fresh rates *and* fresh positions and a run is
reproducible. The official code instead calls ``np.random.seed(seed)`` inside ``generate_m``,
so the uniform noise ``u`` is the same every epoch (only ``r`` changes), and re-draws only
when the DataLoader worker that fetches index 0 does so (8 non-persistent workers): most of
every epoch reuses the masks made at construction.

Batch layout (in and out): ``batch[m]`` ``[B, L_m, D_m]`` (or token ids ``[B, L]``),
``batch[f"{m}_mask"]`` bool ``[B, L_m]`` valid positions (absent: all valid; `length_mask`
builds it from lengths). The returned dict has every input key plus

* ``m``: the corrupted input; ``f"{m}_complete"``: the original;
* ``f"{m}_missing"``: bool ``[B, L_m]``, the erased positions (the reconstruction loss);
* ``"missing_rate"``: float32 ``[B, M]``, each sample's ``r`` per modality (``modalities`` order);
* ``"completeness"``: float32 ``[B]``, the completeness target of the dominant modality,
  ``1 - r`` (``completeness="rate"``, paper and code) or one minus the erased fraction of its
  valid positions (``completeness="realized"``).
"""
from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np

MODALITIES = ("text", "audio", "vision")
UNK_ID = 100                                       # BERT's [UNK]
EVAL_RATES = tuple(round(0.1 * i, 1) for i in range(10))
EVAL_SEEDS = (1111, 1112, 1113)


def missing_rng(seed: int, epoch: int = 0, step: int = 0) -> np.random.Generator:
  """A generator keyed by ``(seed, epoch, step)``: fresh masks for every step of every epoch,
  the same masks for the same key. For evaluation use e.g. ``(seed, round(100 * r), batch)``."""
  return np.random.default_rng([int(seed), int(epoch), int(step)])


def length_mask(lengths, max_len: int) -> np.ndarray:
  """bool ``[B, max_len]``, True at positions ``< lengths[i]``."""
  return np.arange(max_len)[None, :] < np.asarray(lengths).reshape(-1, 1)


def _generator(rng):
  return rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)


def _rates(rng, size, rate, complete_fraction):
  if isinstance(rate, (tuple, list)):
    low, high = (float(v) for v in rate)
    if not 0.0 <= low <= high <= 1.0:
      raise ValueError(f"rate range must satisfy 0 <= low <= high <= 1, got {rate}")
    r = rng.uniform(low, high, size)
  else:
    if not 0.0 <= float(rate) <= 1.0:
      raise ValueError(f"rate must be in [0, 1], got {rate}")
    r = np.full(size, float(rate))
  if not 0.0 <= complete_fraction <= 1.0:
    raise ValueError(f"complete_fraction must be in [0, 1], got {complete_fraction}")
  keep = int(complete_fraction * size)
  if keep:
    r[rng.permutation(size)[:keep]] = 0.0
  return r


def random_missing(batch: Mapping, rng, rate=(0.0, 1.0), *, complete_fraction: float = 0.5,
                   modalities: Sequence[str] = MODALITIES, dominant: str = "text",
                   keep_ends: Sequence[str] = ("text",), fill: Mapping | None = None,
                   completeness: str = "rate") -> dict:
  """LNLN's training-time random data missing on one batch (see the module docstring).

  Args:
    batch: numpy batch; not modified.
    rng: a ``numpy.random.Generator`` (or a seed for ``numpy.random.default_rng``).
    rate: ``(low, high)``: per-sample rates ``U(low, high)``; a float: that rate for all.
    complete_fraction: the fraction of samples, per modality, kept complete (rate 0).
    modalities: the sequence modalities to corrupt; ``dominant`` is one of them.
    keep_ends: modalities whose first and last valid positions are never erased.
    fill: ``{m: value}`` for erased positions (default 0, ``UNK_ID`` for integer inputs).
    completeness: ``"rate"`` (1 - r) or ``"realized"`` (1 - erased fraction).
  """
  if dominant not in modalities:
    raise ValueError(f"dominant modality {dominant!r} is not one of {tuple(modalities)}")
  if completeness not in ("rate", "realized"):
    raise ValueError(f"completeness must be 'rate' or 'realized', got {completeness!r}")
  rng = _generator(rng)
  fill = dict(fill or {})
  out = dict(batch)
  rates = []
  for m in modalities:
    x = np.asarray(batch[m])
    size, length = x.shape[:2]
    valid = (np.ones((size, length), bool) if batch.get(f"{m}_mask") is None
             else np.asarray(batch[f"{m}_mask"]).astype(bool))
    if valid.shape != (size, length):
      raise ValueError(f"{m}_mask has shape {valid.shape}, expected {(size, length)}")
    r = _rates(rng, size, rate, complete_fraction)
    erased = (rng.random((size, length)) <= r[:, None]) & valid & (r[:, None] > 0)
    if m in keep_ends:
      rows = np.arange(size)
      any_valid = valid.any(1)
      first = np.argmax(valid, axis=1)
      last = length - 1 - np.argmax(valid[:, ::-1], axis=1)
      erased[rows[any_valid], first[any_valid]] = False
      erased[rows[any_valid], last[any_valid]] = False
    value = fill.get(m, UNK_ID if np.issubdtype(x.dtype, np.integer) else 0)
    where = erased.reshape(erased.shape + (1,) * (x.ndim - 2))
    out[m] = np.where(where, np.asarray(value, x.dtype), x)
    out[f"{m}_complete"] = x
    out[f"{m}_missing"] = erased
    rates.append(r)
    if m == dominant:
      if completeness == "rate":
        out["completeness"] = (1.0 - r).astype(np.float32)
      else:
        frac = erased.sum(1) / np.maximum(valid.sum(1), 1)
        out["completeness"] = (1.0 - frac).astype(np.float32)
  out["missing_rate"] = np.stack(rates, axis=1).astype(np.float32)
  return out


def fixed_missing(batch: Mapping, rng, rate: float, **kwargs) -> dict:
  """The evaluation variant: every sample and modality at missing rate ``rate`` (no complete
  half). The paper sweeps ``rate`` over `EVAL_RATES`."""
  return random_missing(batch, rng, float(rate), complete_fraction=0.0, **kwargs)
