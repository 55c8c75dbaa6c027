"""Loss-side methods (MNL, PMR) and MLA's pieces: hand-computed cases and invariants.

Expected numbers are worked out by hand in the comments, never by calling the code under test.
"""
import math

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

from mmbal import objectives, scores, transforms
from mmbal.models import MultimodalClassifier
from mmbal.train.alternating import make_alternating_step
from mmbal.train.step import TrainState

LN2, LN3 = math.log(2.0), math.log(3.0)


def _close(actual, expected, rtol=1e-5, atol=1e-6):
  np.testing.assert_allclose(np.asarray(actual), expected, rtol=rtol, atol=atol)


# ---------------------------------------------------------------- MNL

# One sample, y = 0. Modality 0: logits [ln2, 0, 0] -> p = [1/2, 1/4, 1/4], margin ln2.
# Modality 1: logits [0, 0, 0] -> p = [1/3] * 3, margin 0. Modality 0 dominates on both
# criteria, so modality 1 is guided: -sum_{c != 0} p^0_c log p^1_c = 2 * 1/4 * ln3 = ln3 / 2.
GUIDED = jnp.array([[[LN2, 0.0, 0.0]], [[0.0, 0.0, 0.0]]])
Y0 = jnp.array([0])


def test_mnl_paper_form_hand_computed():
  loss, dominant = objectives.negative_learning(GUIDED, Y0, weight=0.7, normalize="per_sample")
  assert dominant.tolist() == [0]
  _close(loss, 0.7 * LN3 / 2)


def test_mnl_default_scale_is_the_released_codes():
  """The released code's guidance term, transcribed: ``weight * mean over B x C`` of
  ``-sg(p^d_c) log p^m_c`` on the non-target classes. Here B = 1, C = 3: the two non-target
  entries are 1/4 ln3 each, so 0.7 * (ln3 / 2) / 3; ``per_sample`` is C = 3 times that."""
  loss, _ = objectives.negative_learning(GUIDED, Y0, weight=0.7)
  _close(loss, 0.7 * (LN3 / 2) / 3)
  with pytest.raises(ValueError, match="normalize must be one of"):
    objectives.negative_learning(GUIDED, Y0, normalize="per_batch")


def test_mnl_released_code_form_adds_weak_ce_and_divides_by_classes():
  # [-log p^1_y + 0.7 * ln3 / 2] / C = (ln3 + 0.35 ln3) / 3 = 0.45 ln3
  loss, _ = objectives.negative_learning(GUIDED, Y0, weight=0.7, released_code=True)
  _close(loss, 0.45 * LN3)


def test_mnl_only_the_weak_modality_receives_gradient():
  grads = jax.grad(lambda z: objectives.negative_learning(z, Y0, weight=1.0,
                                                          normalize="per_sample")[0])(GUIDED)
  np.testing.assert_array_equal(np.asarray(grads[0]), 0.0)     # teacher: stop-gradient
  # d/dz^1 of -sum_c q_c log softmax(z^1)_c with q = [0, 1/4, 1/4]: (sum q) p - q
  _close(grads[1, 0], [0.5 / 3, 0.5 / 3 - 0.25, 0.5 / 3 - 0.25])


def test_mnl_no_guidance_where_margin_and_confidence_disagree():
  # Modality 0: [1, 0, 0]: margin 1, p_y = e / (e + 2) = 0.576.
  # Modality 1: [3, 2.5, -5]: margin 0.5, p_y = e^3 / (e^3 + e^2.5 + e^-5) = 0.622.
  z = jnp.array([[[1.0, 0.0, 0.0]], [[3.0, 2.5, -5.0]]])
  loss, dominant = objectives.negative_learning(z, Y0)
  assert dominant.tolist() == [-1]
  assert float(loss) == 0.0


def test_mnl_three_modalities_every_weak_one_is_guided_and_batch_averaged():
  # Sample 0 as GUIDED plus a third modality equal to modality 1 (both guided: ln3/2 each);
  # sample 1 undecided (contributes 0). Mean over B = 2: (ln3 / 2 * 2 + 0) / 2 = ln3 / 2.
  z = jnp.array([[[LN2, 0.0, 0.0], [1.0, 0.0, 0.0]],
                 [[0.0, 0.0, 0.0], [3.0, 2.5, -5.0]],
                 [[0.0, 0.0, 0.0], [-9.0, 0.0, 0.0]]])
  loss, dominant = objectives.negative_learning(z, jnp.array([0, 0]), weight=1.0,
                                                normalize="per_sample")
  assert dominant.tolist() == [0, -1]
  _close(loss, LN3 / 2)


