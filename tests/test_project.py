"""Projection transforms (PCGrad, MMPareto, BalGrad): hand-computed cases and invariants.

Expected numbers are worked out by hand in the comments, never by calling the code under test.
"""
import math

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from jax.sharding import AxisType, NamedSharding, PartitionSpec as P

from mmbal.labels import SHARED
from mmbal.transforms.combine import combine_objectives
from mmbal.transforms.project import (balgrad, balgrad_kl_losses, balgrad_objective_names,
                                      mmpareto, pcgrad)
from mmbal.transforms.project import min_norm_weights as _min_norm_weights

KEY = jax.random.key(0)


def _stacked(*vectors):
  """One leaf [K, 2] split over two leaves {"a": [K, 1], "b": [K, 1]} (dot products sum over leaves)."""
  v = jnp.asarray(vectors, jnp.float32)
  return {"a": v[:, :1], "b": v[:, 1:]}


def _vec(tree):
  return np.concatenate([np.asarray(tree["a"]).ravel(), np.asarray(tree["b"]).ravel()])


def _close(actual, expected, rtol=1e-5, atol=1e-6):
  np.testing.assert_allclose(np.asarray(actual), expected, rtol=rtol, atol=atol)


def _finite(tree):
  return all(np.isfinite(np.asarray(x)).all() for x in jax.tree.leaves(tree))


_JITTED = {}


FA = ("fused", "audio")          # names of the stacked rows, for the transforms that read them
FMN = ("fused", "m", "n")
AV = balgrad_objective_names(["a", "v"])
TKU = ("task", "kl_m", "uni_m")


def _run(tx, grads, objectives=None, **extra):
  """One jitted update from a fresh state (one compilation per transform and shape)."""
  state = tx.init(jax.tree.map(lambda g: g[0], grads))
  key = (id(tx), objectives)   # the row names are static, like the transform
  if key not in _JITTED:
    _JITTED[key] = (tx, jax.jit(lambda g, s, e: tx.update(g, s, objectives=objectives, **e)))
  return _JITTED[key][1](grads, state, extra)


# ------------------------------------------------------------------------------- PCGrad


def test_pcgrad_two_tasks_by_hand():
  # g1 = (1, 0), g2 = (-1, 1): <g1, g2> = -1 < 0.
  # g1' = g1 - (-1 / ||g2||^2 = 2) g2 = (1, 0) + 0.5 (-1, 1) = (0.5, 0.5)
  # g2' = g2 - (-1 / ||g1||^2 = 1) g1 = (-1, 1) + (1, 0) = (0, 1)
  # sum = (0.5, 1.5), mean = (0.25, 0.75); cos = -1 / sqrt(2); both ordered pairs conflict.
  grads = _stacked((1, 0), (-1, 1))
  out, state = _run(pcgrad(num_objectives=2, order="fixed"), grads)
  _close(_vec(out), [0.5, 1.5])
  out, _ = _run(pcgrad(num_objectives=2, order="fixed", reduction="mean"), grads)
  _close(_vec(out), [0.25, 0.75])
  _close(state.conflict_fraction, 1.0)
  _close(state.cosines, [[1, -1 / math.sqrt(2)], [-1 / math.sqrt(2), 1]])
  # K = 2: the order cannot matter, so random order equals fixed order.
  out_r, _ = _run(pcgrad(num_objectives=2, order="random"), grads, key=KEY)
  _close(_vec(out_r), [0.5, 1.5])


