"""Deterministic stratified splitting of example indices."""

import numpy as np


def stratified_split(
    labels: np.ndarray, num_first: int, seed: int
) -> tuple[np.ndarray, np.ndarray]:
  """Splits `range(len(labels))` into two disjoint, stratified index sets.

  Each class gets a share of the `num_first` slots proportional to its size;
  leftover slots go to the classes with the largest fractional share (ties
  broken by class order). Within a class, the examples are picked at random
  with `seed`. The result depends only on `labels`, `num_first` and `seed`.

  Args:
    labels: integer labels, shape `[n]`.
    num_first: size of the first index set, `0 <= num_first <= n`.
    seed: random seed.

  Returns:
    `(first, rest)`: sorted int64 index arrays, together a partition of
    `range(n)`.
  """
  labels = np.asarray(labels)
  n = len(labels)
  if not 0 <= num_first <= n:
    raise ValueError(f"num_first must be in [0, {n}], got {num_first}.")
  _, inverse, counts = np.unique(
      labels, return_inverse=True, return_counts=True
  )
  exact = counts * (num_first / max(n, 1))
  quota = np.floor(exact).astype(np.int64)
  order = np.argsort(-(exact - quota), kind="stable")
  quota[order[: num_first - quota.sum()]] += 1
  # Random order within each class: shuffle, then stable-sort by class.
  perm = np.random.default_rng(seed).permutation(n)
  grouped = perm[np.argsort(inverse[perm], kind="stable")]
  starts = np.repeat(np.cumsum(counts) - counts, counts)
  rank = np.arange(n) - starts
  first = np.zeros(n, dtype=bool)
  first[grouped[rank < np.repeat(quota, counts)]] = True
  return np.flatnonzero(first), np.flatnonzero(~first)
