"""Tests of mmbal.transforms.sharpness (SAM, M-SAM, Shapley helpers). Expected numbers are
computed by hand in the comments."""
import math

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from jax.sharding import AxisType, NamedSharding, PartitionSpec as P

from mmbal.labels import SHARED
from mmbal.transforms.modulation import ogm_ge
from mmbal.transforms.sharpness import (MsamState, SamState, modality_shapley, msam, sam,
                                        subset_values)

A = jnp.array([[2.0, 1.0], [1.0, 2.0]])


def _quad_grad(params):
  # f(theta) = 1/2 theta^T A theta  ->  grad = A theta
  return {"w": A @ params["w"]}


def _identity(params):
  return params


def _np(tree):
  return jax.tree.map(np.asarray, tree)


def _close(a, b, **kw):
  jax.tree.map(lambda x, y: np.testing.assert_allclose(np.asarray(x), np.asarray(y), **kw), a, b)


# --------------------------------------------------------------------------- SAM


def test_sam_l2_radius_and_point_and_params_restored():
  params = {"a": jnp.array([1.0, 2.0]), "b": jnp.array([[3.0]])}
  grads = {"a": jnp.array([3.0, 0.0]), "b": jnp.array([[4.0]])}
  before = _np(params)
  seen = []

  def grad_fn(p):
    seen.append(p)
    return p            # the "gradient" is the point itself: out = params + eps
  tx = sam(rho=0.5)
  out, state = tx.update(grads, tx.init(params), params, grad_fn=grad_fn)
  # ||g|| = sqrt(9 + 16) = 5 -> eps = 0.5 * g / 5 = a: [0.3, 0], b: [[0.4]]; ||eps|| = 0.5
  _close(out, {"a": [1.3, 2.0], "b": [[3.4]]}, rtol=1e-6)
  _close(seen[0], {"a": [1.3, 2.0], "b": [[3.4]]}, rtol=1e-6)
  assert len(seen) == 1
  _close(params, before, rtol=0, atol=0)              # the caller's params are untouched
  assert isinstance(state, SamState) and int(state.count) == 1
  np.testing.assert_allclose(float(state.perturbation_norm), 0.5, rtol=1e-6)
  eps = jax.tree.map(lambda o, p: o - p, out, params)
  norm = math.sqrt(sum(float(jnp.sum(e ** 2)) for e in jax.tree.leaves(eps)))
  assert norm == pytest.approx(0.5, rel=1e-6)


def test_sam_sign_variant():
  params = {"a": jnp.array([1.0, 2.0]), "b": jnp.array([[3.0]])}
  grads = {"a": jnp.array([3.0, -2.0]), "b": jnp.array([[0.0]])}
  tx = sam(rho=0.1, normalize="sign")
  out, state = tx.update(grads, tx.init(params), params, grad_fn=_identity)
  # eps = 0.1 * sign(g) = a: [0.1, -0.1], b: [[0]]; ||eps|| = 0.1 * sqrt(2)
  _close(out, {"a": [1.1, 1.9], "b": [[3.0]]}, rtol=1e-6)
  np.testing.assert_allclose(float(state.perturbation_norm), 0.1 * math.sqrt(2), rtol=1e-6)


def test_sam_quadratic_by_hand():
  params = {"w": jnp.array([1.0, 0.0])}
  g = _quad_grad(params)                    # A theta = (2, 1), ||.|| = sqrt(5)
  tx = sam(rho=math.sqrt(5.0))
  out, _ = tx.update(g, tx.init(params), params, grad_fn=jax.grad(
      lambda p: 0.5 * p["w"] @ A @ p["w"]))
  # eps = sqrt5 * (2, 1) / sqrt5 = (2, 1); theta + eps = (3, 1); A (3, 1) = (7, 5)
  _close(out, {"w": [7.0, 5.0]}, rtol=1e-6)


def test_sam_zero_gradient_no_perturbation():
  params = {"w": jnp.array([1.0, 0.0])}
  g = {"w": jnp.zeros(2)}
  for normalize in ("l2", "sign"):
    tx = sam(rho=0.5, normalize=normalize)
    out, state = tx.update(g, tx.init(params), params, grad_fn=_quad_grad)
    _close(out, {"w": [2.0, 1.0]}, rtol=1e-6)          # A (1, 0), at params themselves
    assert float(state.perturbation_norm) == 0.0
    assert all(np.isfinite(np.asarray(x)).all() for x in jax.tree.leaves(out))


