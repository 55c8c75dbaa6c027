"""Modality diagnostics on hand-written models with hand-computed numbers."""
import itertools
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mmbal import diagnostics as dg

NAMES = ("a", "b", "c")


def additive(params, x):
  """Binary model: class 1 iff ``w_a x_a + w_b x_b + w_c x_c > 0.5`` (logits ``[0, s - 0.5]``)."""
  s = sum(params[i] * x[n][:, 0] for i, n in enumerate(NAMES)) - 0.5
  return jnp.stack([jnp.zeros_like(s), s], axis=-1)


def additive_present(params, x, present):
  """The same model handling absence itself: absent modalities drop out of the sum."""
  s = sum(params[i] * present[:, i] * x[n][:, 0] for i, n in enumerate(NAMES)) - 0.5
  return jnp.stack([jnp.zeros_like(s), s], axis=-1)


# Four real examples and one padding row (mask 0) that would change every number if counted.
XA, XB, XC, Y = [1, 1, 0, 0, 5], [0, 1, 1, 0, 5], [0, 0, 1, 0, 5], [1, 1, 1, 0, 0]
MASK = [1, 1, 1, 1, 0]


def batch(rows=slice(None)):
  col = lambda v: np.asarray(v, np.float32)[rows, None]
  return dict(a=col(XA), b=col(XB), c=col(XC), label=np.asarray(Y)[rows],
              mask=np.asarray(MASK, bool)[rows])


W = jnp.ones(3)
# Accuracy with only subset S kept (zeros for the rest), by hand over the 4 real rows:
# {}: 1/4 (all predict 0)  {a}: 3/4  {b}: 3/4  {c}: 2/4  {a,b}: 1  {a,c}: 1  {b,c}: 3/4  {a,b,c}: 1.
# Shapley (mean marginal contribution over the 6 orderings):
# a: (1/2 + 1/2 + 1/4 + 1/4 + 1/2 + 1/4) / 6 = 0.375
# b: (1/4 + 0 + 1/2 + 1/2 + 0 + 1/4) / 6 = 0.25
# c: (0 + 1/4 + 0 + 0 + 1/4 + 1/4) / 6 = 0.125       sum = 0.75 = A(all) - A({})
HAND_SHAPLEY = {"a": 0.375, "b": 0.25, "c": 0.125}


def _softplus(v):
  return math.log1p(math.exp(v))


def _hand_loss(subset):
  """Mean cross-entropy of `additive` with only ``subset`` kept, in plain Python."""
  total = 0.0
  for i in range(4):
    s = sum({"a": XA, "b": XB, "c": XC}[n][i] for n in subset) - 0.5
    total += _softplus(-s) if Y[i] == 1 else _softplus(s)
  return total / 4


def _hand_permutation_shapley(value):
  phi = dict.fromkeys(NAMES, 0.0)
  orders = list(itertools.permutations(NAMES))
  for order in orders:
    for k, m in enumerate(order):
      phi[m] += (value(order[:k + 1]) - value(order[:k])) / len(orders)
  return phi


def test_diagnose_hand_computed_three_modalities():
  # Two batches (3 rows, then 1 real + 1 padding row): sums accumulate over batches.
  out = dg.diagnose(additive, W, [batch(slice(0, 3)), batch(slice(3, 5))], NAMES)
  assert out["count"] == 4 and out["fill"] == "zeros"
  assert out["accuracy"] == 1.0 and out["empty"]["accuracy"] == 0.25
  assert out["shapley"]["estimator"] == "exact"
  for m in NAMES:
    assert out["shapley"]["accuracy"][m] == pytest.approx(HAND_SHAPLEY[m], abs=1e-9)
  # Loss Shapley against an independent enumeration of orderings with hand-written CE.
  hand_loss = _hand_permutation_shapley(_hand_loss)
  for m in NAMES:
    assert out["shapley"]["loss"][m] == pytest.approx(hand_loss[m], abs=1e-5)
  assert sum(out["shapley"]["loss"].values()) == pytest.approx(_hand_loss(NAMES) - _hand_loss(()), abs=1e-5)
  # u(m | rest) = (A(all) - A(all without m)) / A(all): without a -> {b,c}: 3/4; without b or c: 1.
  assert out["utilisation"] == pytest.approx({"a": 0.25, "b": 0.0, "c": 0.0})
  assert out["utilisation_gap"] == pytest.approx(0.25)
  # Alone, margins z_y - z_other are +-0.5: rows (a, b, c) = (.5,-.5,-.5), (.5,.5,-.5),
  # (-.5,.5,.5), (.5,.5,.5) -> dominant a, a (tie: first), b, a.
  assert out["dominance"]["share"] == pytest.approx({"a": 0.75, "b": 0.25, "c": 0.0})
  assert out["dominance"]["undecided"] == 0.0
  assert out["dominance"]["margin"] == pytest.approx({"a": 0.25, "b": 0.25, "c": 0.0})
  dep = out["dependence"]
  assert dep["a"]["removed"]["accuracy"] == 0.75 and dep["a"]["removed"]["change_rate"] == 0.25
  assert dep["b"]["removed"] == pytest.approx(dict(accuracy=1.0, change_rate=0.0, loss=_hand_loss("ac")))
  assert [dep[m]["alone"]["accuracy"] for m in NAMES] == [0.75, 0.75, 0.5]
  assert [dep[m]["alone"]["change_rate"] for m in NAMES] == [0.25, 0.25, 0.5]
  assert {tuple(s["modalities"]): s["accuracy"] for s in out["subsets"]} == {
      (): 0.25, ("a",): 0.75, ("b",): 0.75, ("c",): 0.5, ("a", "b"): 1.0, ("a", "c"): 1.0,
      ("b", "c"): 0.75, ("a", "b", "c"): 1.0}


