"""Gradient-modulation transforms (OGM-GE, AGM, CGGM): hand-computed cases and invariants.

Expected numbers are worked out by hand in the comments, never by calling the code under test.
"""
import math

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx
from jax.sharding import AxisType, NamedSharding, PartitionSpec as P

import mmbal
from mmbal.labels import SHARED
from mmbal.models import MultimodalClassifier, split
from mmbal.scores import subset_masks
from mmbal.transforms import combine_objectives
from mmbal.transforms.modulation import (agm, agm_shares, cggm, cggm_coefficients, cggm_cosines,
                                         cggm_direction_loss, linear_head_gradient, ogm_ge)

KEY = jax.random.key(0)


def _tree(names, value=1.0, extra_dims=()):
  """Labels and constant grads: per modality a [2, 3] kernel and a [3] bias; a shared head."""
  grads = {"enc": {n: {"kernel": jnp.full(extra_dims + (2, 3), value),
                       "bias": jnp.full(extra_dims + (3,), value)} for n in names},
           "head": {"kernel": jnp.full(extra_dims + (2, 2), value)}}
  labels = {"enc": {n: {"kernel": n, "bias": n} for n in names}, "head": {"kernel": SHARED}}
  return labels, grads


def _close(actual, expected, rtol=1e-6, atol=0.0):
  np.testing.assert_allclose(np.asarray(actual), expected, rtol=rtol, atol=atol)


def _finite(tree):
  return all(np.isfinite(np.asarray(x)).all() for x in jax.tree.leaves(tree))


# ------------------------------------------------------------------------------- OGM-GE


def test_ogm_ge_two_modalities_by_hand():
  labels, grads = _tree(["audio", "visual"], 2.0)
  # s_a = 3, s_v = 1: rho_a = 3/1 = 3 > 1 -> k_a = 1 - tanh(0.5 * 3) = 1 - (e^3 - 1)/(e^3 + 1)
  # = 1 - 19.0855/21.0855 = 0.0948517; rho_v = 1/3 -> k_v = 1. Shared head untouched.
  k_a = 1 - (math.exp(3) - 1) / (math.exp(3) + 1)
  assert abs(k_a - 0.0948517) < 1e-6
  conf = {"audio": jnp.float32(3.0), "visual": jnp.float32(1.0)}
  for ratio in ("mean_others", "min_others"):          # identical for two modalities
    tx = ogm_ge(labels, alpha=0.5, noise=False, ratio=ratio)
    out, state = tx.update(grads, tx.init(grads), confidence=conf)
    _close(out["enc"]["audio"]["kernel"], 2.0 * k_a)
    _close(out["enc"]["audio"]["bias"], 2.0 * k_a)
    _close(out["enc"]["visual"]["kernel"], 2.0)
    _close(out["head"]["kernel"], 2.0)
    _close(state.coefficients["audio"], k_a)
    _close(state.coefficients["visual"], 1.0)
    _close(state.ratios["audio"], 3.0)
    _close(state.ratios["visual"], 1 / 3)
    assert int(state.count) == 1


def test_ogm_ge_three_modalities_mean_and_min_ratio_by_hand():
  labels, grads = _tree(["a", "b", "c"])
  conf = {"a": 4.0, "b": 2.0, "c": 1.0}
  # mean_others: rho_a = 4 / ((2+1)/2) = 8/3, rho_b = 2 / ((4+1)/2) = 0.8, rho_c = 1/3.
  #   k_a = 1 - tanh(0.25 * 8/3) = 1 - tanh(2/3); k_b = k_c = 1.
  # min_others:  rho_a = 4 / min(2, 1) = 4, rho_b = 2 / min(4, 1) = 2, rho_c = 1 / 2.
  #   k_a = 1 - tanh(1), k_b = 1 - tanh(0.5), k_c = 1.
  expected = {"mean_others": ({"a": 8 / 3, "b": 0.8, "c": 1 / 3},
                              {"a": 1 - math.tanh(2 / 3), "b": 1.0, "c": 1.0}),
              "min_others": ({"a": 4.0, "b": 2.0, "c": 0.5},
                             {"a": 1 - math.tanh(1.0), "b": 1 - math.tanh(0.5), "c": 1.0})}
  for ratio, (rhos, ks) in expected.items():
    tx = ogm_ge(labels, alpha=0.25, noise=False, ratio=ratio)
    out, state = tx.update(grads, tx.init(grads), confidence=conf)
    for n in "abc":
      _close(state.ratios[n], rhos[n])
      _close(out["enc"][n]["kernel"], ks[n])
    _close(out["head"]["kernel"], 1.0)


def test_ogm_ge_leaves_rule():
  grads = {"a": {"conv": jnp.ones((1, 1, 2, 2)), "dense": jnp.ones((2, 2)), "bias": jnp.ones(2)},
           "b": {"conv": jnp.ones((1, 1, 2, 2))}}
  labels = {"a": {"conv": "a", "dense": "a", "bias": "a"}, "b": {"conv": "b"}}
  k = 1 - math.tanh(2.0)   # s_a = 2, s_b = 1: rho_a = 2, alpha = 1
  expected = {"all": (k, k, k), "non_1d": (k, k, 1.0), "conv": (k, 1.0, 1.0),
              (lambda g: g.ndim == 1): (1.0, 1.0, k)}
  for rule, (conv, dense, bias) in expected.items():
    tx = ogm_ge(labels, alpha=1.0, leaves=rule, noise=False)
    out, _ = tx.update(grads, tx.init(grads), confidence={"a": 2.0, "b": 1.0})
    _close(out["a"]["conv"], conv)
    _close(out["a"]["dense"], dense)
    _close(out["a"]["bias"], bias)
    _close(out["b"]["conv"], 1.0)
  with pytest.raises(ValueError, match="leaves"):
    ogm_ge(labels, alpha=1.0, leaves="dense")