def test_confidence_margin_competitor_from_fused_logits():
  # Own competitor of [2, 1, 0] with y=0 is class 1 (margin 1); the fused logits
  # [0, 0, 5] name class 2 for everyone (margin 2).
  z = jnp.array([[[2.0, 1.0, 0.0]]])
  _close(scores.confidence_margins(z, Y0), [[1.0]])
  _close(scores.confidence_margins(z, Y0, jnp.array([[0.0, 0.0, 5.0]])), [[2.0]])


def test_mnl_finite_for_extreme_logits():
  z = jnp.array([[[1e30, -1e30, 0.0]], [[0.0, 0.0, 0.0]]])
  loss, grads = jax.value_and_grad(lambda z: objectives.negative_learning(z, Y0)[0])(z)
  assert np.isfinite(float(loss)) and np.isfinite(np.asarray(grads)).all()


# ---------------------------------------------------------------- PMR

def _pmr_case():
  """1-D features at 0; prototypes placed so the target probabilities are 0.4 and 0.6.

  Modality a: distances to classes (0, 1) are (1 + ln1.5, 1): softmax(-d)_0 = 1 / (1 + 1.5) = 0.4.
  Modality b: distances (1, 1 + ln1.5): softmax(-d)_0 = 1.5 / 2.5 = 0.6.
  """
  far = 1.0 + math.log(1.5)
  features = jnp.zeros((2, 1, 1))
  prototypes = jnp.array([[[far], [1.0]], [[1.0], [far]]])
  return features, jnp.array([0]), prototypes


def test_prototype_logits_are_negative_euclidean_distances():
  # 3-4-5 triangle: feature (3, 4), prototypes (0, 0) and (3, 0) -> distances 5 and 4.
  sim = objectives.prototype_logits(jnp.array([[[3.0, 4.0]]]), jnp.array([[[0.0, 0.0], [3.0, 0.0]]]))
  _close(sim, [[[-5.0, -4.0]]])


def test_pmr_continuous_coefficient_hand_computed():
  # rho_a = 0.6 / 0.4 = 1.5 -> coef_a = clip(0.5, 0, 1) = 0.5; b leads: coef_b = 0.
  # loss = 0.5 * -ln 0.4
  out = objectives.prototype_rebalance(*_pmr_case())
  _close(out.scores, [0.4, 0.6])
  _close(out.coefficients, [0.5, 0.0])
  _close(out.loss, -0.5 * math.log(0.4))


def test_pmr_binary_coefficient_and_entropy_regulariser():
  out = objectives.prototype_rebalance(*_pmr_case(), alpha=2.0, coefficient="binary")
  _close(out.coefficients, [2.0, 0.0])
  _close(out.loss, -2.0 * math.log(0.4))
  # Entropy of the leader's prototype distribution [0.6, 0.4]: H = -(0.6 ln0.6 + 0.4 ln0.4);
  # loss = 0.5 * -ln0.4 - 0.1 * 0.5 * H
  h = -(0.6 * math.log(0.6) + 0.4 * math.log(0.4))
  out = objectives.prototype_rebalance(*_pmr_case(), entropy_weight=0.1)
  _close(out.loss, -0.5 * math.log(0.4) - 0.05 * h)


def test_pmr_gradient_flows_to_features_not_to_coefficients():
  f, y, c = _pmr_case()
  # Prototypes on both sides of the 1-D feature, so the distances move in opposite directions.
  c = c.at[0, 1, 0].set(-1.0)
  out = objectives.prototype_rebalance(f, y, c)
  assert float(out.coefficients[0]) > 0 and float(out.coefficients[1]) == 0
  g = jax.grad(lambda f: objectives.prototype_rebalance(f, y, c).loss)(f)
  assert float(g[0].sum()) != 0.0          # the lagging modality is pulled
  np.testing.assert_array_equal(np.asarray(g[1]), 0.0)   # the leader (coef 0) is not
  # Feature exactly on a prototype: finite.
  g = jax.grad(lambda f: objectives.prototype_rebalance(f, y, c).loss)(jnp.ones((2, 1, 1)))
  assert np.isfinite(np.asarray(g)).all()


