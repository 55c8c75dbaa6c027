"""How much a multimodal model uses each modality: Shapley values, utilisation, dominance, dependence.

Every measure is a function of a model ``apply(params, inputs) -> logits`` and data
(batches of ``{modality: [B, ...], "label": [B], "mask": [B]}``), computed with
`evaluate_variants` (one jitted, vmapped evaluation of all the input variants it needs);
`diagnose` computes them all from a single pass. Removing a modality is the ``fill``
option (see `mmbal.diagnostics.variants`). All return plain dicts of Python floats keyed by
modality name.

Definitions (A = accuracy over the data, L = mean cross-entropy, S a set of modalities,
v(S) = A or L with only the modalities in S kept and the others removed):

* Shapley value (Shapley, 1953; per modality as in AGM / M-SAM):
  ``phi_m = sum_{S not containing m} |S|! (M-|S|-1)! / M! (v(S + {m}) - v(S))``, exactly
  from all 2^M subsets, or by Monte Carlo over random orderings (Castro et al., 2009).
  ``sum_m phi_m = v(all) - v(empty)``.
* Conditional utilisation rate (Wu et al., ICML 2022; the form MILES uses):
  ``u(m | rest) = (A(all) - A(all without m)) / A(all)``; the utilisation gap is
  ``max_m u - min_m u`` (for two modalities ``|d_util|``).
* Dominant modality (MNL, Gong et al., NeurIPS 2025): with modality m alone, the
  unimodal confidence margin ``xi_m = z^m_y - max_{c != y} z^m_c``; a sample is dominated by
  the modality with both the largest margin and the largest target probability
  (`mmbal.scores.dominant_modality`), else undecided.
* Modality dependence ("MLLMs are Deeply Affected by Modality Bias", Zheng et al., 2025):
  accuracy and prediction-change rate (vs the full input) with m removed, with m
  replaced by another example's (shuffled within the batch), and the accuracy of m alone.
"""
from __future__ import annotations

import math
from typing import Any, Callable, Iterable, Mapping, Sequence

import jax
import numpy as np

from mmbal import scores
from mmbal.diagnostics.variants import (FILL, KEEP, SHUFFLE, _as_key, _check_names,
                                        evaluate_variants, prepare)


def subset_variants(num_modalities: int) -> np.ndarray:
  """``[2^M, M]`` variant codes: row ``s`` keeps the modalities of bitmask ``s``, removes the rest."""
  return np.where(scores.subset_masks(num_modalities) > 0, KEEP, FILL).astype(np.int32)


def shapley_from_values(values) -> np.ndarray:
  """``[M]`` exact Shapley values from ``[2^M]`` subset values (bitmask order): ``W @ v``."""
  values = np.asarray(values, np.float64)
  num = int(round(math.log2(len(values))))
  if 2 ** num != len(values):
    raise ValueError(f"values: expected 2^M subset values, got {len(values)}")
  return scores.shapley_matrix(num) @ values


def random_orderings(key, num_modalities: int, num_permutations: int) -> np.ndarray:
  """``[P, M]`` random orderings of the modalities (seeded)."""
  keys = jax.random.split(_as_key(key), num_permutations)
  return np.asarray(jax.vmap(lambda k: jax.random.permutation(k, num_modalities))(keys))


def permutation_shapley(orderings, value_of: Callable[[np.ndarray], np.ndarray]) -> np.ndarray:
  """Monte-Carlo Shapley values: the mean marginal contribution over the given orderings.

  ``phi_m ~ mean_p [v(P_m + {m}) - v(P_m)]``, ``P_m`` the modalities before m in ordering p.
  ``value_of`` maps an int array of subset bitmasks to their values.
  """
  orderings = np.asarray(orderings)
  prefixes = _prefix_masks(orderings)                       # [P, M + 1]
  values = value_of(prefixes)
  phi = np.zeros(orderings.shape[1])
  np.add.at(phi, orderings, np.diff(values, axis=1))
  return phi / len(orderings)


def shapley(apply, params, batches, names, *, fill="zeros", put_batch=None,
            chunk_size=None) -> dict:
  """Exact Shapley value of each modality for accuracy and for loss (all 2^M subsets).

  Returns ``{"accuracy": {m: phi}, "loss": {m: phi}}``; the accuracy values sum to
  ``A(all) - A(empty)``, the loss values to ``L(all) - L(empty)`` (negative: m lowers the loss).
  """
  plan, stats, names = _run(apply, params, batches, names, fill=fill, exact=True,
                            put_batch=put_batch, chunk_size=chunk_size)
  return {k: v for k, v in _shapley(plan, stats, names).items() if k in ("accuracy", "loss")}