def test_sam_huge_and_tiny_gradients_stay_finite():
  params = {"w": jnp.array([1.0, 0.0])}
  # eps = rho * (3, 4) / 5 = (0.6, 0.8) regardless of the scale (no overflow / underflow) ...
  for scale, eps in ((1e30, 1e-12), (1e-30, 0.0)):
    g = {"w": jnp.array([3.0, 4.0]) * scale}
    tx = sam(rho=1.0, eps=eps)
    out, state = tx.update(g, tx.init(params), params, grad_fn=_identity)
    _close(out, {"w": [1.6, 0.8]}, rtol=1e-5)
    np.testing.assert_allclose(float(state.perturbation_norm), 1.0, rtol=1e-6)
  # ... but a norm (5e-30) below the default eps = 1e-12 counts as zero: no perturbation
  tx = sam(rho=1.0)
  out, state = tx.update({"w": jnp.array([3e-30, 4e-30])}, tx.init(params), params,
                         grad_fn=_identity)
  _close(out, {"w": [1.0, 0.0]}, rtol=0, atol=0)
  assert float(state.perturbation_norm) == 0.0


def test_sam_stacked_uses_summed_direction():
  params = {"w": jnp.array([1.0, 1.0])}
  stacked = {"w": jnp.array([[3.0, 0.0], [0.0, 4.0]])}      # K = 2 objectives
  tx = sam(rho=1.0)
  out, _ = tx.update(stacked, tx.init(params), params,
                     grad_fn=lambda p: {"w": jnp.stack([p["w"], 2 * p["w"]])})
  # sum_k g_k = (3, 4), ||.|| = 5 -> eps = (0.6, 0.8); theta + eps = (1.6, 1.8)
  _close(out, {"w": [[1.6, 1.8], [3.2, 3.6]]}, rtol=1e-6)


def test_sam_errors():
  params = {"w": jnp.ones(2)}
  tx = sam()
  with pytest.raises(ValueError, match="grad_fn"):
    tx.update(params, tx.init(params), params)
  with pytest.raises(ValueError, match="params"):
    tx.update(params, tx.init(params), None, grad_fn=_identity)
  with pytest.raises(ValueError, match="tree structure"):
    tx.update(params, tx.init(params), params, grad_fn=lambda p: {"v": p["w"]})
  with pytest.raises(ValueError, match="normalize"):
    sam(normalize="linf")


def test_sam_chain_with_extra_args():
  labels = {"a": "a", "b": "b", "s": SHARED}
  params = {"a": jnp.array([1.0, 0.0]), "b": jnp.array([0.0, 2.0]), "s": jnp.array([2.0, 2.0])}
  grads = {"a": jnp.array([0.0, 3.0]), "b": jnp.array([0.0, 0.0]), "s": jnp.array([4.0, 0.0])}
  tx = optax.chain(sam(rho=1.0), ogm_ge(labels, alpha=1.0, noise=False), optax.sgd(0.5))
  state = tx.init(params)
  out, state = jax.jit(lambda g, s, p: tx.update(
      g, s, p, grad_fn=_identity, confidence={"a": 2.0, "b": 1.0}, key=jax.random.key(0),
      unrelated=3))(grads, state, params)
  # ||g|| = 5 -> eps: a (0, 0.6), b 0, s (0.8, 0); grad_fn = identity -> point
  # a (1, 0.6), b (0, 2), s (2.8, 2). OGM: rho_a = 2/1 > 1 -> a scaled by 1 - tanh(2);
  # rho_b = 1/2 -> b unchanged; shared unchanged. sgd(0.5): updates = -0.5 * that.
  k = 1 - math.tanh(2.0)
  _close(out, {"a": [-0.5 * k, -0.3 * k], "b": [0.0, -1.0], "s": [-1.4, -1.0]}, rtol=1e-5)
  assert int(state[0].count) == 1


# --------------------------------------------------------------------------- Shapley