def test_prototype_memory_window_and_ema():
  # 4 steps per epoch, fraction 0.5 -> the window is steps 0-1 of each epoch; momentum 0.25.
  tx = objectives.prototype_memory(1, 3, 1, steps_per_epoch=4, fraction=0.5, momentum=0.25)
  state = tx.init(None)
  feed = lambda state, feats, labels: tx.update(
      {}, state, features=jnp.array(feats, jnp.float32)[None, :, None], labels=jnp.array(labels))[1]
  state = feed(state, [1.0, 3.0], [0, 0])
  assert not bool(state.seen.any())            # not ready before the window closes
  state = feed(state, [5.0, 10.0], [0, 1])     # class 0: mean(1, 3, 5) = 3; class 1: 10
  _close(state.prototypes[0, :, 0], [3.0, 10.0, 0.0])
  assert state.seen.tolist() == [True, True, False]
  state = feed(feed(state, [100.0], [0]), [100.0], [0])   # steps 2-3: outside the window
  _close(state.prototypes[0, :, 0], [3.0, 10.0, 0.0])
  state = feed(feed(state, [7.0], [0]), [9.0], [2])       # epoch 1's window
  # class 0: 0.75 * 7 + 0.25 * 3 = 6; class 1 absent: kept; class 2 first seen: 9
  _close(state.prototypes[0, :, 0], [6.0, 10.0, 9.0])
  assert int(state.step) == 6


# ---------------------------------------------------------------- MLA

def test_owm_projection_hand_computed():
  # D = 2. The first update passes through. Then r = (1, 0), progress 0 -> alpha = 0.1:
  # k = P r = (1, 0), r.k = 1, P' = I - diag(1, 0) / 1.1 = diag(1/11, 1), ||P'||_F = sqrt(1/121 + 1).
  tx = transforms.owm_projection({"kernel": True, "bias": False}, 2)
  grads = {"kernel": jnp.array([[1.0, 2.0], [3.0, 4.0]]), "bias": jnp.array([5.0, 6.0])}
  state = tx.init(None)
  out, state = tx.update(grads, state, feature_mean=jnp.array([1.0, 0.0]), progress=0.0)
  _close(out["kernel"], grads["kernel"])
  out, state = tx.update(grads, state, feature_mean=jnp.array([1.0, 0.0]), progress=0.0)
  norm = math.sqrt(1 / 121 + 1)
  _close(out["kernel"], [[1 / 11 / norm, 2 / 11 / norm], [3 / norm, 4 / norm]])
  _close(out["bias"], [5.0, 6.0])
  _close(state.projector, [[1 / 11 / norm, 0.0], [0.0, 1 / norm]])
  add = transforms.owm_projection({"kernel": True, "bias": False}, 2, mode="add")
  s = add.init(None)
  s = add.update(grads, s, feature_mean=jnp.array([1.0, 0.0]))[1]
  out, _ = add.update(grads, s, feature_mean=jnp.array([1.0, 0.0]))
  _close(out["kernel"], [[1 + 1 / 11 / norm, 2 + 2 / 11 / norm], [3 + 3 / norm, 4 + 4 / norm]])


def test_late_entropy_fusion_hand_computed():
  # z_a = [0, 0]: H = ln2. z_b = [ln3, 0]: p = (3/4, 1/4), H = -(3/4 ln 3/4 + 1/4 ln 1/4).
  # lambda = softmax(-H): lambda_b = 1 / (1 + exp(H_b - ln2)); fused = lambda_b * [ln3, 0].
  model = MultimodalClassifier({"a": (2,), "b": (2,)}, 2, feature_dim=4, hidden_dim=4,
                               fusion="late_entropy", unimodal="shared_head", rngs=nnx.Rngs(0))
  h_b = -(0.75 * math.log(0.75) + 0.25 * math.log(0.25))
  lam_b = 1.0 / (1.0 + math.exp(h_b - LN2))
  z = jnp.array([[[0.0, 0.0]], [[LN3, 0.0]]])
  _close(model.fuse_logits(z), [[lam_b * LN3, 0.0]])
  _close(model.fuse_logits(z, jnp.array([[1.0, 0.0]])), [[0.0, 0.0]])   # only a present
  _close(model.fuse_logits(z, jnp.array([[0.0, 0.0]])), [[0.0, 0.0]])   # none: zeros