def shapley_monte_carlo(apply, params, batches, names, *, key=None, num_permutations: int = 64,
                        fill="zeros", put_batch=None, chunk_size=None) -> dict:
  """Monte-Carlo Shapley values (random orderings, `permutation_shapley`) for large M.

  Evaluates only the distinct subsets the orderings visit (at most ``P (M - 1) + 2``),
  in one vmapped evaluation. Same return value as `shapley`.
  """
  plan, stats, names = _run(apply, params, batches, names, fill=fill, key=key,
                            num_permutations=num_permutations, put_batch=put_batch,
                            chunk_size=chunk_size)
  return {k: v for k, v in _shapley(plan, stats, names).items() if k in ("accuracy", "loss")}


def utilisation(apply, params, batches, names, *, fill="zeros", put_batch=None,
                chunk_size=None) -> dict:
  """Conditional utilisation rates ``u(m | rest) = (A(all) - A(all without m)) / A(all)``.

  Returns ``{"rate": {m: u}, "gap": max_m u - min_m u}`` (Wu et al., 2022; MILES).
  """
  plan, stats, names = _run(apply, params, batches, names, fill=fill, put_batch=put_batch,
                            chunk_size=chunk_size)
  rate = _utilisation(plan, stats, names)
  return dict(rate=rate, gap=_gap(rate))


def dominance(apply, params, batches, names, *, fill="zeros", put_batch=None,
              chunk_size=None) -> dict:
  """Share of examples each modality dominates, the undecided share, and mean margins.

  Unimodal logits are the model's with only modality m kept. Returns
  ``{"share": {m: s}, "undecided": s, "margin": {m: mean xi_m}}``.
  """
  plan, stats, names = _run(apply, params, batches, names, fill=fill, unimodal=True,
                            put_batch=put_batch, chunk_size=chunk_size)
  return _dominance(stats, names)


def dependence(apply, params, batches, names, *, fill="zeros", key=None, put_batch=None,
               chunk_size=None) -> dict:
  """Accuracy, loss and prediction-change rate per modality: removed, shuffled, alone.

  ``{m: {"removed": {...}, "shuffled": {...}, "alone": {...}}}``, each
  ``{"accuracy", "loss", "change_rate"}``; ``change_rate`` is the share of examples whose
  predicted class differs from the full input's. Shuffles are seeded by ``key``.
  """
  plan, stats, names = _run(apply, params, batches, names, fill=fill, key=key,
                            put_batch=put_batch, chunk_size=chunk_size)
  return _dependence(plan, stats, names)


def diagnose(apply: Callable, params, batches: Iterable[Mapping[str, Any]], names: Sequence[str], *,
             fill="zeros", key=None, exact_max_modalities: int = 8, num_permutations: int = 64,
             put_batch: Callable[[dict], dict] | None = None, chunk_size: int | None = None) -> dict:
  """Every measure above from one pass over ``batches`` (one vmapped evaluation per batch).

  Shapley values are exact for ``M <= exact_max_modalities`` (2^M subsets), else a
  Monte-Carlo estimate from ``num_permutations`` orderings drawn from ``key``.
  Returns a JSON-serialisable dict: ``modalities``, ``count``, ``fill``, ``accuracy`` and
  ``loss`` (full input), ``empty`` (every modality removed), ``shapley``,
  ``utilisation``, ``utilisation_gap``, ``dominance``, ``dependence`` and ``subsets``
  (accuracy and loss of every evaluated subset of kept modalities).
  """
  exact = len(_check_names(names)) <= exact_max_modalities
  plan, stats, names = _run(apply, params, batches, names, fill=fill, key=key, exact=exact,
                            num_permutations=num_permutations, unimodal=True,
                            put_batch=put_batch, chunk_size=chunk_size)
  rate = _utilisation(plan, stats, names)
  empty = plan.row(0)
  return dict(
      modalities=list(names), count=stats.count,
      fill=fill if isinstance(fill, str) else "custom",
      accuracy=stats.full_accuracy, loss=stats.full_loss,
      empty=dict(accuracy=float(stats.accuracy[empty]), loss=float(stats.loss[empty])),
      shapley=_shapley(plan, stats, names),
      utilisation=rate, utilisation_gap=_gap(rate),
      dominance=_dominance(stats, names),
      dependence=_dependence(plan, stats, names),
      subsets=[dict(modalities=[n for i, n in enumerate(names) if s >> i & 1],
                    accuracy=float(stats.accuracy[r]), loss=float(stats.loss[r]))
               for s, r in sorted(plan.rows.items())])