def test_modality_shapley_two_modalities():
  # subsets by bitmask: {} , {a}, {b}, {a, b}
  v = jnp.array([0.1, 0.5, 0.3, 0.9])
  phi = modality_shapley(v, ("a", "b"))
  # phi_a = ((0.9 - 0.3) + (0.5 - 0.1)) / 2 = 0.5; phi_b = ((0.9 - 0.5) + (0.3 - 0.1)) / 2 = 0.3
  np.testing.assert_allclose(float(phi["a"]), 0.5, rtol=1e-6)
  np.testing.assert_allclose(float(phi["b"]), 0.3, rtol=1e-6)
  assert float(phi["a"] + phi["b"]) == pytest.approx(0.9 - 0.1, rel=1e-6)


def test_modality_shapley_three_modalities():
  # v(S) = 0.5 + sum_{m in S} c_m + 0.6 [a, b in S], c = (1, 2, 3): the interaction is
  # shared equally by a and b -> phi = (1.3, 2.3, 3.0); sum = 6.6 = v(all) - v({}) = 7.1 - 0.5
  c = np.array([1.0, 2.0, 3.0])
  v = []
  for s in range(8):
    members = [(s >> m) & 1 for m in range(3)]
    v.append(0.5 + float(np.dot(members, c)) + (0.6 if members[0] and members[1] else 0.0))
  phi = modality_shapley(jnp.array(v), ("a", "b", "c"))
  _close(phi, {"a": 1.3, "b": 2.3, "c": 3.0}, rtol=1e-6)
  # only the full set has value 1 -> 1/3 each
  phi = modality_shapley(jnp.array([0.0] * 7 + [1.0]), ("a", "b", "c"))
  _close(phi, {"a": 1 / 3, "b": 1 / 3, "c": 1 / 3}, rtol=1e-6)
  with pytest.raises(ValueError, match="2\\^M"):
    modality_shapley(jnp.zeros(4), ("a", "b", "c"))


def test_subset_values_accuracy_and_loss():
  labels = jnp.array([0, 1])
  logits = jnp.array([
      [[0.0, 0.0], [0.0, 0.0]],       # {}: argmax ties -> class 0: 1 of 2 right; CE = log 2
      [[1.0, 0.0], [1.0, 0.0]],       # {a}: predicts 0, 0 -> 1/2
      [[0.0, 1.0], [0.0, 1.0]],       # {b}: predicts 1, 1 -> 1/2
      [[2.0, 0.0], [0.0, 2.0]],       # {a, b}: both right -> 1
  ])
  _close(subset_values(logits, labels), [0.5, 0.5, 0.5, 1.0], rtol=1e-6)
  loss = subset_values(logits, labels, value="loss")
  # CE([1, 0], 0) = log(1 + e^-1), CE([1, 0], 1) = log(1 + e)
  l1 = -(math.log1p(math.exp(-1)) + math.log1p(math.e)) / 2
  l3 = -math.log1p(math.exp(-2))
  _close(loss, [-math.log(2), l1, l1, l3], rtol=1e-5)
  # no gradient flows through the values
  g = jax.grad(lambda z: subset_values(z, labels, value="loss").sum())(logits)
  assert float(jnp.abs(g).sum()) == 0.0


# --------------------------------------------------------------------------- M-SAM


def test_msam_dominant_and_mix_by_hand():
  params = {"w": jnp.array([1.0, 0.0])}
  g = _quad_grad(params)                                   # (2, 1)
  tx = msam(("a", "b"), rho=math.sqrt(5.0))
  out, state = tx.update(g, tx.init(params), params, grad_fn=_quad_grad,
                         shapley_values={"a": 0.2, "b": 0.6}, key=jax.random.key(0))
  # v -> (0.25, 0.75), d = b, v_d = 0.75; eps = (2, 1) as in the SAM quadratic test,
  # grad at theta + eps = (7, 5); out = 0.75 (7, 5) + 0.25 (2, 1) = (5.75, 4.0)
  _close(out, {"w": [5.75, 4.0]}, rtol=1e-6)
  assert isinstance(state, MsamState)
  assert int(state.dominant) == 1
  _close(state.dominant_onehot, {"a": 0.0, "b": 1.0})
  _close(state.shapley, {"a": 0.25, "b": 0.75}, rtol=1e-6)
  np.testing.assert_allclose(float(state.dominant_weight), 0.75, rtol=1e-6)


