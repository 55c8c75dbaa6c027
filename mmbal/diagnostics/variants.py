"""One jitted evaluator of input *variants*: the engine behind every modality measure.

A variant says, per modality, what the model sees: the example's own input (``KEEP``),
the modality removed (``FILL``), or another example's input (``SHUFFLE``, a seeded
within-batch derangement). All variants of a batch are evaluated in one ``jax.vmap``
(optionally in chunks, ``lax.map(..., batch_size=chunk_size)``), and the per-variant
correct counts, cross-entropy sums and changed-prediction counts (against the full
input's prediction) are summed over the real (``mask``) examples of every batch.

Works for any ``apply(params, inputs) -> logits [B, C]`` with ``inputs`` a dict
``{modality: [B, ...]}``. How a removed modality is represented (``fill``):

* ``"zeros"``: the input is replaced by zeros;
* ``"mean"``: by the modality's mean input over ``batches`` (see `mean_inputs`);
* ``{modality: array}``: by a given input (e.g. a learned fill), one per modality;
* ``"present"``: the model handles absence itself: it is called as
  ``apply(params, inputs, present)`` with ``present`` a ``[B, M]`` 0/1 mask in modality
  order (mmbal's ``MultimodalClassifier`` does; removed inputs are passed unchanged).
"""
from __future__ import annotations

import functools
import inspect
import itertools
from typing import Any, Callable, Iterable, Mapping, NamedTuple, Sequence

import jax
import jax.numpy as jnp
import numpy as np
import optax

from mmbal import scores

KEEP, FILL, SHUFFLE = 0, 1, 2
FILLS = ("zeros", "mean", "present")


def peek_batches(batches):
  """``(first, batches, one_pass)``: the first batch (to check before compiling) and batches
  that still yield it (a one-pass iterator is re-chained; a list is returned as is)."""
  one_pass = iter(batches) is batches
  iterator = iter(batches)
  try:
    first = next(iterator)
  except StopIteration:
    raise ValueError("batches: empty") from None
  return first, (itertools.chain([first], iterator) if one_pass else batches), one_pass


class VariantStats(NamedTuple):
  """Dataset-level results of `evaluate_variants` (host numpy arrays and floats)."""
  count: int                   # real (unmasked) examples scored
  accuracy: np.ndarray         # [V] accuracy of each variant
  loss: np.ndarray             # [V] mean cross-entropy of each variant
  change_rate: np.ndarray      # [V] share of examples whose prediction differs from the full input's
  full_accuracy: float         # accuracy with every modality kept
  full_loss: float
  dominant_share: np.ndarray | None   # [M] share of examples each modality dominates (``unimodal``)
  undecided_share: float | None       # share with no dominant modality
  margin: np.ndarray | None           # [M] mean unimodal confidence margin


def shuffle_permutation(key, mask):
  """``[B]`` source rows for a within-batch shuffle that gives each example another one's input.

  The real rows (``mask`` true) are put in a random order (from ``key``) and each takes the
  input of the next one in that order, cyclically: a random single cycle through the real
  rows, so no real example keeps its own input (when there are at least two) and none gets
  a padded row's. Padded rows keep their own. ``x[perm]`` is the shuffled batch.
  """
  mask = jnp.asarray(mask).astype(bool)
  size = mask.shape[0]
  order = jnp.argsort(jnp.where(mask, jax.random.uniform(key, (size,)), 2.0))
  n = mask.sum()
  k = jnp.arange(size)
  following = jnp.where(k < n, (k + 1) % jnp.maximum(n, 1), k)
  return jnp.zeros(size, jnp.int32).at[order].set(order[following].astype(jnp.int32))


def mean_inputs(batches: Iterable[Mapping[str, Any]], names: Sequence[str]) -> dict:
  """``{modality: mean input}`` over the real examples of ``batches`` (the ``"mean"`` fill).

  Padded rows (``mask`` 0) are left out of the mean. Computed on the host in float64.
  """
  names = _check_names(names)
  sums, count = {}, 0.0
  for batch in batches:
    _check_batch(batch, names, where="batch")
    mask = _mask_of(batch)
    count += float(mask.sum())
    for n in names:
      x = np.asarray(batch[n], np.float64)
      total = np.tensordot(mask.astype(np.float64), x, axes=(0, 0))
      sums[n] = sums.get(n, 0.0) + total
  if not count:
    raise ValueError("batches: no real (unmasked) examples to average")
  return {n: (sums[n] / count).astype(np.float32) for n in names}