def _run(apply, params, batches, names, *, fill, key=None, exact=False, num_permutations=None,
         unimodal=False, put_batch=None, chunk_size=None):
  """Validates the inputs (before anything compiles), plans the variants, evaluates them."""
  names = _check_names(names)
  if num_permutations is not None and (not isinstance(num_permutations, int)
                                       or isinstance(num_permutations, bool) or num_permutations < 1):
    raise ValueError(f"num_permutations: expected a positive int, got {num_permutations!r}")
  if not exact and len(names) > 62:
    raise ValueError(f"names: at most 62 modalities (subsets are int64 bitmasks), got {len(names)}")
  batches, fills, native = prepare(apply, batches, names, fill)
  shuffle_key, order_key = jax.random.split(_as_key(key))   # independent streams
  plan = _Plan(len(names), exact=exact, key=order_key, num_permutations=num_permutations)
  stats = evaluate_variants(apply, params, batches, names, plan.variants(),
                            fill="present" if native else fills, key=shuffle_key,
                            unimodal=plan.alone_rows() if unimodal else None,
                            put_batch=put_batch, chunk_size=chunk_size)
  return plan, stats, names


class _Plan:
  """The variants a set of measures needs: subsets (by bitmask) of kept modalities, then
  one shuffle row per modality."""

  def __init__(self, num: int, *, exact: bool, key=None, num_permutations: int | None = None):
    self.num, self.exact, self.orderings = num, exact, None
    full = (1 << num) - 1
    if exact:
      masks = list(range(1 << num))
    else:
      masks = {0, full} | {full ^ (1 << m) for m in range(num)} | {1 << m for m in range(num)}
      if num_permutations:
        self.orderings = random_orderings(key, num, num_permutations)
        masks |= set(_prefix_masks(self.orderings).ravel().tolist())
      masks = sorted(masks)
    self.rows = {int(s): i for i, s in enumerate(masks)}

  def variants(self) -> np.ndarray:
    bits = (np.array(list(self.rows), np.int64)[:, None] >> np.arange(self.num)) & 1
    subsets = np.where(bits > 0, KEEP, FILL)
    shuffles = np.where(np.eye(self.num) > 0, SHUFFLE, KEEP)
    return np.concatenate([subsets, shuffles]).astype(np.int32)

  def row(self, mask: int) -> int:
    return self.rows[int(mask)]

  def without_row(self, m: int) -> int:
    return self.row(((1 << self.num) - 1) ^ (1 << m))

  def alone_rows(self) -> tuple[int, ...]:
    return tuple(self.row(1 << m) for m in range(self.num))

  def shuffle_row(self, m: int) -> int:
    return len(self.rows) + m


def _prefix_masks(orderings) -> np.ndarray:
  """``[P, M + 1]`` bitmasks of the first k modalities of each ordering, k = 0..M."""
  orderings = np.asarray(orderings, np.int64)
  steps = np.cumsum(np.left_shift(1, orderings), axis=1)
  return np.concatenate([np.zeros((len(orderings), 1), np.int64), steps], axis=1)


def _shapley(plan: _Plan, stats, names) -> dict:
  if plan.exact:
    order = [plan.row(s) for s in range(1 << plan.num)]
    acc = shapley_from_values(stats.accuracy[order])
    loss = shapley_from_values(stats.loss[order])
    extra = dict(estimator="exact", num_permutations=None)
  else:
    lookup = lambda values: (lambda masks: np.vectorize(lambda s: values[plan.row(s)])(masks))
    acc = permutation_shapley(plan.orderings, lookup(stats.accuracy))
    loss = permutation_shapley(plan.orderings, lookup(stats.loss))
    extra = dict(estimator="monte_carlo", num_permutations=len(plan.orderings))
  return dict(accuracy=_named(names, acc), loss=_named(names, loss), **extra)


def _utilisation(plan: _Plan, stats, names) -> dict:
  full = stats.full_accuracy
  return {n: (full - float(stats.accuracy[plan.without_row(m)])) / max(full, 1e-8)
          for m, n in enumerate(names)}


def _gap(rate: dict) -> float:
  return float(max(rate.values()) - min(rate.values()))


def _dominance(stats, names) -> dict:
  return dict(share=_named(names, stats.dominant_share), undecided=float(stats.undecided_share),
              margin=_named(names, stats.margin))


def _dependence(plan: _Plan, stats, names) -> dict:
  def at(row):
    return dict(accuracy=float(stats.accuracy[row]), loss=float(stats.loss[row]),
                change_rate=float(stats.change_rate[row]))

  return {n: dict(removed=at(plan.without_row(m)), shuffled=at(plan.shuffle_row(m)),
                  alone=at(plan.row(1 << m)))
          for m, n in enumerate(names)}


def _named(names, values) -> dict:
  return {n: float(v) for n, v in zip(names, values)}