def test_msam_three_modalities_and_guard():
  params = {"w": jnp.array([1.0, 0.0])}
  g = _quad_grad(params)
  tx = msam(("a", "b", "c"), rho=math.sqrt(5.0))
  out, state = tx.update(g, tx.init(params), params, grad_fn=_quad_grad,
                         shapley_values={"a": 0.5, "b": 0.3, "c": 0.2})
  # sum 1 -> v_d = 0.5 (a): 0.5 (7, 5) + 0.5 (2, 1) = (4.5, 3)
  _close(out, {"w": [4.5, 3.0]}, rtol=1e-6)
  assert int(state.dominant) == 0
  # non-positive sum -> uniform v, v_d = 1/3, d = argmax raw = b:
  # (1/3)(7, 5) + (2/3)(2, 1) = (11/3, 7/3)
  out, state = tx.update(g, state, params, grad_fn=_quad_grad,
                         shapley_values={"a": -0.5, "b": -0.1, "c": -0.2})
  _close(out, {"w": [11 / 3, 7 / 3]}, rtol=1e-6)
  assert int(state.dominant) == 1 and int(state.count) == 2
  _close(state.shapley, {"a": 1 / 3, "b": 1 / 3, "c": 1 / 3}, rtol=1e-6)
  # all-zero values (e.g. equal accuracies) -> the same fallback, finite
  out, _ = tx.update(g, state, params, grad_fn=_quad_grad,
                     shapley_values={"a": 0.0, "b": 0.0, "c": 0.0})
  _close(out, {"w": [11 / 3, 7 / 3]}, rtol=1e-6)
  with pytest.raises(ValueError, match="lacks"):
    tx.update(g, state, params, grad_fn=_quad_grad, shapley_values={"a": 1.0})


def test_msam_from_subset_logits():
  params = {"w": jnp.array([1.0, 0.0])}
  g = _quad_grad(params)
  labels = jnp.array([0, 1])
  logits = jnp.array([[[0.0, 0.0], [0.0, 0.0]],    # {}: acc 0.5
                      [[0.0, 1.0], [0.0, 1.0]],    # {a}: 0.5
                      [[2.0, 0.0], [0.0, 2.0]],    # {b}: 1
                      [[2.0, 0.0], [0.0, 2.0]]])   # {a, b}: 1
  # phi_a = ((1 - 1) + (0.5 - 0.5)) / 2 = 0; phi_b = ((1 - 0.5) + (1 - 0.5)) / 2 = 0.5
  # -> normalised (0, 1): d = b, v_d = 1: plain SAM, (7, 5)
  tx = msam(("a", "b"), rho=math.sqrt(5.0))
  out, state = tx.update(g, tx.init(params), params, grad_fn=_quad_grad,
                         subset_logits=logits, targets=labels)
  _close(out, {"w": [7.0, 5.0]}, rtol=1e-6)
  assert int(state.dominant) == 1
  with pytest.raises(ValueError, match="shapley_values"):
    tx.update(g, tx.init(params), params, grad_fn=_quad_grad)


# --------------------------------------------------------------------------- sharding


def _mesh():
  return jax.make_mesh((4, 2), ("data", "model"), axis_types=(AxisType.Auto,) * 2)


def _sharded_problem():
  params = {"w": jnp.arange(32, dtype=jnp.float32).reshape(8, 4) / 10,
            "b": jnp.linspace(-1.0, 1.0, 4)}
  grads = jax.tree.map(lambda p: jnp.cos(p) + 0.1, params)
  return params, grads


def _grad_fn(p):
  return jax.tree.map(lambda x: jnp.sin(x) * 2.0, p)


@pytest.mark.parametrize("method", ["sam", "msam"])
def test_sharding_preserved_and_same_on_1_and_8_devices(devices, method):
  mesh = _mesh()
  params, grads = _sharded_problem()
  tx = sam(rho=0.3) if method == "sam" else msam(("a", "b"), rho=0.3)
  extra = dict(grad_fn=_grad_fn, shapley_values={"a": 0.3, "b": 0.1}, confidence={"a": 1.0})
  step = jax.jit(lambda g, s, p: tx.update(g, s, p, **extra))

  one = jax.device_put((grads, params), devices[0])
  ref, _ = step(one[0], tx.init(one[1]), one[1])

  specs = {"w": P(None, "model"), "b": P()}
  shard = lambda t: jax.tree.map(lambda x, s: jax.device_put(x, NamedSharding(mesh, s)), t, specs)
  g8, p8 = shard(grads), shard(params)
  out, state = step(g8, tx.init(p8), p8)
  assert out["w"].sharding.is_equivalent_to(NamedSharding(mesh, P(None, "model")), 2), \
      out["w"].sharding
  assert len(out["w"].sharding.device_set) == 8
  _close(out, ref, rtol=1e-6, atol=1e-6)
  assert all(np.isfinite(np.asarray(x)).all() for x in jax.tree.leaves(state))