def one_hot_model(params, x):
  """Three classes decided by modality ``a`` (logits = a); ``b`` gets weight 0 (pure noise)."""
  return x["a"] + params["wb"] * x["b"].sum(-1, keepdims=True)


def test_noise_modality_gets_nothing_and_shuffles_change_exactly():
  rng = np.random.default_rng(0)
  labels = np.array([0, 1, 2, 0])
  a = np.eye(3, dtype=np.float32)[[0, 1, 2, 1]]          # the padded last row: wrong on purpose
  data = dict(a=a, b=rng.normal(size=(4, 5)).astype(np.float32), label=labels,
              mask=np.array([1, 1, 1, 0], bool))
  out = dg.diagnose(one_hot_model, {"wb": jnp.zeros(())}, [data], ("a", "b"), key=3)
  # Without a the logits are all 0 -> class 0: right on 1 of 3 real rows, changed on 2.
  assert out["shapley"]["accuracy"] == pytest.approx({"a": 2 / 3, "b": 0.0})
  ce_full, ce_empty = math.log(math.e + 2) - 1, math.log(3)
  assert out["shapley"]["loss"] == pytest.approx({"a": ce_full - ce_empty, "b": 0.0}, abs=1e-6)
  assert out["utilisation"] == pytest.approx({"a": 2 / 3, "b": 0.0})
  assert out["utilisation_gap"] == pytest.approx(2 / 3)
  dep = out["dependence"]
  assert dep["a"]["removed"] == pytest.approx(dict(accuracy=1 / 3, change_rate=2 / 3, loss=ce_empty))
  # Shuffling gives every real example another one's a; the 3 labels differ, so every
  # prediction changes, whatever the key.
  assert dep["a"]["shuffled"]["accuracy"] == 0.0 and dep["a"]["shuffled"]["change_rate"] == 1.0
  assert dep["b"]["removed"]["change_rate"] == 0.0 and dep["b"]["shuffled"]["change_rate"] == 0.0
  assert dep["a"]["alone"]["accuracy"] == 1.0 and dep["b"]["alone"]["accuracy"] == pytest.approx(1 / 3)
  assert out["dominance"]["share"] == {"a": 1.0, "b": 0.0}
  assert out["dominance"]["margin"] == pytest.approx({"a": 1.0, "b": 0.0})


def test_shuffle_permutation_is_a_seeded_derangement_of_the_real_rows():
  mask = jnp.array([1, 1, 0, 1, 1, 1, 0], bool)
  real = np.flatnonzero(np.asarray(mask))
  for seed in range(5):
    perm = np.asarray(dg.shuffle_permutation(jax.random.key(seed), mask))
    assert sorted(perm[real]) == list(real) and all(perm[real] != real)   # real rows only, none kept
    assert list(perm[[2, 6]]) == [2, 6]                                    # padding stays
    np.testing.assert_array_equal(perm, dg.shuffle_permutation(jax.random.key(seed), mask))
  # Two real rows can only be swapped: a fixed key gives the hand-computed rates.
  data = dict(a=np.array([[1, 0, 0], [0, 1, 0], [0, 0, 1]], np.float32),
              b=np.zeros((3, 1), np.float32), label=np.array([0, 1, 2]),
              mask=np.array([1, 0, 1], bool))
  dep = dg.dependence(one_hot_model, {"wb": 0.0}, [data], ("a", "b"), key=jax.random.key(7))
  assert dep["a"]["shuffled"] == pytest.approx(dict(accuracy=0.0, change_rate=1.0,
                                                    loss=math.log(math.e + 2)))