def test_pcgrad_three_tasks_by_hand_and_order():
  # g1 = (1, 0), g2 = (1, 1), g3 = (-1, -0.5). Dots: g1.g2 = 1, g1.g3 = -1, g2.g3 = -1.5;
  # ||g1||^2 = 1, ||g2||^2 = 2, ||g3||^2 = 1.25.
  # g1' (only g3 conflicts) = (1, 0) + (1 / 1.25)(-1, -0.5) = (0.2, -0.4)
  # g2' (only g3 conflicts) = (1, 1) + (1.5 / 1.25)(-1, -0.5) = (-0.2, 0.4)
  # g3', order g1 then g2: (-1, -0.5) + 1 (1, 0) = (0, -0.5); <(0, -0.5), g2> = -0.5
  #      -> (0, -0.5) + (0.5 / 2)(1, 1) = (0.25, -0.25)
  # g3', order g2 then g1: (-1, -0.5) + (1.5 / 2)(1, 1) = (-0.25, 0.25); <., g1> = -0.25
  #      -> (-0.25, 0.25) + 0.25 (1, 0) = (0, 0.25)
  # g1', g3 before g2: (0.2, -0.4) then <., g2> = -0.2 -> + (0.2 / 2)(1, 1) = (0.3, -0.3)
  # g2', g3 before g1: (-0.2, 0.4) then <., g1> = -0.2 -> + 0.2 (1, 0) = (0, 0.4)
  # fixed order (0, 1, 2): sum = (0.2 - 0.2 + 0.25, -0.4 + 0.4 - 0.25) = (0.25, -0.25).
  # Conflicting ordered pairs: (1,3), (3,1), (2,3), (3,2): 4 of 6.
  grads = _stacked((1, 0), (1, 1), (-1, -0.5))
  out, state = _run(pcgrad(num_objectives=3, order="fixed"), grads)
  _close(_vec(out), [0.25, -0.25])
  _close(state.conflict_fraction, 4 / 6)
  out, _ = _run(pcgrad(num_objectives=3, order="fixed", reduction="mean"), grads)
  _close(_vec(out), [0.25 / 3, -0.25 / 3])

  # random order: each task's result is one of its two hand-computed options
  options = [[(0.2, -0.4), (0.3, -0.3)], [(-0.2, 0.4), (0.0, 0.4)], [(0.25, -0.25), (0.0, 0.25)]]
  sums = {(round(a[0] + b[0] + c[0], 4), round(a[1] + b[1] + c[1], 4))
          for a in options[0] for b in options[1] for c in options[2]}
  seen = set()
  tx = pcgrad(num_objectives=3, order="random")
  for i in range(16):
    out, _ = _run(tx, grads, key=jax.random.key(i))
    v = tuple(round(float(x), 4) + 0.0 for x in _vec(out))
    assert v in sums, f"unexpected random-order PCGrad result {v}"
    seen.add(v)
  assert len(seen) >= 2                 # the order matters here, and keys change it
  assert (0.25, -0.25) in sums
  # same key -> same result
  a, _ = _run(tx, grads, key=KEY)
  b, _ = _run(tx, grads, key=KEY)
  _close(_vec(a), _vec(b), rtol=0, atol=0)


def test_pcgrad_no_conflict_is_plain_sum_and_mean():
  # pairwise dots (1,0).(1,1) = 1, (1,0).(0,2) = 0, (1,1).(0,2) = 2: no conflict.
  grads = _stacked((1, 0), (1, 1), (0, 2))
  combined, _ = combine_objectives(jnp.ones(3)).update(grads, optax.EmptyState())
  for order in ("fixed", "random"):
    out, state = _run(pcgrad(num_objectives=3, order=order), grads, key=KEY)
    for name in ("a", "b"):
      np.testing.assert_array_equal(np.asarray(out[name]), np.asarray(combined[name]))
    _close(_vec(out), [2.0, 3.0])
    _close(state.conflict_fraction, 0.0)
  out, _ = _run(pcgrad(num_objectives=3, order="fixed", reduction="mean"), grads)
  _close(_vec(out), [2 / 3, 1.0])


