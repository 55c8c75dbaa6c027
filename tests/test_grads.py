"""objective_grads: equals K separate jax.grad calls; structured grouping; sharding."""
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx
from jax.sharding import NamedSharding, PartitionSpec as P

import mmbal
from mmbal.models import MultimodalClassifier, labels_for, split
from mmbal.train.sharding import make_mesh


def test_hand_computed_two_objectives():
  # f1 = a*b, f2 = a^2 at a=3, b=2: grad f1 = (2, 3), grad f2 = (6, 0).
  params = {"a": jnp.float32(3.0), "b": jnp.float32(2.0)}
  res = mmbal.objective_grads(lambda p: jnp.stack([p["a"] * p["b"], p["a"] ** 2]), params)
  np.testing.assert_allclose(res.values, [6.0, 9.0])
  np.testing.assert_allclose(res.grads["a"], [2.0, 6.0])
  np.testing.assert_allclose(res.grads["b"], [3.0, 0.0])


def test_disjoint_objectives_share_a_pass_and_split_by_label():
  # L_fused = (x+y)^2 touches both; L_x = 3x and L_y = y^3 touch one label each.
  params = {"x": jnp.float32(1.0), "y": jnp.float32(2.0)}
  labels = {"x": "x", "y": "y"}
  fn = lambda p: jnp.stack([(p["x"] + p["y"]) ** 2, 3 * p["x"], p["y"] ** 3])
  assert mmbal.plan_backward_passes([None, frozenset("x"), frozenset("y")]) == ((0,), (1, 2))
  res = mmbal.objective_grads(fn, params, objectives=("fused", "x", "y"), labels=labels)
  np.testing.assert_allclose(res.grads["x"], [6.0, 3.0, 0.0])
  np.testing.assert_allclose(res.grads["y"], [6.0, 0.0, 12.0])


def test_plan_keeps_overlapping_objectives_apart():
  a, b, s = frozenset("a"), frozenset("b"), "shared"
  assert mmbal.plan_backward_passes([None, None]) == ((0,), (1,))
  assert mmbal.plan_backward_passes([a | {s}, b | {s}]) == ((0,), (1,))
  assert mmbal.plan_backward_passes([a, b, a]) == ((0, 1), (2,))


def _model_and_loss(mods, fusion="concat", unimodal="heads"):
  model = MultimodalClassifier(mods, 5, feature_dim=8, hidden_dim=16, fusion=fusion,
                               unimodal=unimodal, rngs=nnx.Rngs(0))
  graphdef, params, rest = split(model)

  def loss(p, x, y):
    out = nnx.merge(graphdef, p, rest)(x)
    fused = optax.softmax_cross_entropy_with_integer_labels(out.logits, y).mean()
    uni = optax.softmax_cross_entropy_with_integer_labels(out.unimodal_logits, y[None]).mean(-1)
    return jnp.concatenate([fused[None], uni])

  rng = np.random.default_rng(0)
  x = {m: jnp.asarray(rng.normal(size=(16,) + tuple(s)), jnp.float32) for m, s in mods.items()}
  y = jnp.asarray(rng.integers(0, 5, 16))
  return model, params, loss, x, y


def _assert_equals_separate_grads(res, loss, params, x, y):
  num = res.values.shape[0]
  separate = jax.jit(lambda p: [jax.grad(lambda q: loss(q, x, y)[k])(p) for k in range(num)])
  for k, ref in enumerate(separate(params)):
    jax.tree.map(lambda g, r: np.testing.assert_allclose(g[k], r, atol=2e-6, rtol=1e-5),
                 res.grads, ref)


MODS = {
    2: {"audio": (6,), "visual": (9,)},
    3: {"a": (6,), "b": (5, 4), "c": (8, 8, 1)},
    6: {f"m{i}": (3 + i,) for i in range(6)},
}


@pytest.mark.parametrize("num", [2, 3, 6])
@pytest.mark.parametrize("backward", ["vmap", "unrolled"])
def test_structured_equals_separate_grads(num, backward):
  model, params, loss, x, y = _model_and_loss(MODS[num])
  objectives = ("fused",) + model.names
  res = jax.jit(lambda p: mmbal.objective_grads(
      loss, p, x, y, objectives=objectives, labels=labels_for(model, p), backward=backward))(params)
  assert res.values.shape == (num + 1,)
  _assert_equals_separate_grads(res, loss, params, x, y)


def test_split_head_supports_include_shared():
  model, params, loss, x, y = _model_and_loss(MODS[2], unimodal="split_head")
  res = mmbal.objective_grads(loss, params, x, y, objectives=("fused",) + model.names,
                              labels=labels_for(model, params), supports=model.objective_supports())
  _assert_equals_separate_grads(res, loss, params, x, y)


def test_without_labels_matches_jacrev():
  model, params, loss, x, y = _model_and_loss(MODS[2], fusion="attention")
  res = mmbal.objective_grads(loss, params, x, y)
  ref = jax.jacrev(loss)(params, x, y)
  jax.tree.map(lambda g, r: np.testing.assert_allclose(g, r, atol=2e-6, rtol=1e-5), res.grads, ref)


def test_finite_for_zero_and_huge_losses():
  params = {"w": jnp.zeros(3)}
  fn = lambda p: jnp.stack([jnp.sum(p["w"]) * 0.0, 1e30 * jnp.sum(p["w"])])
  res = mmbal.objective_grads(fn, params)
  assert np.isfinite(np.asarray(res.grads["w"])).all()
  np.testing.assert_allclose(res.grads["w"][0], 0.0)


def test_bad_inputs_raise_clear_errors():
  params = {"w": jnp.ones(2)}
  with pytest.raises(ValueError, match="vector of K losses"):
    mmbal.objective_grads(lambda p: jnp.sum(p["w"]), params)
  with pytest.raises(ValueError, match="objectives must name"):
    mmbal.objective_grads(lambda p: p["w"], params, labels={"w": "a"}, objectives=("a",))
  with pytest.raises(ValueError, match="backward"):
    mmbal.objective_grads(lambda p: p["w"], params, backward="loop")


def test_sharded_inputs_under_jit(devices):
  model, params, loss, x, y = _model_and_loss(MODS[6])
  mesh = make_mesh(data=4, model=2)
  data = NamedSharding(mesh, P("data"))
  x = jax.device_put(x, data)
  y = jax.device_put(y, data)
  params = jax.device_put(params, NamedSharding(mesh, P()))
  labels = labels_for(model, params)
  fn = jax.jit(lambda p, x, y: mmbal.objective_grads(
      loss, p, x, y, objectives=("fused",) + model.names, labels=labels))
  res = fn(params, x, y)
  ref = jax.jit(jax.grad(lambda p: loss(p, x, y)[2]))(params)
  jax.tree.map(lambda g, r: np.testing.assert_allclose(g[2], r, atol=2e-6, rtol=1e-5), res.grads, ref)
  assert all(leaf.sharding.is_fully_replicated for leaf in jax.tree.leaves(res.grads))