def test_alternating_step_equals_sequential_updates():
  """One compiled step == modality a's SGD step on (encoder a, head), then b's at the new head."""
  rng = np.random.default_rng(0)
  params = {"encoders": {n: jnp.asarray(rng.normal(size=(3, 2)), jnp.float32) for n in "ab"},
            "head": {"kernel": jnp.asarray(rng.normal(size=(2, 4)), jnp.float32),
                     "bias": jnp.zeros((4,))}}
  batch = {"a": jnp.asarray(rng.normal(size=(5, 3)), jnp.float32),
           "b": jnp.asarray(rng.normal(size=(5, 3)), jnp.float32),
           "label": jnp.array([0, 1, 2, 3, 0])}

  def forward(p, name, x):
    h = x @ p["encoders"][name]
    return h @ p["head"]["kernel"] + p["head"]["bias"], h

  def ce(p, name):
    return optax.softmax_cross_entropy_with_integer_labels(forward(p, name, batch[name])[0],
                                                           batch["label"]).mean()

  lr = 0.1
  expected = params
  for name in "ab":   # the reference: plain sequential SGD steps, Python-side
    g = jax.grad(ce)(expected, name)
    expected = jax.tree.map(lambda p, g: p - lr * g, expected, g)
  encoder_tx, head_tx = optax.sgd(lr), optax.sgd(lr)
  step = jax.jit(make_alternating_step(forward, ("a", "b"), encoder_tx, head_tx,
                                       steps_per_epoch=10, fuse=lambda z: z.mean(0)))
  state = TrainState(step=jnp.zeros((), jnp.int32), params=params,
                     opt_state=(encoder_tx.init(params["encoders"]), head_tx.init(params["head"])),
                     best_params=params, best_score=jnp.float32(-1), key=jax.random.PRNGKey(0),
                     loss_sum=jnp.zeros(3), loss_count=jnp.zeros((), jnp.int32))
  new, metrics = step(state, batch)
  jax.tree.map(lambda a, b: _close(a, b, rtol=1e-5), new.params, expected)
  _close(metrics["losses"][1], float(ce(params, "a")))   # a's loss at the initial head
  assert metrics["unimodal_correct"].shape == (2,)


@pytest.mark.parametrize("scale", [0.0, 1e30])
def test_owm_projection_finite_for_zero_and_huge_features(scale):
  tx = transforms.owm_projection({"kernel": True}, 3)
  grads = {"kernel": jnp.full((3, 2), scale if scale else 1.0)}
  state = tx.init(None)
  for _ in range(3):
    out, state = tx.update(grads, state, feature_mean=jnp.full((3,), scale))
  assert np.isfinite(np.asarray(out["kernel"])).all()
  assert np.isfinite(np.asarray(state.projector)).all()


def test_prototype_memory_sharded_batch_matches_single_device():
  from jax.sharding import AxisType, NamedSharding, PartitionSpec as P
  mesh = jax.make_mesh((8,), ("data",), axis_types=(AxisType.Auto,))
  rng = np.random.default_rng(0)
  feats = jnp.asarray(rng.normal(size=(2, 16, 4)), jnp.float32)
  labels = jnp.asarray(rng.integers(0, 3, 16))
  tx = objectives.prototype_memory(2, 3, 4, steps_per_epoch=2, fraction=0.5)
  update = jax.jit(lambda s, f, y: tx.update({}, s, features=f, labels=y)[1])
  single = update(tx.init(None), feats, labels)
  sharded = update(tx.init(None), jax.device_put(feats, NamedSharding(mesh, P(None, "data"))),
                   jax.device_put(labels, NamedSharding(mesh, P("data"))))
  _close(sharded.prototypes, np.asarray(single.prototypes))
  # hand check of one class mean
  _close(single.prototypes[0, 1], np.asarray(feats[0][np.asarray(labels) == 1]).mean(0))
