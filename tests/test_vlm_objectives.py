"""InfoNCE alignment and the counterfactual-image hinge against hand-computed values."""
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mmbal.objectives import counterfactual_hinge, infonce_alignment, same_rows_targets

EYE = jnp.eye(2)


def test_infonce_identity_pairs():
  # v_i = t_i = e_i, tau = 0.5: s = diag(2, 2); each row -log(e^2 / (e^2 + e^0)) = log(1 + e^-2),
  # in both directions: loss = log(1 + e^-2) = 0.126928.
  want = math.log(1 + math.exp(-2))
  np.testing.assert_allclose(infonce_alignment(EYE, EYE, temperature=0.5), want, rtol=1e-6)
  # Features are L2-normalised first: scaled rows give the same loss, and so do 1e30 entries.
  scaled = jnp.array([[3.0, 0.0], [0.0, 0.5]])
  np.testing.assert_allclose(infonce_alignment(scaled, EYE * 1e30, temperature=0.5), want, rtol=1e-6)


def test_infonce_soft_targets_for_duplicate_captions():
  # v = e_1, e_2; both captions t = (1, 0) (duplicates, so targets = all ones); tau = 1.
  # s = v t^T = [[1, 1], [0, 0]].
  # v->t: rows [1, 1] and [0, 0] are uniform, targets (1/2, 1/2): each row log 2.
  # t->v: s^T rows are both [1, 0]; -(1/2 (1 - log(1+e)) + 1/2 (-log(1+e))) = log(1+e) - 1/2.
  # loss = (log 2 + log(1+e) - 1/2) / 2 = 0.753204.
  captions = jnp.array([[5, 7], [5, 7]])
  targets = same_rows_targets(captions)
  np.testing.assert_array_equal(targets, [[1, 1], [1, 1]])
  t = jnp.array([[1.0, 0.0], [1.0, 0.0]])
  want = (math.log(2) + math.log(1 + math.e) - 0.5) / 2
  np.testing.assert_allclose(infonce_alignment(EYE, t, temperature=1.0, targets=targets), want,
                             rtol=1e-6)
  np.testing.assert_array_equal(same_rows_targets(jnp.array([[1, 2], [1, 3], [1, 2]])),
                                [[1, 0, 1], [0, 1, 0], [1, 0, 1]])


@pytest.mark.parametrize("scale", [0.0, 1e30])
def test_infonce_finite_for_zero_and_huge(scale):
  v = jnp.array([[1.0, -2.0, 0.5], [0.0, 1.0, 1.0], [2.0, 0.0, -1.0]]) * scale
  t = jnp.array([[0.5, 1.0, 0.0], [1.0, 1.0, 1.0], [-1.0, 0.0, 2.0]]) * scale
  loss, grads = jax.value_and_grad(infonce_alignment, argnums=(0, 1))(v, t, temperature=0.1)
  assert np.isfinite(float(loss))
  assert all(np.isfinite(np.asarray(g)).all() for g in grads)
  if scale == 0.0:   # all similarities 0: uniform softmax, loss log B
    np.testing.assert_allclose(loss, math.log(3), rtol=1e-6)


def test_infonce_bad_inputs():
  with pytest.raises(ValueError, match=r"\[B, D\]"):
    infonce_alignment(EYE, jnp.ones((3, 2)))
  with pytest.raises(ValueError, match="temperature"):
    infonce_alignment(EYE, EYE, temperature=0.0)
  with pytest.raises(ValueError, match=r"targets must be \[2, 2\]"):
    infonce_alignment(EYE, EYE, targets=jnp.ones((3, 3)))


def test_counterfactual_hinge_hand_computed():
  a = jnp.array([-0.1, -2.0, -0.5])        # log p(y | own image, q)
  b = jnp.array([-0.5, -1.5, -3.0])        # log p(y | other image, q)
  differs = jnp.array([True, True, False])
  # pair 0: 1 - (-0.1 + 0.5) = 0.6; pair 1: 1 - (-2.0 + 1.5) = 1.5; pair 2 excluded.
  np.testing.assert_allclose(counterfactual_hinge(a, b, differs), (0.6 + 1.5) / 2, rtol=1e-6)
  # margin 0.3: relu(0.3 - 0.4) = 0 and 0.3 + 0.5 = 0.8 -> mean 0.4.
  np.testing.assert_allclose(counterfactual_hinge(a, b, differs, margin=0.3), 0.4, rtol=1e-6)
  assert float(counterfactual_hinge(a, b, jnp.zeros(3, bool))) == 0.0   # no pair: 0, not NaN
  # Zero log-probabilities: relu(1 - 0) = 1.
  np.testing.assert_allclose(counterfactual_hinge(jnp.zeros(2), jnp.zeros(2), jnp.ones(2)), 1.0)


def test_counterfactual_hinge_finite_for_extreme_log_probs():
  a = jnp.array([-3e38, 0.0, -1e30])
  b = jnp.array([0.0, -3e38, -1e30])
  value, grads = jax.value_and_grad(counterfactual_hinge, argnums=(0, 1))(a, b, jnp.ones(3))
  # 1 + 3e38, relu(1 - 3e38) = 0, 1: all finite.
  np.testing.assert_allclose(value, (1 + 3e38 + 0 + 1) / 3, rtol=1e-6)
  assert all(np.isfinite(np.asarray(g)).all() for g in grads)
  with pytest.raises(ValueError, match=r"\[B\] vectors"):
    counterfactual_hinge(a, b[:2], jnp.ones(3))