def evaluate_variants(apply: Callable, params, batches: Iterable[Mapping[str, Any]],
                      names: Sequence[str], variants, *, fill="zeros", key=None,
                      unimodal: Sequence[int] | None = None,
                      put_batch: Callable[[dict], dict] | None = None,
                      chunk_size: int | None = None) -> VariantStats:
  """Evaluates every variant on every batch; one compiled function per batch shape.

  Args:
    apply: ``apply(params, inputs) -> logits [B, C]`` (or ``apply(params, inputs, present)``
      with ``fill="present"``).
    batches: an iterable of dicts ``{modality: [B, ...], "label": [B], "mask": [B]}``
      (``mask`` optional: 0 marks padding rows, which are ignored everywhere).
    names: the modalities, in the order of the variant codes' columns (and ``present``).
    variants: ``[V, M]`` codes, `KEEP` / `FILL` / `SHUFFLE` per modality.
    fill: ``"zeros" | "mean" | "present"`` or ``{modality: array of the input shape}``.
      ``"mean"`` iterates ``batches`` twice (pass a list, or `mean_inputs` as the fill).
    key: PRNG key (or int seed) of the shuffles; batch i uses ``fold_in(key, i)``. Default 0.
    unimodal: optional M variant indices whose logits are the unimodal logits
      (modality m alone); adds the dominant-modality shares and mean margins.
    put_batch: places a host batch on devices (e.g. sharded over a mesh); default: jnp arrays.
    chunk_size: evaluate the variants ``chunk_size`` at a time (memory); default all at once.
  """
  names = _check_names(names)
  variants = np.asarray(variants)
  if variants.ndim != 2 or variants.shape[1] != len(names) or not np.isin(variants, (KEEP, FILL, SHUFFLE)).all():
    raise ValueError(f"variants: expected [V, {len(names)}] codes in (KEEP=0, FILL=1, SHUFFLE=2), "
                     f"got an array of shape {variants.shape}")
  if unimodal is not None:
    unimodal = tuple(int(i) for i in unimodal)
    if len(unimodal) != len(names) or not all(0 <= i < len(variants) for i in unimodal):
      raise ValueError(f"unimodal: expected {len(names)} variant indices in [0, {len(variants)}), "
                       f"got {unimodal}")
  if chunk_size is not None and (not isinstance(chunk_size, int) or chunk_size < 1):
    raise ValueError(f"chunk_size: expected a positive int or None, got {chunk_size!r}")
  batches, fills, native = prepare(apply, batches, names, fill)
  key = _as_key(key)
  put = put_batch or (lambda b: {k: jnp.asarray(v) for k, v in b.items()})
  codes = jnp.asarray(variants, jnp.int32)
  totals = None
  for i, batch in enumerate(batches):
    if i:
      _check_batch(batch, names, where=f"batch {i}")
    host = {n: batch[n] for n in names}
    host["label"] = np.asarray(batch["label"])
    host["mask"] = _mask_of(batch)
    dev = put(host)
    sums = _batch_sums(params, {n: dev[n] for n in names}, dev["label"], dev["mask"], fills, codes,
                       jax.random.fold_in(key, i), apply=apply, names=names, native=native,
                       unimodal=unimodal, chunk_size=chunk_size)
    totals = sums if totals is None else jax.tree.map(jnp.add, totals, sums)
  if totals is None:
    raise ValueError("batches: empty")
  totals = jax.tree.map(lambda v: np.asarray(v, np.float64), jax.device_get(totals))
  count = float(totals["count"])
  if not count:
    raise ValueError("batches: every example is masked out (mask all 0)")
  per = totals["variants"] / count
  dom = (totals["dominant"] / count, float(totals["undecided"]) / count,
         totals["margin"] / count) if unimodal is not None else (None, None, None)
  return VariantStats(int(count), per[:, 0], per[:, 1], per[:, 2],
                      float(totals["full"][0]) / count, float(totals["full"][1]) / count, *dom)


def prepare(apply, batches, names, fill):
  """Validates the first batch and ``fill`` (before anything compiles).

  Returns ``(batches, fills, native)``: the batches (a one-pass iterator is re-chained
  after its first batch), the fill inputs ``{modality: array}`` (None when native), and
  whether the model handles absence itself (``fill="present"``).
  """
  names = _check_names(names)
  first, batches, one_pass = peek_batches(batches)
  _check_batch(first, names, where="batch 0")
  shapes = {n: tuple(np.shape(first[n])[1:]) for n in names}
  if isinstance(fill, str):
    if fill not in FILLS:
      raise ValueError(f"fill: expected one of {FILLS} or a dict {{modality: array}}, got {fill!r}")
    if fill == "present":
      _check_takes_present(apply)
      return batches, None, True
    if fill == "zeros":
      return batches, {n: np.zeros(shapes[n], np.float32) for n in names}, False
    if one_pass:
      raise ValueError("fill='mean' iterates the batches twice: pass a list (or another "
                       "re-iterable), or fill=mean_inputs(batches, names)")
    return batches, mean_inputs(batches, names), False
  if not isinstance(fill, Mapping):
    raise ValueError(f"fill: expected one of {FILLS} or a dict {{modality: array}}, "
                     f"got {type(fill).__name__}")
  missing = [n for n in names if n not in fill]
  extra = [k for k in fill if k not in names]
  if missing or extra:
    raise ValueError(f"fill: the dict must hold exactly the modalities {list(names)}; "
                     f"missing {missing}, unknown {extra}")
  fills = {}
  for n in names:
    value = np.asarray(fill[n])
    if value.shape != shapes[n]:
      raise ValueError(f"fill[{n!r}]: expected the input shape of modality {n!r}, {shapes[n]}, "
                       f"got {value.shape}")
    fills[n] = value
  return batches, fills, False