def test_ogm_ge_window_on_and_off():
  labels, grads = _tree(["a", "b"])
  tx = ogm_ge(labels, alpha=1.0, start_step=1, end_step=3)      # noise on
  update = jax.jit(tx.update)
  state = tx.init(grads)
  conf = {"a": 2.0, "b": 1.0}
  for step in range(5):
    out, state = update(grads, state, confidence=conf, key=KEY)
    active = step in (1, 2)
    changed = not np.array_equal(np.asarray(out["enc"]["a"]["kernel"]), np.ones((2, 3)))
    assert changed == active, step
    # Outside the window every leaf passes through unchanged (no scaling, no noise).
    if not active:
      jax.tree.map(lambda o, g: np.testing.assert_array_equal(o, g), out, grads)
    _close(state.coefficients["a"], 1 - math.tanh(2.0) if active else 1.0)
    _close(out["head"]["kernel"], 1.0)
  assert int(state.count) == 5


def test_ogm_ge_noise_std_matches_unscaled_leaf_std():
  # Leaf "a": values 0..19999 / 20000 (std = sqrt((n^2 - 1)/12)/n ~ 0.288675); leaf "b":
  # the same times 4 (std ~ 1.154701). s_a = 2 > s_b = 1, alpha = 1: k_a = 1 - tanh(2) ~ 0.036,
  # k_b = 1. The noise std is the std of the UNSCALED leaf, for both modalities.
  n = 20000
  base = jnp.arange(n, dtype=jnp.float32).reshape(100, 200) / n
  grads = {"a": base, "b": 4.0 * base, "s": base}
  labels = {"a": "a", "b": "b", "s": SHARED}
  std_a = math.sqrt((n * n - 1) / 12) / n
  tx = ogm_ge(labels, alpha=1.0)
  state = tx.init(grads)
  out, state1 = tx.update(grads, state, confidence={"a": 2.0, "b": 1.0}, key=KEY)
  noise_a = np.asarray(out["a"]) - (1 - math.tanh(2.0)) * np.asarray(base)
  noise_b = np.asarray(out["b"]) - 4.0 * np.asarray(base)
  # Sample std of n normals has relative standard error 1/sqrt(2n) = 0.5%; allow 3%.
  _close(noise_a.std(), std_a, rtol=0.03)
  _close(noise_b.std(), 4 * std_a, rtol=0.03)
  assert abs(noise_a.mean()) < 4 * std_a / math.sqrt(n)
  assert abs(np.corrcoef(noise_a.ravel(), noise_b.ravel())[0, 1]) < 0.05   # independent leaves
  np.testing.assert_array_equal(out["s"], base)                           # shared: no noise
  # Same key and state: same noise; the step counter changes it.
  again, _ = tx.update(grads, state, confidence={"a": 2.0, "b": 1.0}, key=KEY)
  np.testing.assert_array_equal(again["a"], out["a"])
  later, _ = tx.update(grads, state1, confidence={"a": 2.0, "b": 1.0}, key=KEY)
  assert not np.allclose(later["a"], out["a"])
  with pytest.raises(ValueError, match="key"):
    tx.update(grads, state, confidence={"a": 2.0, "b": 1.0})
  with pytest.raises(ValueError, match="lacks modalities"):
    tx.update(grads, state, confidence={"a": 2.0}, key=KEY)


@pytest.mark.parametrize("num", [2, 3, 6])
def test_ogm_ge_any_number_of_modalities(num):
  names = [f"m{i}" for i in range(num)]
  labels, grads = _tree(names)
  # s = 2 for m0, 1 for the others: rho_m0 = 2 / 1 = 2 -> k = 1 - tanh(0.5 * 2) = 1 - tanh(1);
  # rho_others = 1 / ((2 + (num - 2)) / (num - 1)) = (num - 1) / num < 1 -> k = 1.
  conf = {n: jnp.float32(2.0 if n == "m0" else 1.0) for n in names}
  tx = ogm_ge(labels, alpha=0.5, noise=False)
  out, state = tx.update(grads, tx.init(grads), confidence=conf)
  _close(out["enc"]["m0"]["kernel"], 1 - math.tanh(1.0))
  for n in names[1:]:
    _close(out["enc"][n]["bias"], 1.0)
    _close(state.ratios[n], (num - 1) / num)
  assert set(state.coefficients) == set(names)