# --------------------------------------------------------------------------- end to end


def test_msam_train_step_with_one_vmapped_subset_forward():
  """The trainer's wiring: one vmapped forward over all 2^M present masks (empty set
  included) gives the loss (full-set logits) and the Shapley values; M-SAM + sgd step."""
  from flax import nnx

  from mmbal.models import MultimodalClassifier, split
  from mmbal.scores import subset_masks

  mods = {"a": (5,), "b": (3,)}
  names = tuple(mods)
  model = MultimodalClassifier(mods, 3, feature_dim=4, hidden_dim=8, rngs=nnx.Rngs(0))
  graphdef, params, rest = split(model)
  rng = np.random.default_rng(0)
  x = {m: jnp.asarray(rng.normal(size=(6,) + s), jnp.float32) for m, s in mods.items()}
  y = jnp.asarray(rng.integers(0, 3, 6))
  masks = jnp.asarray(subset_masks(2))                       # [4, 2], row 3 = all present

  def loss_fn(p):
    net = nnx.merge(graphdef, p, rest)
    subset_logits = jax.vmap(lambda m: net(x, present=jnp.broadcast_to(m, (6, 2))).logits)(masks)
    full = subset_logits[-1]
    loss = optax.softmax_cross_entropy_with_integer_labels(full, y).mean()
    return loss, subset_logits

  grad_fn = lambda p: jax.grad(lambda q: loss_fn(q)[0])(p)
  tx = optax.chain(msam(names, rho=0.05), optax.sgd(0.1))

  @jax.jit
  def step(p, s):
    (_, subset_logits), g = jax.value_and_grad(loss_fn, has_aux=True)(p)
    shapley = modality_shapley(subset_values(subset_logits, y, value="loss"), names)
    updates, s = tx.update(g, s, p, grad_fn=grad_fn, shapley_values=shapley)
    return optax.apply_updates(p, updates), s, shapley

  new_params, state, shapley = step(params, tx.init(params))
  assert all(np.isfinite(np.asarray(v)).all() for v in jax.tree.leaves((new_params, state)))
  assert jax.tree.structure(new_params) == jax.tree.structure(params)
  st = state[0]
  assert int(st.dominant) == int(np.argmax([float(shapley[n]) for n in names]))
  assert float(sum(st.shapley.values())) == pytest.approx(1.0, abs=1e-5) or \
      float(sum(shapley.values())) <= 1e-12


# ---- the ascent step moves only the selected parameters (issue: SAM perturbed the probes)


def test_sam_and_msam_perturb_only_the_selected_leaves_by_hand():
  """g_enc = (3, 4), ||g_enc|| = 5, rho = 0.5 -> eps_enc = (0.3, 0.4); the probe leaf, with a
  gradient 20x larger, is neither moved nor part of the norm."""
  params = {"enc": jnp.array([1.0, 2.0]), "probe": jnp.array([5.0])}
  grads = {"enc": jnp.array([3.0, 4.0]), "probe": jnp.array([100.0])}
  at = lambda p: p   # grad_fn returning the point it is called at: out = params + eps
  keep = {"enc": True, "probe": False}
  out, state = sam(rho=0.5, perturb=keep).update(grads, sam(rho=0.5).init(params), params,
                                                  grad_fn=at)
  np.testing.assert_allclose(out["enc"] - params["enc"], [0.3, 0.4], rtol=1e-6)
  np.testing.assert_array_equal(out["probe"], params["probe"])
  assert float(state.perturbation_norm) == pytest.approx(0.5)
  tx = msam(("a", "b"), rho=0.5, perturb=keep)   # v_d = 1: the update is the SAM gradient
  out, _ = tx.update(grads, tx.init(params), params, grad_fn=at,
                     shapley_values={"a": 1.0, "b": 0.0})
  np.testing.assert_allclose(out["enc"] - params["enc"], [0.3, 0.4], rtol=1e-6)
  np.testing.assert_array_equal(out["probe"], params["probe"])
  with pytest.raises(ValueError, match="perturb must be a tree of bools"):
    sam(perturb={"enc": True}).update(grads, sam().init(params), params, grad_fn=at)


