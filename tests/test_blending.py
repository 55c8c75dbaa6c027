"""Gradient-Blending (mmbal.transforms.blending): hand-computed weights, invariants, resume."""
import jax
import jax.numpy as jnp
import numpy as np
import optax
import orbax.checkpoint as ocp
import pytest
from jax.sharding import NamedSharding, PartitionSpec as P

from mmbal.transforms.blending import (BlendingState, blending_update, find_blending_state,
                                       gradient_blending)


def _weights(state):
  return np.asarray(find_blending_state(state).weights)


def test_two_heads_hand_computed():
  tx = gradient_blending(("fused", "audio"))
  state = tx.init(None)
  np.testing.assert_array_equal(_weights(state), [0.5, 0.5])       # uniform start
  update = jax.jit(blending_update)

  # Checkpoint N: train (1.0, 1.2), val (1.5, 1.4). The first call only records it.
  state = update(state, jnp.array([1.0, 1.2]), jnp.array([1.5, 1.4]))
  np.testing.assert_array_equal(_weights(state), [0.5, 0.5])
  assert bool(find_blending_state(state).measured)

  # Checkpoint N+n: train (0.6, 1.0), val (1.3, 1.3).
  # O_N = (0.5, 0.2), O_{N+n} = (0.7, 0.3) -> dO = (0.2, 0.1); dG = (1.5-1.3, 1.4-1.3) = (0.2, 0.1).
  # dG/dO^2 = (0.2/0.04, 0.1/0.01) = (5, 10) -> w = (1/3, 2/3).
  state = update(state, jnp.array([0.6, 1.0]), jnp.array([1.3, 1.3]))
  s = find_blending_state(state)
  np.testing.assert_allclose(s.weights, [1 / 3, 2 / 3], rtol=1e-5)
  np.testing.assert_allclose(s.gain, [0.2, 0.1], rtol=1e-5)
  np.testing.assert_allclose(s.overfit, [0.2, 0.1], rtol=1e-5)

  # Next: both validation losses rise (1.4, 1.5) -> dG < 0 for both -> all terms 0
  # -> keep (1/3, 2/3).
  state = update(state, jnp.array([0.5, 0.9]), jnp.array([1.4, 1.5]))
  np.testing.assert_allclose(_weights(state), [1 / 3, 2 / 3], rtol=1e-5)

  # Blended gradient: (1/3) * 3 + (2/3) * 6 = 5.
  grads = {"w": jnp.array([[3.0], [6.0]])}
  out, _ = tx.update(grads, state)
  np.testing.assert_allclose(out["w"], [5.0], rtol=1e-6)


def test_three_heads_with_a_degenerate_head():
  tx = gradient_blending(3)
  state = tx.init(None)
  # head 0: train 1.0 -> 0.6, val 1.5 -> 1.3: dO = 0.7 - 0.5 = 0.2, dG = 0.2 -> 0.2/0.04 = 5.
  # head 1: train 0.5 -> 0.4, val 1.0 -> 1.1: dG = -0.1 < 0 -> clamped to 0 -> weight 0.
  # head 2: train 2.0 -> 2.05, val 2.5 -> 2.45: dO = 0.4 - 0.5 = -0.1, dG = 0.05 -> 0.05/0.01 = 5.
  # w = (5, 0, 5) / 10 = (0.5, 0, 0.5).
  state = blending_update(state, [1.0, 0.5, 2.0], [1.5, 1.0, 2.5])
  state = blending_update(state, [0.6, 0.4, 2.05], [1.3, 1.1, 2.45])
  np.testing.assert_allclose(_weights(state), [0.5, 0.0, 0.5], rtol=1e-4, atol=1e-7)

  # dO exactly 0: head 0 train 1.0 -> 0.75, val 1.5 -> 1.25 (O = 0.5 both), dG = 0.25 ->
  # 0.25 / (0 + 1e-8) = 2.5e7; head 1 as in the two-head case: 10; head 2 val rises: 0.
  # w_0 = 2.5e7 / (2.5e7 + 10) = 1 - 4e-7, w_1 = 4e-7, w_2 = 0.
  state = tx.init(None)
  state = blending_update(state, [1.0, 1.2, 1.0], [1.5, 1.4, 1.0])
  state = blending_update(state, [0.75, 1.0, 1.0], [1.25, 1.3, 1.2])
  w = _weights(state)
  assert np.isfinite(w).all()
  np.testing.assert_allclose(w, [1 - 4e-7, 4e-7, 0.0], rtol=1e-3, atol=1e-9)

  # Non-finite losses count as 0 for that head: head 0 val inf -> w = (0, 1, 0) from head 1 alone.
  state = tx.init(None)
  state = blending_update(state, [1.0, 1.2, 1.0], [1.5, 1.4, 1.0])
  state = blending_update(state, [0.75, 1.0, 1.0], [np.inf, 1.3, 1.2])
  np.testing.assert_allclose(_weights(state), [0.0, 1.0, 0.0])

  with pytest.raises(ValueError, match="shape"):
    blending_update(state, [1.0, 2.0], [1.0, 2.0])
  with pytest.raises(ValueError, match="no BlendingState"):
    blending_update(optax.adam(1.0).init({"w": jnp.zeros(2)}), [1.0] * 3, [1.0] * 3)