def test_ogm_ge_finite_for_zero_and_huge_gradients_and_zero_scores():
  labels, zeros = _tree(["a", "b", "c"], 0.0)
  tx = ogm_ge(labels, alpha=1.0)
  state = tx.init(zeros)
  out, _ = tx.update(zeros, state, confidence={"a": 2.0, "b": 1.0, "c": 1.0}, key=KEY)
  jax.tree.map(lambda o: np.testing.assert_array_equal(o, 0.0), out)   # std 0: no noise
  # The official code's std + 1e-8: zero gradients get noise of std 1e-8 on modality leaves.
  tiny_tx = ogm_ge(labels, alpha=1.0, noise_std_eps=1e-8)
  out, _ = tiny_tx.update(zeros, state, confidence={"a": 2.0, "b": 1.0, "c": 1.0}, key=KEY)
  assert 0 < np.abs(np.asarray(out["enc"]["b"]["kernel"])).max() < 1e-7
  np.testing.assert_array_equal(out["head"]["kernel"], 0.0)
  huge = jax.tree.map(lambda g: 1e30 * jax.random.normal(KEY, g.shape), zeros)
  for conf in ({"a": 2.0, "b": 1.0, "c": 1.0}, {"a": 0.0, "b": 0.0, "c": 0.0},
               {"a": 1.0, "b": 0.0, "c": 0.0}, {"a": 1.0, "b": 1.0, "c": 1.0}):
    out, new_state = tx.update(huge, state, confidence=conf, key=KEY)
    assert _finite(out) and _finite(new_state), conf
  # Equal or all-zero scores: nothing is slowed.
  _, s = ogm_ge(labels, alpha=1.0, noise=False).update(
      zeros, state, confidence={"a": 0.0, "b": 0.0, "c": 0.0})
  assert all(float(v) == 1.0 for v in s.coefficients.values())


def test_ogm_ge_noise_std_by_hand():
  from mmbal.transforms.modulation import _robust_std  # pylint: disable=import-outside-toplevel
  _close(_robust_std(jnp.array([1.0, 2.0, 3.0, 4.0])), math.sqrt(1.25))   # population std
  _close(_robust_std(jnp.array([3e38, -3e38])), 3e38)                       # no overflow
  _close(_robust_std(jnp.array([-1e-30, 1e-30])), 1e-30)
  assert float(_robust_std(jnp.zeros((3, 3)))) == 0.0
  # A common offset 1e4 times the spread: still within 0.1%.
  assert abs(float(_robust_std(1e4 + jnp.arange(4.0))) / math.sqrt(1.25) - 1) < 1e-3