@pytest.mark.parametrize("method", ["sam", "msam"])
def test_trainer_sam_leaves_the_probes_alone(method):
  """The trainer's SAM / M-SAM with probes (their shipped configs): the perturbation is exactly
  zero on every probe leaf and has norm rho over the rest."""
  from mmbal.modalities import Modality  # pylint: disable=import-outside-toplevel
  from mmbal.train import load_config  # pylint: disable=import-outside-toplevel
  from mmbal.train.run import build_parts  # pylint: disable=import-outside-toplevel
  c = load_config(f"configs/mfeat/{method}.py")
  c.model.hidden_dim, c.model.feature_dim = 8, 4
  assert c.model.unimodal == "probe"
  parts = build_parts(c, [Modality(n, (5,)) for n in c.data.modalities], 3,
                      task="classification", steps_per_epoch=2, total_steps=4)
  params, tx = parts.params, parts.method.transform
  grads = jax.tree.map(jnp.ones_like, params)
  extra = dict(shapley_values={n: 1.0 for n in c.data.modalities}) if method == "msam" else {}
  out, _ = tx.update(grads, tx.init(params), params, grad_fn=lambda p: p, **extra)
  rho = c.method[method].rho
  eps = jax.tree.map(lambda o, p: o - p, out, params)
  if method == "msam":   # out = v_d (theta + eps) + (1 - v_d) g with v_d = 1/M
    v_d = 1.0 / len(c.data.modalities)
    eps = jax.tree.map(lambda o, p, g: (o - (1 - v_d) * g) / v_d - p, out, params, grads)
  assert all(float(jnp.abs(e).max()) < 1e-6 for e in jax.tree.leaves(eps["unimodal_heads"]))
  rest = [e for k, v in eps.items() if k != "unimodal_heads" for e in jax.tree.leaves(v)]
  assert float(jnp.sqrt(sum(jnp.sum(e ** 2) for e in rest))) == pytest.approx(rho, rel=1e-4)


def test_msam_modality_decomposition_follows_the_dominant_modality():
  """g = (a: (3, 0), v: (0, 4), head: 0), rho = 1, grad_fn returning its point (out = theta + eps
  when v_d = 1). Literal form: eps = g / 5 whoever dominates. Modality form: a dominant ->
  eps only on a's leaves (g_a / 3 = (1, 0)); v dominant -> only on v's ((0, 1))."""
  params = {"a": jnp.array([1.0, 0.0]), "v": jnp.array([0.0, 1.0]), "head": jnp.array([1.0])}
  grads = {"a": jnp.array([3.0, 0.0]), "v": jnp.array([0.0, 4.0]), "head": jnp.array([0.0])}
  labels = {"a": "a", "v": "v", "head": SHARED}

  def eps(decomposition, dominant):
    tx = msam(("a", "v"), rho=1.0, decomposition=decomposition, labels=labels)
    values = {"a": float(dominant == "a"), "v": float(dominant == "v")}   # v_d = 1 either way
    out, _ = tx.update(grads, tx.init(params), params, grad_fn=lambda p: p, shapley_values=values)
    return jax.tree.map(lambda o, p: np.asarray(o - p), out, params)

  def close(actual, expected):
    for key, value in expected.items():
      np.testing.assert_allclose(actual[key], value, atol=1e-6)

  for dominant in ("a", "v"):   # the literal form ignores who dominates
    close(eps("scaled_loss", dominant), {"a": [0.6, 0.0], "v": [0.0, 0.8], "head": [0.0]})
  close(eps("modality", "a"), {"a": [1.0, 0.0], "v": [0.0, 0.0], "head": [0.0]})
  close(eps("modality", "v"), {"a": [0.0, 0.0], "v": [0.0, 1.0], "head": [0.0]})
  with pytest.raises(ValueError, match="needs labels"):
    msam(("a", "v"), decomposition="modality")
