"""MILES (mmbal.transforms.schedule): hand-computed epoch rules, adam exactness, invariants."""
import jax
import jax.numpy as jnp
import numpy as np
import optax
import orbax.checkpoint as ocp
import pytest
from jax.sharding import NamedSharding, PartitionSpec as P

from mmbal.transforms.schedule import MilesState, find_miles_state, miles, miles_update


def _params(names, dtype=jnp.float32):
  """One encoder per modality plus a shared head; labels are the modality names / "shared"."""
  rng = np.random.default_rng(0)
  params = {m: {"w": jnp.asarray(rng.normal(size=(4, 6)), dtype), "b": jnp.zeros((6,), dtype)}
            for m in names}
  params["head"] = {"w": jnp.asarray(rng.normal(size=(6, 4)), dtype)}
  labels = {m: {"w": m, "b": m} for m in names}
  labels["head"] = {"w": "shared"}
  return params, labels


def _scales(state):
  return {m: float(s) for m, s in find_miles_state(state).scales.items()}


def test_two_modalities_hand_computed():
  params, labels = _params(("audio", "visual"))
  tx = miles(labels)                                  # tau = 0.2, mu = 0.5
  state = tx.init(params)
  assert _scales(state) == {"audio": 1.0, "visual": 1.0}
  update = jax.jit(lambda s, full, uni: miles_update(s, full, unimodal_accuracy=uni))

  # A_AV = 0.8, A_A = 0.7, A_V = 0.4:
  # u(audio|visual) = (0.8 - 0.4)/0.8 = 0.5, u(visual|audio) = (0.8 - 0.7)/0.8 = 0.125,
  # delta = 0.375 > 0.2 -> audio (largest positive u) dominant -> audio 0.5, visual 1.
  state = update(state, 0.8, {"audio": 0.7, "visual": 0.4})
  s = find_miles_state(state)
  np.testing.assert_allclose(s.utilisation["audio"], 0.5, rtol=1e-6)
  np.testing.assert_allclose(s.utilisation["visual"], 0.125, rtol=1e-5)
  np.testing.assert_allclose(s.delta, 0.375, rtol=1e-5)
  assert _scales(state) == {"audio": 0.5, "visual": 1.0}

  # A_AV = 0.8, A_A = 0.7, A_V = 0.6: u_A = 0.25, u_V = 0.125, delta = 0.125 <= 0.2
  # -> all 1 (the earlier reduction is reset).
  state = update(state, 0.8, {"audio": 0.7, "visual": 0.6})
  assert _scales(state) == {"audio": 1.0, "visual": 1.0}

  # A_AV = 0.6, A_A = 0.7, A_V = 0.3: u_A = (0.6-0.3)/0.6 = 0.5, u_V = (0.6-0.7)/0.6 = -1/6,
  # delta = 2/3 -> audio dominant (u_A > 0 > u_V).
  state = update(state, 0.6, {"audio": 0.7, "visual": 0.3})
  assert _scales(state) == {"audio": 0.5, "visual": 1.0}

  # A_AV = 0.5, A_A = 0.6, A_V = 0.9: u_A = (0.5-0.9)/0.5 = -0.8, u_V = (0.5-0.6)/0.5 = -0.2,
  # delta = 0.6 > 0.2 but no positive utilisation -> no dominant modality, all 1.
  state = update(state, 0.5, {"audio": 0.6, "visual": 0.9})
  assert _scales(state) == {"audio": 1.0, "visual": 1.0}

  # The unimodal form is the "without" form with the other modality's accuracy:
  # without audio = the visual head (0.4), without visual = the audio head (0.7).
  a = miles_update(tx.init(params), 0.8, unimodal_accuracy={"audio": 0.7, "visual": 0.4})
  b = miles_update(tx.init(params), 0.8, {"audio": 0.4, "visual": 0.7})
  jax.tree.map(np.testing.assert_array_equal, a, b)