def test_ogm_ge_noise_is_one_draw_per_leaf_shape():
  # Step key fold_in(key, step); the leaves of the n-th distinct shape (in leaf order) take the
  # rows of N(0, 1) [count, *shape] drawn with fold_in(step key, n), times each leaf's std
  # (equal scores: k = 1); the shared leaf gets none.
  grads = {"a": jnp.array([1.0, 3.0]), "b": jnp.array([0.0, 4.0]),
           "c": jnp.array([[2.0, 2.0, 0.0]]), "head": jnp.array([5.0])}
  labels = {"a": "audio", "b": "audio", "c": "video", "head": SHARED}
  tx = ogm_ge(labels, alpha=1.0)
  state = tx.init(grads)
  for step in range(2):
    out, state = tx.update(grads, state, confidence={"audio": 1.0, "video": 1.0}, key=KEY)
    step_key = jax.random.fold_in(KEY, step)
    z2 = np.asarray(jax.random.normal(jax.random.fold_in(step_key, 0), (2, 2)))
    z13 = np.asarray(jax.random.normal(jax.random.fold_in(step_key, 1), (1, 1, 3)))
    np.testing.assert_allclose(out["a"], [1 + z2[0, 0], 3 + z2[0, 1]], rtol=1e-6)
    np.testing.assert_allclose(out["b"], [2 * z2[1, 0], 4 + 2 * z2[1, 1]], rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(out["c"], [[2, 2, 0] + math.sqrt(8 / 9) * z13[0, 0]], rtol=1e-6,
                               atol=1e-6)
    np.testing.assert_array_equal(out["head"], [5.0])


# ------------------------------------------------------------------------------- AGM


def test_agm_two_modalities_by_hand_two_steps():
  # Stacked leaf: g_audio = [1, 0], g_visual = [0, 1], so the output reads [kappa_a, kappa_v].
  grads = {"w": jnp.eye(2)}
  tx = agm(("audio", "visual"), alpha=1.0, clip=0.5)
  state = tx.init(grads)
  # Step 0: s = (1, 1 + ln 2). r_a = exp(2 * (mean - s_a)) = exp(s_v - s_a) = 2, r_v = 1/2.
  # Running means start at 0 -> rbar = (1, 1). kappa_a = exp(min(1 - 2, 0.5)) = e^-1,
  # kappa_v = exp(min(1 - 1/2, 0.5)) = e^0.5 (exactly at the clip).
  out, state = tx.update(grads, state, objectives=("audio", "visual"),
                         agm_scores={"audio": 1.0, "visual": 1.0 + math.log(2)})
  _close(out["w"], [math.exp(-1), math.exp(0.5)], rtol=1e-5)
  _close(state.coefficients["audio"], math.exp(-1), rtol=1e-5)
  # Running means after step 0: (1, 1 + ln 2).
  _close(state.running_scores["visual"], 1 + math.log(2), rtol=1e-6)
  # Step 1: s = (1, 1) -> r = (1, 1); rbar_a = exp(sbar_v - sbar_a) = 2, rbar_v = 1/2.
  # kappa_a = exp(min(2 - 1, 0.5)) = e^0.5 (clipped), kappa_v = exp(1/2 - 1) = e^-0.5.
  out, state = tx.update(grads, state, objectives=("audio", "visual"),
                         agm_scores={"audio": 1.0, "visual": 1.0})
  _close(out["w"], [math.exp(0.5), math.exp(-0.5)], rtol=1e-5)
  # Running means: mean of (1, 1 + ln 2) and (1, 1) = (1, 1 + ln2 / 2).
  _close(state.running_scores["audio"], 1.0)
  _close(state.running_scores["visual"], 1 + math.log(2) / 2, rtol=1e-6)
  assert int(state.count) == 2


def test_agm_three_modalities_by_hand():
  grads = {"w": jnp.eye(3), "v": jnp.ones((3, 2))}
  tx = agm(("a", "b", "c"), alpha=0.5)
  # s = (1, 2, 3), mean 2: r_m = exp(3/2 * (2 - s_m)) = (e^1.5, 1, e^-1.5); rbar = 1.
  # kappa_m = exp(0.5 * min(1 - r_m, 7)) = (exp(0.5 (1 - e^1.5)), 1, exp(0.5 (1 - e^-1.5))).
  kappa = [math.exp(0.5 * (1 - math.exp(1.5))), 1.0, math.exp(0.5 * (1 - math.exp(-1.5)))]
  out, state = tx.update(grads, tx.init(grads), objectives=("a", "b", "c"),
                         agm_scores={"a": 1.0, "b": 2.0, "c": 3.0})
  _close(out["w"], kappa, rtol=1e-5)
  _close(out["v"], [sum(kappa)] * 2, rtol=1e-5)
  _close(state.coefficients["c"], kappa[2], rtol=1e-5)


@pytest.mark.parametrize("num,clip", [(2, 10.0), (3, 7.0)])
def test_agm_default_clip(num, clip):
  names = [f"m{i}" for i in range(num)]
  grads = {"w": jnp.eye(num)}
  tx = agm(names, alpha=0.1)
  state = tx.init(grads)
  # Step 0: m0 scores 20 below the others -> sbar_m0 - mean(sbar) = -20 (num - 1) / num.
  _, state = tx.update(grads, state, objectives=names,
                       agm_scores={n: 0.0 if n == "m0" else 20.0 for n in names})
  # Step 1: equal scores -> r = 1; rbar_m0 = exp(num/(num-1) * 20 (num-1)/num) = e^20, so
  # rbar - r ~ 4.85e8 is clipped: kappa_m0 = exp(0.1 * clip) (e^1 for 2, e^0.7 for 3 modalities).
  out, _ = tx.update(grads, state, objectives=names, agm_scores={n: 1.0 for n in names})
  _close(out["w"][0], math.exp(0.1 * clip), rtol=1e-5)


@pytest.mark.parametrize("num", [2, 3, 6])
def test_agm_alpha_zero_is_the_plain_gradient(num):
  names = [f"m{i}" for i in range(num)]
  g = {"k": jax.random.normal(KEY, (num, 3, 2)), "b": jnp.arange(num, dtype=jnp.float32)}
  tx = agm(names, alpha=0.0)
  scores = {n: jnp.float32(i) for i, n in enumerate(names)}
  out, state = tx.update(g, tx.init(g), objectives=names, agm_scores=scores)
  _close(out["k"], np.asarray(g["k"]).sum(0), rtol=1e-6, atol=1e-6)
  _close(out["b"], num * (num - 1) / 2)
  assert all(float(v) == 1.0 for v in state.coefficients.values())


def test_agm_window_and_momentum():
  grads = {"w": jnp.eye(2)}
  scores = {"a": 1.0, "b": 1.0 + math.log(2)}   # kappa = (e^-1, e^0.5) at step 0 (see above)
  tx = agm(("a", "b"), alpha=1.0, start_step=1)
  out, state = tx.update(grads, tx.init(grads), objectives=("a", "b"), agm_scores=scores)
  _close(out["w"], [1.0, 1.0])                    # outside the window: plain sum
  _close(state.running_scores["b"], 1 + math.log(2), rtol=1e-6)   # means still updated
  # momentum 0.5: weight max(1/(t+1), 0.5) on the new score: step 0 -> 1, step 1 -> 1/2,
  # step 2 -> max(1/3, 1/2) = 1/2. Scores 0, 4, 8: sbar = 0, 2, 5 (a plain mean would be 4).
  tx = agm(("a", "b"), alpha=1.0, momentum=0.5)
  state = tx.init(grads)
  for s in (0.0, 4.0, 8.0):
    _, state = tx.update(grads, state, objectives=("a", "b"), agm_scores={"a": s, "b": 0.0})
  _close(state.running_scores["a"], 5.0)


def test_agm_shares_two_modalities_by_hand():
  # Subsets (bitmask order): {} (ignored, NaN), {a}, {v}, {a, v}; one example, two classes.
  v_a, v_v, v_av = [2.0, 0.0], [0.0, 4.0], [4.0, 2.0]
  subset_logits = jnp.array([[[np.nan, np.nan]], [v_a], [v_v], [v_av]])
  # o_a = (v(av) - v(v) + v(a)) / 2 = ([4, 2] - [0, 4] + [2, 0]) / 2 = [3, -1]
  # o_v = (v(av) - v(a) + v(v)) / 2 = ([4, 2] - [2, 0] + [0, 4]) / 2 = [1, 3]; sum = v(av).
  # Label 0: p0 = softmax([4, 2])_0 = 1 / (1 + e^-2); loss = ln(1 + e^-2) = 0.126928.
  # c = p - onehot = [p0 - 1, 1 - p0]; share_a = 3 (p0 - 1) - (1 - p0) = -4 (1 - p0),
  # share_v = (p0 - 1) + 3 (1 - p0) = 2 (1 - p0).
  # Scores: s_a = -log softmax([3, -1])_0 = ln(1 + e^-4) = 0.018150,
  #         s_v = -log softmax([1, 3])_0 = ln(1 + e^2) = 2.126928.
  p0 = 1 / (1 + math.exp(-2))
  y = jnp.array([0])
  for logits in (subset_logits, subset_logits[1:]):        # with or without the empty set
    res = agm_shares(logits, y, ("a", "v"))
    _close(res.outputs[:, 0], [[3.0, -1.0], [1.0, 3.0]], rtol=1e-6)
    _close(res.loss, math.log(1 + math.exp(-2)), rtol=1e-5)
    _close(res.shares, [-4 * (1 - p0), 2 * (1 - p0)], rtol=1e-5)
    _close(res.scores["a"], math.log(1 + math.exp(-4)), rtol=1e-4)
    _close(res.scores["v"], math.log(1 + math.exp(2)), rtol=1e-5)
  # Floor: o_a = [0, 100] gives p(y=0) = e^-100 < 1e-8, so s_a = -ln(1e-8) = 18.420681.
  res = agm_shares(jnp.array([[[0.0, 0.0]], [[0.0, 100.0]], [[0.0, 0.0]], [[0.0, 100.0]]]),
                   y, ("a", "v"))
  _close(res.scores["a"], 8 * math.log(10), rtol=1e-5)
  with pytest.raises(ValueError, match="subsets"):
    agm_shares(subset_logits[:2], y, ("a", "v"))


def test_agm_shares_gradients_sum_to_the_full_gradient():
  mods = {"a": (5,), "b": (3,), "c": (4,)}
  names = tuple(mods)
  model = MultimodalClassifier(mods, 4, feature_dim=4, hidden_dim=8, fusion="film",
                               rngs=nnx.Rngs(0))
  graphdef, params, rest = split(model)
  rng = np.random.default_rng(0)
  x = {m: jnp.asarray(rng.normal(size=(8,) + s), jnp.float32) for m, s in mods.items()}
  y = jnp.asarray(rng.integers(0, 4, 8))
  masks = jnp.asarray(subset_masks(3)[1:])                  # one vmapped forward, no empty set

  def shares_fn(p):
    net = nnx.merge(graphdef, p, rest)
    subset_logits = jax.vmap(lambda m: net(x, present=jnp.broadcast_to(m, (8, 3))).logits)(masks)
    res = agm_shares(subset_logits, y, names)
    return res.shares, res

  def full_loss(p):
    return optax.softmax_cross_entropy_with_integer_labels(
        nnx.merge(graphdef, p, rest)(x).logits, y).mean()

  @jax.jit
  def run(p):
    res = mmbal.objective_grads(shares_fn, p, has_aux=True)
    tx = agm(names, alpha=0.0)
    summed, _ = tx.update(res.grads, tx.init(p), objectives=names, agm_scores=res.aux.scores)
    full_logits = nnx.merge(graphdef, p, rest)(x).logits
    return res, summed, jax.grad(full_loss)(p), full_logits

  res, summed, ref, full_logits = run(params)
  _close(res.aux.outputs.sum(0), full_logits, rtol=1e-5, atol=1e-5)
  _close(res.aux.loss, full_loss(params), rtol=1e-5)
  jax.tree.map(lambda g, r: _close(g, r, rtol=1e-4, atol=1e-6), summed, ref)
  assert any(np.abs(np.asarray(g[0] - g[1])).max() > 1e-4 for g in jax.tree.leaves(res.grads))


def test_agm_finite_for_zero_and_huge_gradients():
  tx = agm(("a", "b", "c"), alpha=0.5)
  for value in (0.0, 1e30):
    g = {"w": jnp.full((3, 4), value)}
    for scores in ({"a": 0.0, "b": 0.0, "c": 0.0}, {"a": 18.4, "b": 0.0, "c": 1e-3},
                   {"a": 1e6, "b": 0.0, "c": 0.0}):
      out, state = tx.update(g, tx.init(g), objectives=("a", "b", "c"), agm_scores=scores)
      assert _finite(out) and _finite(state), (value, scores)


# ------------------------------------------------------------------------------- CGGM


def test_cggm_two_modalities_by_hand_two_steps():
  labels, grads = _tree(["a", "v"])
  tx = cggm(labels, rho=1.3, guard="none")   # the paper's B (well defined: same-sign d)
  state = tx.init(grads)
  # Step 1 (previous accuracies 0): d = (0.5, 0.25), S = 0.75: B_a = (0.75 - 0.5)/0.75 = 1/3,
  # B_v = (0.75 - 0.25)/0.75 = 2/3. Scales rho * B = 0.43333, 0.86667; the head keeps 1.
  out, state = tx.update(grads, state, unimodal_accuracy={"a": 0.5, "v": 0.25})
  _close(out["enc"]["a"]["kernel"], 1.3 / 3, rtol=1e-6)
  _close(out["enc"]["v"]["bias"], 2.6 / 3, rtol=1e-6)
  _close(out["head"]["kernel"], 1.0)
  _close(state.coefficients["a"], 1 / 3, rtol=1e-6)
  # Step 2: accuracies (0.75, 0.75): d = (0.25, 0.5), S = 0.75: B = (2/3, 1/3).
  out, state = tx.update(grads, state, unimodal_accuracy={"a": 0.75, "v": 0.75})
  _close(out["enc"]["a"]["kernel"], 2.6 / 3, rtol=1e-6)
  _close(out["enc"]["v"]["kernel"], 1.3 / 3, rtol=1e-6)
  _close(state.previous_accuracy["a"], 0.75)
  assert int(state.count) == 2


def test_cggm_guard_prevents_sign_flips_where_the_code_flips():
  labels, grads = _tree(["a", "v"])
  prev = {"a": jnp.float32(0.5), "v": jnp.float32(0.5)}
  cases = [
      # d = (0.3, -0.1), S = 0.2: code B = ((0.2-0.3)/0.2, (0.2+0.1)/0.2) = (-0.5, 1.5);
      # guard clips to [0, 1]: (0, 1).
      ({"a": 0.8, "v": 0.4}, (-0.5, 1.5), (0.0, 1.0)),
      # d = (0.125, -0.125), S = 1e-8: code B = ((1e-8 - 0.125)/1e-8, ...) = (-1.25e7, 1.25e7);
      # guard: |S| < 1e-6 -> fall back to B = 1.
      ({"a": 0.625, "v": 0.375}, (-1.25e7, 1.25e7), (1.0, 1.0)),
      # d = (0.125, -0.375), S = -0.25: code B = ((-0.25-0.125)/-0.25, (-0.25+0.375)/-0.25)
      # = (1.5, -0.5); guard: (1, 0).
      ({"a": 0.625, "v": 0.125}, (1.5, -0.5), (1.0, 0.0)),
  ]
  for acc, code_b, guarded_b in cases:
    for guard, b in (("none", code_b), ("clip", guarded_b)):
      tx = cggm(labels, rho=1.0, guard=guard)
      state = tx.init(grads)._replace(previous_accuracy=prev)
      out, state = tx.update(grads, state, unimodal_accuracy=acc)
      _close(out["enc"]["a"]["kernel"], b[0], rtol=1e-5)
      _close(out["enc"]["v"]["kernel"], b[1], rtol=1e-5)
      flipped = any(float(leaf.min()) < 0 for leaf in jax.tree.leaves(out))
      assert flipped == (guard == "none"), (acc, guard)
      _close([state.coefficients["a"], state.coefficients["v"]], b, rtol=1e-5)
    got = cggm_coefficients(acc, prev, guard="clip")
    _close([got["a"], got["v"]], guarded_b, rtol=1e-5)


def test_cggm_default_guard_by_hand_and_never_stops_an_encoder():
  """B = (M - 1) softmax(-d / 0.2). d = (0.3, -0.1): -d / T = (-1.5, 0.5), so
  B_a = 1 / (1 + e^2) = 0.119203, B_v = e^2 / (1 + e^2) = 0.880797 (the code: (-0.5, 1.5))."""
  labels, grads = _tree(["a", "v"])
  prev = {"a": jnp.float32(0.5), "v": jnp.float32(0.5)}
  tx = cggm(labels, rho=1.0)
  state = tx.init(grads)._replace(previous_accuracy=prev)
  out, state = tx.update(grads, state, unimodal_accuracy={"a": 0.8, "v": 0.4})
  _close(out["enc"]["a"]["kernel"], 0.119203, rtol=1e-5)
  _close(out["enc"]["v"]["kernel"], 0.880797, rtol=1e-5)
  # Any finite accuracies, any number of modalities: every factor positive and <= rho (M - 1).
  rng = np.random.default_rng(0)
  for num in (2, 3, 5):
    names = [f"m{i}" for i in range(num)]
    labels, grads = _tree(names)
    tx = cggm(labels, rho=1.3)
    for _ in range(50):
      state = tx.init(grads)._replace(
          previous_accuracy={n: jnp.float32(rng.uniform()) for n in names})
      out, _ = tx.update(grads, state, unimodal_accuracy={n: rng.uniform() for n in names})
      factors = np.array([float(out["enc"][n]["kernel"].max()) for n in names])
      assert np.all(factors > 0) and np.all(factors <= 1.3 * (num - 1) + 1e-6), factors


def test_cggm_start_step_leaves_the_first_steps_unmodulated():
  labels, grads = _tree(["a", "v"])
  tx = cggm(labels, rho=1.3, start_step=1)
  out, state = tx.update(grads, tx.init(grads), unimodal_accuracy={"a": 0.5, "v": 0.25})
  _close(out["enc"]["a"]["kernel"], 1.0)                     # step 0: factor 1
  _close(state.previous_accuracy["a"], 0.5)                  # still tracked
  out, _ = tx.update(grads, state, unimodal_accuracy={"a": 0.5, "v": 0.5})
  # d = (0, 0.25): B_a = sigmoid(0.25 / 0.2) = 0.777300, scaled by rho = 1.3
  _close(out["enc"]["a"]["kernel"], 1.3 * 0.777300, rtol=1e-5)


@pytest.mark.parametrize("num", [2, 3, 6])
def test_cggm_any_number_of_modalities(num):
  names = [f"m{i}" for i in range(num)]
  labels, grads = _tree(names)
  tx = cggm(labels, rho=1.3)
  # Equal accuracies 0.5 (previous 0): d_m = 0.5, S = 0.5 num, B_m = (num - 1) / num.
  out, state = tx.update(grads, tx.init(grads), unimodal_accuracy={n: 0.5 for n in names})
  for n in names:
    _close(out["enc"][n]["kernel"], 1.3 * (num - 1) / num, rtol=1e-6)
  # Unchanged accuracies: d = 0, S = eps. The code gives B = eps/eps = 1, the guard its fallback 1.
  for guard in ("clip", "none"):
    tx2 = cggm(labels, rho=1.0, guard=guard)
    out, s2 = tx2.update(grads, state, unimodal_accuracy={n: 0.5 for n in names})
    for n in names:
      _close(s2.coefficients[n], 1.0, rtol=1e-6)
  _close(out["head"]["kernel"], 1.0)


def test_cggm_finite_for_zero_and_huge_gradients():
  labels, zeros = _tree(["a", "b", "c"], 0.0)
  huge = jax.tree.map(lambda g: g + 1e30, zeros)
  tx = cggm(labels)
  state = tx.init(zeros)
  for g in (zeros, huge):
    for acc in ({"a": 0.0, "b": 0.0, "c": 0.0}, {"a": 0.625, "b": 0.375, "c": 0.0},
                {"a": 1.0, "b": 0.0, "c": 0.0}):
      out, new_state = tx.update(g, state, unimodal_accuracy=acc)
      assert _finite(out) and _finite(new_state)


def test_cggm_direction_loss_and_cosines_by_hand():
  # L_gm = (|0.5| + |-0.25| - (0.5 * 1 + (-0.25) * 0.5)) / 2 = (0.75 - 0.375) / 2 = 0.1875.
  b = {"a": jnp.float32(0.5), "v": jnp.float32(-0.25)}
  cos = {"a": jnp.float32(1.0), "v": jnp.float32(0.5)}
  _close(cggm_direction_loss(b, cos), 0.1875)
  # d/dcos = -B / M = (-0.25, 0.125); B is held constant (zero gradient).
  g_b, g_cos = jax.grad(cggm_direction_loss, argnums=(0, 1))(b, cos)
  _close([g_cos["a"], g_cos["v"]], [-0.25, 0.125])
  _close([g_b["a"], g_b["v"]], [0.0, 0.0])

  # cos([1, 0], [1, 1]) = 1/sqrt(2); cos([[0, 2]], [[0, -3]]) = -1 (flattened); zeros give 0.
  uni = {"a": jnp.array([1.0, 0.0]), "v": jnp.array([[0.0, 2.0]]), "z": jnp.zeros(2)}
  fused = {"a": jnp.array([1.0, 1.0]), "v": jnp.array([[0.0, -3.0]]), "z": jnp.array([1.0, 2.0])}
  got = cggm_cosines(uni, fused)
  _close([got["a"], got["v"], got["z"]], [1 / math.sqrt(2), -1.0, 0.0], rtol=1e-6)
  # Huge entries: cos([1e30, 0], [1e30, 1e30]) is still 1/sqrt(2).
  _close(cggm_cosines({"a": jnp.array([1e30, 0.0])}, jnp.array([1e30, 1e30]))["a"],
         1 / math.sqrt(2), rtol=1e-6)
  # d cos(u, f)/df = u/(|u||f|) - cos f/|f|^2 at u = [1, 0], f = [1, 1]:
  # [1, 0]/sqrt(2) - (1/sqrt(2)) [1, 1]/2 = [1, -1] / (2 sqrt(2)); the unimodal side gets 0.
  g_u, g_f = jax.grad(lambda u, f: cggm_cosines({"a": u}, f)["a"], argnums=(0, 1))(
      jnp.array([1.0, 0.0]), jnp.array([1.0, 1.0]))
  _close(g_f, [1 / (2 * math.sqrt(2)), -1 / (2 * math.sqrt(2))], rtol=1e-6)
  _close(g_u, [0.0, 0.0])
  g_zero = jax.grad(lambda f: cggm_cosines({"a": jnp.zeros(2)}, f)["a"])(jnp.zeros(2))
  assert _finite(g_zero)
  with pytest.raises(ValueError, match="sizes"):
    cggm_cosines({"a": jnp.ones(2)}, jnp.ones(3))


def test_linear_head_gradient_by_hand():
  # inputs [[1, 2]], logits [0, 0], y = 0: softmax - onehot = [0.5 - 1, 0.5] = [-0.5, 0.5];
  # grad = inputs^T @ err / 1 = [[-0.5, 0.5], [-1, 1]].
  _close(linear_head_gradient(jnp.array([[1.0, 2.0]]), jnp.zeros((1, 2)), jnp.array([0])),
         [[-0.5, 0.5], [-1.0, 1.0]])


def test_cggm_cosine_choices_on_the_classifier():
  """Released code (weights): only the fused head kernel gets gradient. Paper intent
  (output-layer gradients): the encoders get gradient too; the probe heads never do."""
  mods = {"a": (5,), "v": (3,)}
  names = tuple(mods)
  model = MultimodalClassifier(mods, 3, feature_dim=4, hidden_dim=8, fusion="concat",
                               unimodal="probe", rngs=nnx.Rngs(0))
  graphdef, params, rest = split(model)
  rng = np.random.default_rng(1)
  x = {m: jnp.asarray(rng.normal(size=(6,) + s), jnp.float32) for m, s in mods.items()}
  y = jnp.asarray(rng.integers(0, 3, 6))
  b = {"a": 0.25, "v": 0.75}

  def direction(p, weights):
    net = nnx.merge(graphdef, p, rest)
    out = net(x)
    if weights:
      kernel = net.head.kernel[...].reshape(2, 4, 3)          # concat: block m multiplies h_m
      cos = cggm_cosines({n: net.unimodal_heads[n].kernel[...] for n in names},
                         dict(zip(names, kernel)))
    else:
      feats = out.features
      cos = cggm_cosines(
          {n: linear_head_gradient(feats[i], out.unimodal_logits[i], y) for i, n in enumerate(names)},
          {n: linear_head_gradient(feats[i], out.logits, y) for i, n in enumerate(names)})
    return cggm_direction_loss(b, cos)

  grads = jax.jit(lambda p: (jax.grad(direction)(p, True), jax.grad(direction)(p, False)))(params)
  nonzero = lambda tree: any(np.abs(np.asarray(l)).max() > 0 for l in jax.tree.leaves(tree))
  by_weights, by_grads = grads
  assert nonzero(by_weights["head"]["kernel"])
  assert not nonzero({k: v for k, v in by_weights.items() if k != "head"})
  assert not nonzero(by_weights["head"]["bias"])
  assert nonzero(by_grads["encoders"]) and nonzero(by_grads["head"])
  assert not nonzero(by_grads["unimodal_heads"])


# ------------------------------------------------------------------------------- all three


def _mesh():
  return jax.make_mesh((4, 2), ("data", "model"), axis_types=(AxisType.Auto,) * 2)


@pytest.mark.parametrize("method", ["ogm_ge", "agm", "cggm"])
def test_sharding_is_preserved_under_jit(devices, method):
  mesh = _mesh()
  names = ("a", "b")
  stacked = method == "agm"
  lead = (2,) if stacked else ()
  spec = P(None, "model")
  in_spec = P(None, None, "model") if stacked else spec
  grads = {"a": jnp.arange(np.prod(lead + (8, 4)), dtype=jnp.float32).reshape(lead + (8, 4)),
           "b": jnp.ones(lead + (8, 4)), "s": jnp.ones(lead + (8, 4))}
  grads = jax.device_put(grads, NamedSharding(mesh, in_spec))
  labels = {"a": "a", "b": "b", "s": SHARED}
  tx = {"ogm_ge": lambda: ogm_ge(labels, alpha=1.0),
        "agm": lambda: agm(names, alpha=1.0),
        "cggm": lambda: cggm(labels)}[method]()
  extra = dict(confidence={"a": 2.0, "b": 1.0}, key=KEY, agm_scores={"a": 1.0, "b": 2.0},
               unimodal_accuracy={"a": 0.5, "b": 0.25}, objectives=names)
  step = jax.jit(lambda g, s: tx.update(g, s, None, **extra))
  out, state = step(grads, tx.init(grads))
  for leaf in jax.tree.leaves(out):
    assert leaf.shape == (8, 4)
    assert leaf.sharding.is_equivalent_to(NamedSharding(mesh, spec), 2), leaf.sharding
  assert _finite(out) and _finite(state)
  if method == "ogm_ge":   # GE noise and its std are computed where each leaf's shard lives
    text = step.lower(grads, tx.init(grads)).compile().as_text()
    assert "all-gather" not in text and "collective-permute" not in text


def test_chaining_with_combine_objectives_and_adam():
  names = ("a", "b")
  labels, grads = _tree(names, 1.0)
  stacked = jax.tree.map(lambda g: jnp.stack([g, 2 * g, 3 * g]), grads)   # [K=3] objectives
  params = jax.tree.map(jnp.zeros_like, grads)
  extra = dict(confidence={"a": 2.0, "b": 1.0}, key=KEY, unimodal_accuracy={"a": 0.5, "b": 0.25},
               agm_scores={"a": 1.0, "b": 1.0}, objective_values=jnp.zeros(3))
  # combine [1, 1, 1] -> every leaf 6; OGM (alpha 1, s_a = 2): a scaled by 1 - tanh(2);
  # CGGM (rho 1, the paper's B): a scaled by B_a = 1/3, b by 2/3. Adam after either.
  k_a = 1 - math.tanh(2.0)
  # At the second step CGGM sees unchanged accuracies (d = 0): B = 1 for both.
  cases = [(ogm_ge(labels, alpha=1.0, noise=False), [{"a": 6 * k_a, "b": 6.0}] * 2),
           (cggm(labels, rho=1.0, guard="none"), [{"a": 2.0, "b": 4.0}, {"a": 6.0, "b": 6.0}])]
  for modulation, per_step in cases:
    tx = optax.chain(combine_objectives([1.0, 1.0, 1.0]), modulation, optax.adam(0.1))
    ref_tx = optax.adam(0.1)
    state, ref_state = tx.init(params), ref_tx.init(params)
    for expected in per_step:
      out, state = tx.update(stacked, state, params, **extra)
      hand = {"enc": {n: jax.tree.map(lambda g, n=n: jnp.full_like(g, expected[n]), grads["enc"][n])
                      for n in names}, "head": {"kernel": jnp.full((2, 2), 6.0)}}
      ref, ref_state = ref_tx.update(hand, ref_state, params)
      jax.tree.map(lambda o, r: _close(o, r, rtol=1e-6), out, ref)
  # AGM reduces the stacked per-modality shares itself: kappa = 1 with equal scores at step 0.
  shares = jax.tree.map(lambda g: jnp.stack([g, 2 * g]), grads)
  tx = optax.chain(agm(names, alpha=1.0), optax.adam(0.1))
  out, _ = tx.update(shares, tx.init(params), params, objectives=names, **extra)
  ref, _ = optax.adam(0.1).update(jax.tree.map(lambda g: 3 * g, grads), optax.adam(0.1).init(params))
  jax.tree.map(lambda o, r: _close(o, r, rtol=1e-6), out, ref)