def test_mean_and_dict_fills():
  data = batch()
  means = dg.mean_inputs([data], NAMES)        # padding row (5, 5, 5) left out
  assert {n: float(v[0]) for n, v in means.items()} == {"a": 0.5, "b": 0.5, "c": 0.25}
  by_mean = dg.diagnose(additive, W, [data], NAMES, fill="mean")
  assert by_mean["fill"] == "mean"
  assert by_mean == dict(dg.diagnose(additive, W, [data], NAMES, fill=means), fill="mean")
  # Mean fill: without a, s = 0.5 + x_b + x_c - 0.5 > 0 for rows 2, 3 only -> 3/4 right.
  assert by_mean["dependence"]["a"]["removed"]["accuracy"] == 0.75
  assert by_mean["empty"]["accuracy"] == 0.75   # s = 1.25 - 0.5 > 0: class 1 everywhere
  # A "learned" fill that makes a removed modality count as present with value 1.
  ones = {n: np.ones((1,), np.float32) for n in NAMES}
  assert dg.utilisation(additive, W, [data], NAMES, fill=ones)["rate"]["a"] == pytest.approx(0.25)


def test_present_mode_calls_the_model_with_the_mask():
  seen = []

  def spy(params, x, present):
    seen.append(present.shape)
    return additive_present(params, x, present)

  data = batch()
  native = dg.diagnose(spy, W, [data], NAMES, fill="present", key=1)
  assert native["fill"] == "present" and seen   # traced with a [B, M] mask
  assert seen[0] == (5, 3)
  zeros = dg.diagnose(additive, W, [data], NAMES, fill="zeros", key=1)
  assert dict(native, fill="zeros") == zeros


def test_monte_carlo_converges_to_exact_and_diagnose_switches_to_it():
  data = [batch()]
  mc = dg.shapley_monte_carlo(additive, W, data, NAMES, key=0, num_permutations=3000)
  exact = dg.shapley(additive, W, data, NAMES)
  assert exact["accuracy"] == pytest.approx(HAND_SHAPLEY)
  for m in NAMES:
    assert mc["accuracy"][m] == pytest.approx(exact["accuracy"][m], abs=0.02)
    assert mc["loss"][m] == pytest.approx(exact["loss"][m], abs=0.02)
  # With every ordering listed once, the permutation formula is exact.
  orders = np.array(list(itertools.permutations(range(3))))
  values = {s: 0.0 for s in range(8)}
  for s in values:
    kept = [n for i, n in enumerate(NAMES) if s >> i & 1]
    values[s] = _hand_loss(kept)
  phi = dg.permutation_shapley(orders, np.vectorize(values.get))
  np.testing.assert_allclose(phi, dg.shapley_from_values([values[s] for s in range(8)]), atol=1e-12)
  # diagnose above exact_max_modalities: Monte Carlo Shapley, the other measures unchanged.
  big = dg.diagnose(additive, W, data, NAMES, exact_max_modalities=2, num_permutations=400, key=0)
  small = dg.diagnose(additive, W, data, NAMES, key=0)
  assert big["shapley"]["estimator"] == "monte_carlo" and big["shapley"]["num_permutations"] == 400
  for field in ("utilisation", "dominance", "dependence", "accuracy", "empty"):
    assert big[field] == small[field]
  assert sum(big["shapley"]["accuracy"].values()) == pytest.approx(0.75)   # efficiency holds per ordering


def test_chunked_variants_agree_with_one_vmap():
  data = [batch()]
  assert dg.diagnose(additive, W, data, NAMES, chunk_size=3) == dg.diagnose(additive, W, data, NAMES)


def _never_called(params, x, present=None):
  raise AssertionError("the model must not run on invalid input")


@pytest.mark.parametrize("batches, kwargs, message", [
    ([{"a": np.ones((2, 1)), "b": np.ones((2, 1)), "label": np.zeros(2, int)}], {},
     "batch 0: no modality 'c' in the batch"),
    ([batch()], dict(fill={"a": np.zeros(1), "b": np.zeros(1), "c": np.zeros(2)}),
     r"fill\['c'\]: expected the input shape of modality 'c', \(1,\), got \(2,\)"),
    ([batch()], dict(fill="blank"), "fill: expected one of .*got 'blank'"),
    ([batch()], dict(fill={"a": np.zeros(1)}), r"fill: the dict must hold exactly .*missing \['b', 'c'\]"),
    ([{"a": np.ones((2, 1)), "b": np.ones((2, 1)), "c": np.ones((2, 1))}], {}, "no 'label'"),
    ([dict(batch(), mask=np.ones(3))], {}, "'mask' has shape \\(3,\\)"),
    (iter([batch()]), dict(fill="mean"), "fill='mean' iterates the batches twice"),
    ([batch()], dict(num_permutations=0, exact_max_modalities=1), "num_permutations"),
    ([], {}, "batches: empty"),
])
def test_bad_input_is_a_clear_error_before_the_model_runs(batches, kwargs, message):
  with pytest.raises(ValueError, match=message):
    dg.diagnose(_never_called, W, batches, NAMES, **kwargs)


def test_present_fill_needs_an_apply_taking_the_mask():
  with pytest.raises(ValueError, match="fill='present' calls apply"):
    dg.diagnose(additive, W, [batch()], NAMES, fill="present")
  with pytest.raises(ValueError, match="names: expected distinct"):
    dg.diagnose(additive, W, [batch()], ("a", "a"))