def test_initial_weights_and_stacked_combination():
  tx = gradient_blending(3, initial_weights=[2.0, 1.0, 1.0])
  state = tx.init(None)
  np.testing.assert_allclose(_weights(state), [0.5, 0.25, 0.25])   # normalised to sum 1
  # g = 0.5 (1, 2) + 0.25 (3, 4) + 0.25 (5, 6) = (0.5 + 0.75 + 1.25, 1 + 1 + 1.5) = (2.5, 3.5).
  grads = {"a": jnp.array([[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]])}
  out, _ = tx.update(grads, state, None, objective_values=jnp.zeros(3), anything="ignored")
  np.testing.assert_allclose(out["a"], [2.5, 3.5])
  with pytest.raises(ValueError, match="leading axis"):
    tx.update({"a": jnp.zeros((2, 5))}, state)
  with pytest.raises(ValueError, match="initial_weights"):
    gradient_blending(2, initial_weights=[1.0, -1.0])


@pytest.mark.parametrize("num", [2, 3, 6])
def test_any_number_of_heads_extreme_gradients_and_adam_chain(num):
  names = ("fused",) + tuple(f"m{i}" for i in range(num))
  k = len(names)
  params = {m: {"w": jnp.zeros((4, 3))} for m in names[1:]}
  params["head"] = jnp.zeros((3,))
  tx = optax.chain(gradient_blending(names), optax.adam(1e-2))
  reference = optax.adam(1e-2)
  state, ref_state = tx.init(params), reference.init(params)
  rng = np.random.default_rng(0)
  state = blending_update(state, rng.uniform(1, 2, k), rng.uniform(2, 3, k))
  state = blending_update(state, rng.uniform(0, 1, k), rng.uniform(1, 2, k))
  w = _weights(state)
  np.testing.assert_allclose(w.sum(), 1.0, rtol=1e-6)
  stacked = jax.tree.map(lambda p: jnp.asarray(rng.normal(size=(k,) + p.shape), jnp.float32),
                         params)
  updates, state = jax.jit(tx.update)(stacked, state, params)
  ref, _ = reference.update(jax.tree.map(lambda g: jnp.tensordot(w, g, axes=1), stacked),
                            ref_state, params)
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-8), updates, ref)
  blend = jax.jit(gradient_blending(names).update)
  for value in (0.0, 1e30, -1e30):
    extreme = jax.tree.map(lambda g: jnp.full_like(g, value), stacked)
    out, _ = blend(extreme, find_blending_state(state))
    assert all(bool(jnp.isfinite(x).all()) for x in jax.tree.leaves(out))


def test_shardings_preserved_under_jit(devices):
  mesh = jax.make_mesh((4, 2), ("data", "model"), axis_types=(jax.sharding.AxisType.Auto,) * 2)
  k = 3
  params = {"enc": jnp.ones((8, 6)), "bias": jnp.ones((6,))}
  params = jax.device_put(params, {"enc": NamedSharding(mesh, P(None, "model")),
                                   "bias": NamedSharding(mesh, P())})
  stacked = jax.device_put(
      {"enc": jnp.ones((k, 8, 6)), "bias": jnp.ones((k, 6))},
      {"enc": NamedSharding(mesh, P(None, None, "model")), "bias": NamedSharding(mesh, P())})
  tx = optax.chain(gradient_blending(k), optax.adam(1e-3))
  state = jax.jit(tx.init)(params)
  state = jax.jit(blending_update)(state, jnp.ones(k), jnp.ones(k))
  updates, _ = jax.jit(tx.update)(stacked, state, params)
  assert updates["enc"].sharding.spec == P(None, "model")
  for u, p in zip(jax.tree.leaves(updates), jax.tree.leaves(params)):
    assert u.sharding.is_equivalent_to(p.sharding, p.ndim), (u.sharding, p.sharding)


def test_named_chain_and_checkpoint_resume_is_exact(tmp_path):
  params = {"w": jnp.ones((4, 2)), "b": jnp.zeros((2,))}
  tx = optax.named_chain(("blend", gradient_blending(3)), ("adam", optax.adam(1e-2)))
  rng = np.random.default_rng(3)
  grads = [jax.tree.map(lambda p: jnp.asarray(rng.normal(size=(3,) + p.shape), jnp.float32), params)
           for _ in range(6)]
  losses = [(rng.uniform(1, 2, 3), rng.uniform(2, 3, 3)) for _ in range(3)]
  step = jax.jit(lambda g, s, p: tx.update(g, s, p))
  epoch = jax.jit(blending_update)

  def run(state, params, start, stop=6):
    for i in range(start, stop):
      if i % 2 == 0:
        state = epoch(state, *losses[i // 2])
      updates, state = step(grads[i], state, params)
      params = optax.apply_updates(params, updates)
    return state, params

  state0 = tx.init(params)
  assert isinstance(state0["blend"], BlendingState)
  full = run(state0, params, 0)
  state, p = run(state0, params, 0, 4)     # two epoch updates: the weights have moved
  assert not np.allclose(_weights(state), 1 / 3)
  ckptr = ocp.StandardCheckpointer()
  ckptr.save(tmp_path / "ckpt", dict(opt_state=state, params=p))
  ckptr.wait_until_finished()
  abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, dict(opt_state=state0, params=params))
  restored = ckptr.restore(tmp_path / "ckpt", abstract)
  ckptr.close()
  resumed = run(restored["opt_state"], restored["params"], 4)
  jax.tree.map(np.testing.assert_array_equal, resumed, full)