@functools.partial(jax.jit, static_argnames=("apply", "names", "native", "unimodal", "chunk_size"))
def _batch_sums(params, inputs, labels, mask, fills, codes, key, *, apply, names, native,
                unimodal, chunk_size):
  """Per-variant ``[V, 3]`` sums (correct, cross-entropy, changed) over the batch's real rows."""
  real = mask.astype(bool)
  labels = labels.astype(jnp.int32)
  size, num = labels.shape[0], len(names)
  perm = shuffle_permutation(key, real)
  shuffled = {n: inputs[n][perm] for n in names}

  def call(x, present):
    logits = apply(params, x, present) if native else apply(params, x)
    return jnp.asarray(logits).astype(jnp.float32)

  def sums(logits, reference):
    pred = logits.argmax(-1)
    ce = optax.softmax_cross_entropy_with_integer_labels(logits, labels)
    masked = lambda v: jnp.where(real, v, 0).astype(jnp.float32).sum()
    return jnp.stack([masked(pred == labels), masked(ce), masked(pred != reference)])

  full = call(inputs, jnp.ones((size, num), jnp.float32))
  full_pred = full.argmax(-1)

  def one(code):
    x = {}
    for i, n in enumerate(names):   # over modalities (static), not variants or samples
      own = inputs[n]
      removed = own if native else jnp.broadcast_to(fills[n], own.shape).astype(own.dtype)
      x[n] = jnp.where(code[i] == SHUFFLE, shuffled[n], jnp.where(code[i] == FILL, removed, own))
    present = jnp.broadcast_to((code != FILL).astype(jnp.float32), (size, num))
    logits = call(x, present)
    return sums(logits, full_pred), (logits if unimodal is not None else None)

  if chunk_size is None:
    per_variant, logits = jax.vmap(one)(codes)
  else:
    per_variant, logits = jax.lax.map(one, codes, batch_size=chunk_size)
  out = dict(count=real.sum().astype(jnp.float32), full=sums(full, full_pred)[:2],
             variants=per_variant)
  if unimodal is not None:
    alone = logits[jnp.asarray(unimodal)]                          # [M, B, C]
    dominant = scores.dominant_modality(alone, labels)             # [B], -1 = undecided
    out["dominant"] = (jax.nn.one_hot(dominant, num) * real[:, None]).sum(0)
    out["undecided"] = ((dominant < 0) & real).astype(jnp.float32).sum()
    out["margin"] = jnp.where(real, scores.confidence_margins(alone, labels), 0.0).sum(-1)
  return out


def _as_key(key):
  if key is None:
    return jax.random.key(0)
  if isinstance(key, (int, np.integer)):
    return jax.random.key(int(key))
  return key


def _check_names(names) -> tuple[str, ...]:
  if isinstance(names, str) or not isinstance(names, Sequence) or not names:
    raise ValueError(f"names: expected a non-empty sequence of modality names, got {names!r}")
  names = tuple(names)
  if not all(isinstance(n, str) for n in names) or len(set(names)) != len(names):
    raise ValueError(f"names: expected distinct modality names (strings), got {list(names)}")
  bad = [n for n in names if n in ("label", "mask")]
  if bad:
    raise ValueError(f"names: {bad} are reserved batch keys, not modalities")
  return names


def _check_batch(batch, names, *, where: str):
  if not isinstance(batch, Mapping):
    raise ValueError(f"{where}: expected a dict {{modality: array, 'label': array}}, "
                     f"got {type(batch).__name__}")
  for n in names:
    if n not in batch:
      raise ValueError(f"{where}: no modality {n!r} in the batch (keys: {sorted(batch)})")
  if "label" not in batch:
    raise ValueError(f"{where}: no 'label' in the batch (keys: {sorted(batch)})")
  size = np.shape(batch["label"])
  if len(size) != 1:
    raise ValueError(f"{where}: 'label' must be [B] ints, got shape {size}")
  for key in names + (("mask",) if "mask" in batch else ()):
    shape = np.shape(batch[key])
    if not shape or shape[0] != size[0] or (key == "mask" and len(shape) != 1):
      raise ValueError(f"{where}: {key!r} has shape {shape}; expected [{size[0]}, ...] "
                       f"(the batch size of 'label')")


def _mask_of(batch) -> np.ndarray:
  if "mask" not in batch:
    return np.ones(np.shape(batch["label"])[0], bool)
  return np.asarray(batch["mask"]).astype(bool)


def _check_takes_present(apply):
  """``fill="present"`` calls ``apply(params, inputs, present)``: check it can take 3 arguments."""
  try:
    signature = inspect.signature(apply)
  except (TypeError, ValueError):
    return
  try:
    signature.bind(None, None, None)
  except TypeError:
    raise ValueError("fill='present' calls apply(params, inputs, present) with a [B, M] 0/1 mask, "
                     f"but apply{signature} takes no third argument; use fill='zeros', 'mean' "
                     "or a dict") from None