def test_three_modalities_hand_computed():
  params, labels = _params(("a", "b", "c"))
  tx = miles(labels, tau=0.2, mu=0.25)
  state = tx.init(params)
  update = jax.jit(miles_update)

  # A_full = 0.9; without a/b/c = 0.45/0.81/0.9: u = (0.45/0.9, 0.09/0.9, 0) = (0.5, 0.1, 0),
  # delta = 0.5 > 0.2 -> a dominant -> a 0.25, b and c 1.
  state = update(state, 0.9, {"a": 0.45, "b": 0.81, "c": 0.9})
  s = find_miles_state(state)
  np.testing.assert_allclose([s.utilisation[m] for m in "abc"], [0.5, 0.1, 0.0], atol=1e-6)
  np.testing.assert_allclose(s.delta, 0.5, rtol=1e-6)
  assert _scales(state) == {"a": 0.25, "b": 1.0, "c": 1.0}

  # without = 0.81/0.765/0.9: u = (0.1, 0.15, 0), delta = 0.15 <= 0.2 -> all 1.
  state = update(state, 0.9, {"a": 0.81, "b": 0.765, "c": 0.9})
  assert _scales(state) == {"a": 1.0, "b": 1.0, "c": 1.0}

  # A_full = 0.5, without = 0.6/0.75/0.55: u = (-0.2, -0.5, -0.1), delta = 0.4 > 0.2,
  # every u <= 0 -> no dominant modality, all 1.
  state = update(state, 0.5, {"a": 0.6, "b": 0.75, "c": 0.55})
  assert _scales(state) == {"a": 1.0, "b": 1.0, "c": 1.0}

  # A_full = 0.5, without = 0.6/0.25/0.5: u = (-0.2, 0.5, 0), delta = 0.7 -> b dominant.
  state = update(state, 0.5, {"a": 0.6, "b": 0.25, "c": 0.5})
  assert _scales(state) == {"a": 1.0, "b": 0.25, "c": 1.0}

  # A_full = 0 -> utilisation undefined -> all u = 0, all scales 1.
  state = update(state, 0.0, {"a": 0.0, "b": 0.0, "c": 0.0})
  assert _scales(state) == {"a": 1.0, "b": 1.0, "c": 1.0}

  with pytest.raises(ValueError, match="two modalities"):
    miles_update(state, 0.9, unimodal_accuracy={"a": 0.5, "b": 0.5, "c": 0.5})
  with pytest.raises(ValueError, match="modalities"):
    miles_update(state, 0.9, {"a": 0.5, "b": 0.5})
  with pytest.raises(ValueError, match="no MilesState"):
    miles_update(optax.adam(1.0).init(params), 0.9, {"a": 0.5, "b": 0.5, "c": 0.5})


def test_cumulative_option_with_floor():
  params, labels = _params(("a", "b"))
  tx = miles(labels, mu=0.5, cumulative=True, min_scale=0.2)
  state = tx.init(params)
  a_dominant = ({"a": 0.4, "b": 0.7}, 0.8)     # u_a = 0.5, u_b = 0.125, delta = 0.375
  b_dominant = ({"a": 0.7, "b": 0.4}, 0.8)
  balanced = ({"a": 0.7, "b": 0.7}, 0.8)       # delta = 0
  expected = [(a_dominant, {"a": 0.5, "b": 1.0}),     # 1 * 0.5
              (a_dominant, {"a": 0.25, "b": 1.0}),    # 0.5 * 0.5
              (a_dominant, {"a": 0.2, "b": 1.0}),     # 0.125 floored at 0.2
              (b_dominant, {"a": 0.2, "b": 0.5}),     # a kept, b halved
              (balanced, {"a": 0.2, "b": 0.5})]       # nothing is reset
  for (without, full), scales in expected:
    state = miles_update(state, full, without)
    np.testing.assert_allclose(list(_scales(state).values()), list(scales.values()), rtol=1e-6)
  with pytest.raises(ValueError, match="mu"):
    miles(labels, mu=2.0, cumulative=True)


def test_adam_chain_scales_dominant_updates_by_exactly_mu():
  params, labels = _params(("audio", "visual"))
  base = optax.adam(1e-2)
  tx = optax.chain(optax.adam(1e-2), miles(labels, mu=0.5))
  lr_half = optax.adam(0.5e-2)
  s_base, s_tx, s_half = base.init(params), tx.init(params), lr_half.init(params)
  s_tx = miles_update(s_tx, 0.8, unimodal_accuracy={"audio": 0.7, "visual": 0.4})  # audio dominant
  rng = np.random.default_rng(1)
  for _ in range(3):
    grads = jax.tree.map(lambda p: jnp.asarray(rng.normal(size=p.shape), p.dtype), params)
    u_base, s_base = base.update(grads, s_base, params)
    u_tx, s_tx = tx.update(grads, s_tx, params, objective_values=jnp.ones(3), unused=1)
    u_half, s_half = lr_half.update(grads, s_half, params)
    for leaf in ("w", "b"):
      np.testing.assert_array_equal(u_tx["audio"][leaf], 0.5 * u_base["audio"][leaf])
      np.testing.assert_array_equal(u_tx["audio"][leaf], u_half["audio"][leaf])  # = lr * mu
      np.testing.assert_array_equal(u_tx["visual"][leaf], u_base["visual"][leaf])
    np.testing.assert_array_equal(u_tx["head"]["w"], u_base["head"]["w"])