def test_pcgrad_shared_only_projects_shared_leaves():
  # Shared leaf "s" [K=2, 2]: g1 = (1, 0), g2 = (-1, 1) -> projected sum (0.5, 1.5) (first test).
  # Modality leaves: "x" g = (5, -7) for both tasks: the dot over *all* leaves would be
  # -1 + 25 + 49 > 0 (no conflict); over shared leaves only it is -1 (conflict).
  # Modality leaves are summed without projection: 5 + 5 = 10.
  grads = {"s": jnp.asarray([[1.0, 0.0], [-1.0, 1.0]]), "x": jnp.asarray([[5.0, 7.0], [5.0, 7.0]])}
  labels = {"s": SHARED, "x": "audio"}
  out, state = _run(pcgrad(num_objectives=2, order="fixed", labels=labels, project="shared"), grads)
  _close(out["s"], [0.5, 1.5])
  _close(out["x"], [10.0, 14.0])
  _close(state.conflict_fraction, 1.0)
  out, _ = _run(pcgrad(num_objectives=2, order="fixed", labels=labels, project="shared", reduction="mean"), grads)
  _close(out["s"], [0.25, 0.75])
  _close(out["x"], [5.0, 7.0])
  # global projection sees no conflict here: plain sum everywhere
  out, _ = _run(pcgrad(num_objectives=2, order="fixed"), grads)
  _close(out["s"], [0.0, 1.0])


def test_pcgrad_requires_key_for_random_order():
  with pytest.raises(ValueError, match="key"):
    _run(pcgrad(num_objectives=2), _stacked((1, 0), (0, 1)))


# ------------------------------------------------------------------------------- min-norm