@pytest.mark.parametrize("num", [2, 3, 6])
def test_any_number_of_modalities_and_extreme_updates(num):
  names = tuple(f"m{i}" for i in range(num))
  params, labels = _params(names)
  tx = miles(labels)
  state = tx.init(params)
  assert set(find_miles_state(state).scales) == set(names)
  # A_full = 0.8; without m0 = 0.2 (u = 0.75), every other without = 0.8 (u = 0): m0 dominant.
  state = jax.jit(miles_update)(state, 0.8, {m: 0.2 if m == "m0" else 0.8 for m in names})
  assert _scales(state) == {m: 0.5 if m == "m0" else 1.0 for m in names}
  # The per-label inject_hyperparams step sizes mirror the scales field.
  hyper = state.inner.inner_states["m0"].inner_state.hyperparams
  assert float(hyper["step_size"]) == 0.5
  # The scales field is the source of truth: setting it directly takes effect.
  edited = state._replace(scales={**state.scales, names[-1]: jnp.float32(0.25)})
  out, _ = tx.update(params, edited)
  np.testing.assert_array_equal(out[names[-1]]["w"], 0.25 * params[names[-1]]["w"])
  for value in (0.0, 1e30, -1e30):
    updates = jax.tree.map(lambda p: jnp.full_like(p, value), params)
    out, _ = jax.jit(tx.update)(updates, state)            # params=None is fine
    assert all(bool(jnp.isfinite(x).all()) for x in jax.tree.leaves(out))
    np.testing.assert_array_equal(out["m0"]["w"], 0.5 * updates["m0"]["w"])
    np.testing.assert_array_equal(out["head"]["w"], updates["head"]["w"])
  # bf16 updates stay bf16 (the float32 scale does not promote them).
  params16, _ = _params(names, jnp.bfloat16)
  out, _ = tx.update(params16, tx.init(params16), params16)
  assert all(x.dtype == jnp.bfloat16 for x in jax.tree.leaves(out))


def test_shardings_preserved_under_jit(devices):
  mesh = jax.make_mesh((4, 2), ("data", "model"), axis_types=(jax.sharding.AxisType.Auto,) * 2)
  params, labels = _params(("audio", "visual"))
  col = NamedSharding(mesh, P(None, "model"))
  rep = NamedSharding(mesh, P())
  shardings = jax.tree.map(lambda _: rep, params)
  shardings["audio"]["w"] = col
  shardings["head"]["w"] = col
  params = jax.device_put(params, shardings)
  tx = optax.chain(optax.adam(1e-3), miles(labels))
  state = jax.jit(tx.init)(params)
  state = jax.jit(miles_update)(state, 0.8, {"audio": 0.4, "visual": 0.7})
  updates, state = jax.jit(tx.update)(params, state, params)
  for u, p in zip(jax.tree.leaves(updates), jax.tree.leaves(params)):
    assert u.sharding.is_equivalent_to(p.sharding, p.ndim), (u.sharding, p.sharding)
  assert updates["audio"]["w"].sharding.spec == P(None, "model")


def test_named_chain_and_checkpoint_resume_is_exact(tmp_path):
  params, labels = _params(("audio", "visual"))
  tx = optax.named_chain(("adam", optax.adam(1e-2)), ("miles", miles(labels)))
  rng = np.random.default_rng(2)
  grads = [jax.tree.map(lambda p: jnp.asarray(rng.normal(size=p.shape), p.dtype), params)
           for _ in range(4)]
  epochs = [(0.8, {"audio": 0.4, "visual": 0.7}), (0.8, {"audio": 0.7, "visual": 0.75})]
  step = jax.jit(lambda g, s, p: tx.update(g, s, p))
  epoch = jax.jit(miles_update)

  def run(state, params, start):
    for i in range(start, 4):
      if i % 2 == 0:
        state = epoch(state, *epochs[i // 2])
      updates, state = step(grads[i], state, params)
      params = optax.apply_updates(params, updates)
    return state, params

  state0 = tx.init(params)
  assert isinstance(state0["miles"], MilesState)
  full_state, full_params = run(state0, params, 0)
  # Interrupted: two steps (one epoch update), checkpoint, restore, continue.
  state, p = state0, params
  state = epoch(state, *epochs[0])
  for i in range(2):
    u, state = step(grads[i], state, p)
    p = optax.apply_updates(p, u)
  assert _scales(state) == {"audio": 0.5, "visual": 1.0}
  ckptr = ocp.StandardCheckpointer()
  ckptr.save(tmp_path / "ckpt", dict(opt_state=state, params=p))
  ckptr.wait_until_finished()
  abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct,
                          dict(opt_state=tx.init(params), params=params))
  restored = ckptr.restore(tmp_path / "ckpt", abstract)
  ckptr.close()
  assert isinstance(find_miles_state(restored["opt_state"]), MilesState)
  assert _scales(restored["opt_state"]) == {"audio": 0.5, "visual": 1.0}
  res_state, res_params = run(restored["opt_state"], restored["params"], 2)
  jax.tree.map(np.testing.assert_array_equal, (res_state, res_params), (full_state, full_params))
  assert _scales(res_state) == {"audio": 1.0, "visual": 1.0}   # second epoch: delta <= tau