def test_min_norm_weights_by_hand():
  min_norm_weights = jax.jit(_min_norm_weights)
  # antiparallel (1,0), (-1,0): 0.5/0.5 reaches the origin.
  _close(min_norm_weights(jnp.asarray([[1.0, -1.0], [-1.0, 1.0]])), [0.5, 0.5])
  # orthogonal (1,0), (0,2): a = (G22 - G12) / (G11 + G22 - 2 G12) = 4 / 5 -> (0.8, 0.2),
  # the point (0.8, 0.4) with squared norm 0.8.
  _close(min_norm_weights(jnp.asarray([[1.0, 0.0], [0.0, 4.0]])), [0.8, 0.2])
  # identical gradients: denominator 0 -> 0.5 / 0.5
  _close(min_norm_weights(jnp.ones((2, 2))), [0.5, 0.5])
  # 3 vectors (1,0), (0,1), (-1,-1): their mean is the origin -> 1/3 each.
  v = jnp.asarray([[1.0, 0.0], [0.0, 1.0], [-1.0, -1.0]])
  _close(min_norm_weights(v @ v.T), [1 / 3, 1 / 3, 1 / 3])
  # 3 vectors (1,0), (0,1), (1,1): the hull's closest point is (0.5, 0.5) on the edge g1-g2.
  v = jnp.asarray([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
  _close(min_norm_weights(v @ v.T), [0.5, 0.5, 0.0])
  # 3 vectors where one vertex is closest: (1,0), (3,0), (2,2) -> (1, 0) itself.
  v = jnp.asarray([[1.0, 0.0], [3.0, 0.0], [2.0, 2.0]])
  _close(min_norm_weights(v @ v.T), [1.0, 0.0, 0.0])
  # identical 3 vectors: any simplex point, weights sum to 1 and are finite
  w = min_norm_weights(jnp.ones((3, 3)))
  assert np.isfinite(np.asarray(w)).all() and abs(float(jnp.sum(w)) - 1) < 1e-6


# ------------------------------------------------------------------------------- MMPareto


def test_mmpareto_global_by_hand():
  # fused (1, 0), uni (-1, 1): cos < 0 -> alpha_1 = (2 - (-1)) / (1 + 2 + 2) = 0.6, alpha = (0.6, 0.4)
  # d = 2 (0.6 (1,0) + 0.4 (-1,1)) = (0.4, 0.8), ||d|| = sqrt(0.8); sum = (0, 1), ||sum|| = 1 > ||d||
  # -> d * 1/sqrt(0.8) = (0.4472136, 0.8944272) ("global"); "per_leaf": each 1-element leaf
  # is rescaled to |sum| on that leaf if larger: a: |0|/0.4 < 1 -> 0.4; b: 1/0.8 -> 1.0.
  grads = _stacked((1, 0), (-1, 1))
  out, state = _run(mmpareto(["audio"], rescale="global"), grads, objectives=FA)
  _close(_vec(out), [0.4 / math.sqrt(0.8), 0.8 / math.sqrt(0.8)])
  _close(state.weights["all"], [0.6, 0.4])
  assert bool(state.conflict["all"])
  out, _ = _run(mmpareto(["audio"], rescale="per_leaf"), grads, objectives=FA)
  _close(_vec(out), [0.4, 1.0])
  out, _ = _run(mmpareto(["audio"], rescale="none", gamma=1.5), grads, objectives=FA)
  _close(_vec(out), [0.6, 1.2])


def test_mmpareto_no_conflict_is_plain_sum():
  # fused (1, 0), uni_a (1, 1), uni_v (0, 3): cosines with fused >= 0 -> plain sum (2, 4)
  grads = _stacked((1, 0), (1, 1), (0, 3))
  out, state = _run(mmpareto(["a", "v"]), grads, objectives=("fused", "a", "v"))
  combined, _ = combine_objectives(jnp.ones(3)).update(grads, optax.EmptyState())
  for name in ("a", "b"):
    np.testing.assert_array_equal(np.asarray(out[name]), np.asarray(combined[name]))
  _close(state.weights["all"], [1 / 3] * 3)
  out, _ = _run(mmpareto(["a", "v"], gamma=1.5), grads, objectives=("fused", "a", "v"))
  _close(_vec(out), [3.0, 6.0])


def test_mmpareto_per_modality_labels():
  # objectives [fused, audio, visual]; leaf "ea" (audio encoder), "ev" (visual), "h" (shared).
  # audio leaf: fused (1, 0), audio (-1, 1) -> as in the global case, per-leaf = group norms:
  #   d = (0.4, 0.8) scaled by ||sum = (0, 1)|| / sqrt(0.8) -> (0.4472136, 0.8944272)
  # visual leaf: fused (2, 0), visual (0, 1): cos 0 -> plain sum (2, 1)
  # head: plain sum of all three rows.
  grads = {"ea": jnp.asarray([[1.0, 0.0], [-1.0, 1.0], [0.0, 0.0]]),
           "ev": jnp.asarray([[2.0, 0.0], [0.0, 0.0], [0.0, 1.0]]),
           "h": jnp.asarray([[1.0, 2.0], [3.0, 4.0], [-5.0, 6.0]])}
  labels = {"ea": "audio", "ev": "visual", "h": SHARED}
  out, state = _run(mmpareto(["audio", "visual"], labels), grads,
                    objectives=("fused", "audio", "visual"))
  _close(out["ea"], [0.4 / math.sqrt(0.8), 0.8 / math.sqrt(0.8)])
  _close(out["ev"], [2.0, 1.0])
  _close(out["h"], [-1.0, 12.0])
  _close(state.weights["audio"], [0.6, 0.4])
  _close(state.weights["visual"], [0.5, 0.5])


# ------------------------------------------------------------------------------- BalGrad


def test_balgrad_by_hand():
  # layout [task, kl_a, kl_v, uni_a, uni_v]; L_a = 1, L_v = 3 -> w = (0.25, 0.75)
  # g_T = (1, 0); kl_a = (-1, 0), kl_v = (0, 1) -> g_kl = (-0.25, 0.75), ||g_kl||^2 = 0.625
  # <g_T, g_kl> = -0.25 < 0 -> g_T' = (1, 0) + (0.25 / 0.625) (-0.25, 0.75) = (0.9, 0.3)
  # uni_a = (1, 1), uni_v = (0, -2) -> sum (1, -1)
  # update = (0.9, 0.3) + (1, -1) + (-0.25, 0.75) = (1.65, 0.05)
  # cos(g_T, g_kl) = -0.25 / sqrt(0.625) = -0.3162278
  assert balgrad_objective_names(["a", "v"]) == ("task", "kl_a", "kl_v", "uni_a", "uni_v")
  grads = _stacked((1, 0), (-1, 0), (0, 1), (1, 1), (0, -2))
  losses = {"a": jnp.float32(1.0), "v": jnp.float32(3.0)}
  out, state = _run(balgrad(["a", "v"]), grads, unimodal_losses=losses, objectives=AV)
  _close(_vec(out), [1.65, 0.05])
  _close(state.weights["a"], 0.25)
  _close(state.cosine, -0.25 / math.sqrt(0.625))
  assert bool(state.projected)
  # without projection: (1, 0) + (1, -1) + (-0.25, 0.75) = (1.75, -0.25)
  out, state = _run(balgrad(["a", "v"], project=False), grads, unimodal_losses=losses,
                    objectives=AV)
  _close(_vec(out), [1.75, -0.25])
  assert not bool(state.projected)
  # uniform weights (0.5, 0.5): g_kl = (-0.5, 0.5), dot -0.5, ||g_kl||^2 = 0.5
  # g_T' = (1, 0) + (-0.5, 0.5) = (0.5, 0.5); update = (0.5, 0.5) + (1, -1) + (-0.5, 0.5) = (1, 0)
  out, _ = _run(balgrad(["a", "v"], reweight="uniform"), grads, objectives=AV)
  _close(_vec(out), [1.0, 0.0])


def test_balgrad_kl_losses_by_hand():
  # p_a = (0.5, 0.5) (logits 0, 0); p_v = (0.75, 0.25) (logits log 3, 0)
  # L_a = KL(p_v || p_a) = 0.75 log 1.5 + 0.25 log 0.5
  # L_v = KL(p_a || p_v) = 0.5 log(2/3) + 0.5 log 2
  logits = jnp.asarray([[[0.0, 0.0]], [[math.log(3.0), 0.0]]])
  kl = balgrad_kl_losses(logits)
  _close(kl, [0.75 * math.log(1.5) + 0.25 * math.log(0.5), 0.5 * math.log(2 / 3) + 0.5 * math.log(2)])
  # the target is stop-gradiented: L_a does not depend on the visual logits
  g = jax.grad(lambda z: balgrad_kl_losses(z)[0])(logits)
  np.testing.assert_array_equal(np.asarray(g[1]), 0.0)
  assert np.abs(np.asarray(g[0])).sum() > 0
  # M = 3: target is the mean of the other two; identical predictions give 0
  _close(balgrad_kl_losses(jnp.zeros((3, 4, 5))), [0.0, 0.0, 0.0], atol=1e-7)


# ------------------------------------------------------------------------------- robustness


def _make_all_transforms():
  labels = {"a": SHARED, "b": "m"}
  return [
      (pcgrad(num_objectives=3, order="fixed"), 3, {}),
      (pcgrad(num_objectives=3, order="random"), 3, {"key": KEY}),
      (pcgrad(num_objectives=3, order="fixed", labels=labels, project="shared"), 3, {}),
      (mmpareto(["m", "n"]), 3, {"objectives": FMN}),
      (mmpareto(["m", "n"], rescale="global"), 3, {"objectives": FMN}),
      (balgrad(["m"]), 3, {"unimodal_losses": {"m": 1.0}, "objectives": TKU}),
  ]


_ALL_TRANSFORMS = _make_all_transforms()


@pytest.mark.parametrize("case", ["zero", "identical", "huge", "huge_conflict"])
def test_finite_on_degenerate_gradients(case):
  base = {"zero": [(0, 0)] * 3, "identical": [(1, 2)] * 3, "huge": [(1e30, 2e30)] * 3,
          "huge_conflict": [(1e30, 0), (-1e30, 1e30), (0, -1e30)]}[case]
  grads = _stacked(*base)
  for tx, _, extra in _ALL_TRANSFORMS:
    out, state = _run(tx, grads, **extra)
    assert _finite(out), (case, tx)
    assert _finite(state), (case, tx)
    if case == "zero":
      _close(_vec(out), [0.0, 0.0])
  # identical gradients never conflict: PCGrad gives the plain sum
  if case == "identical":
    out, _ = _run(pcgrad(num_objectives=3, order="fixed"), grads)
    _close(_vec(out), [3.0, 6.0])


# ------------------------------------------------------------------------------- sharding / chains


def _mesh():
  return jax.make_mesh((4, 2), ("data", "model"), axis_types=(AxisType.Auto,) * 2)


def _sharded_grads(k=3):
  rng = np.random.default_rng(0)
  w = rng.normal(size=(k, 4, 8)).astype(np.float32)
  b = rng.normal(size=(k, 8)).astype(np.float32)
  return {"w": jnp.asarray(w), "b": jnp.asarray(b)}


def _transforms_for_sharding():
  labels = {"w": SHARED, "b": "m"}
  return [
      ("pcgrad", pcgrad(num_objectives=3, order="random"), {"key": KEY}),
      ("pcgrad_shared", pcgrad(num_objectives=3, order="fixed", labels=labels, project="shared"), {}),
      ("mmpareto", mmpareto(["m", "n"], {"w": "m", "b": "n"}), {"objectives": FMN}),
      ("balgrad", balgrad(["m"]), {"unimodal_losses": {"m": 0.5}, "objectives": TKU}),
  ]


def test_shardings_preserved_and_match_single_device(devices):
  mesh = _mesh()
  grads = _sharded_grads()
  specs = {"w": P(None, None, "model"), "b": P(None, "model")}
  sharded = jax.tree.map(lambda g, s: jax.device_put(g, NamedSharding(mesh, s)), grads, specs)
  single = jax.tree.map(lambda g: jax.device_put(g, devices[0]), grads)
  for name, tx, extra in _transforms_for_sharding():
    state = tx.init(jax.tree.map(lambda g: g[0], grads))
    step = jax.jit(lambda g, s, tx=tx, extra=extra: tx.update(g, s, **extra))
    out_sh, _ = step(sharded, state)
    out_1, _ = step(single, state)
    assert out_sh["w"].sharding.spec == P(None, "model"), (name, out_sh["w"].sharding)
    assert out_sh["b"].sharding.spec == P("model"), (name, out_sh["b"].sharding)
    for leaf in ("w", "b"):
      _close(out_sh[leaf], np.asarray(out_1[leaf]), rtol=1e-5, atol=1e-5)


def test_chain_with_adam_and_state_shapes():
  grads = _sharded_grads()
  params = jax.tree.map(lambda g: jnp.zeros(g.shape[1:]), grads)
  for name, tx, extra in _transforms_for_sharding():
    opt = optax.chain(tx, optax.adam(1e-2))
    state0 = opt.init(params)
    step = jax.jit(lambda g, s, p, opt=opt, extra=extra: opt.update(g, s, p, **extra))
    updates, state1 = step(grads, state0, params)
    params2 = optax.apply_updates(params, updates)
    assert jax.tree.map(jnp.shape, params2) == jax.tree.map(jnp.shape, params)
    assert _finite(params2)
    if not name.startswith("pcgrad"):   # pcgrad without num_objectives grows its cosines once
      assert jax.tree.map(jnp.shape, state0) == jax.tree.map(jnp.shape, state1), name
  tx = pcgrad(order="random", num_objectives=3)
  s0 = tx.init(params)
  _, s1 = tx.update(grads, s0, key=KEY)
  assert jax.tree.map(jnp.shape, s0) == jax.tree.map(jnp.shape, s1)
  assert optax.tree_utils.tree_get(optax.chain(tx, optax.adam(1.0)).init(params), "cosines").shape == (3, 3)
