"""Per-modality scores, checked on hand-computed cases."""
import jax.numpy as jnp
import numpy as np
import pytest

from mmbal import scores


def test_true_class_confidence_and_accuracy():
  # Modality a: logits favour the true class for example 0 only; b: uniform.
  logits = jnp.array([[[np.log(3.0), 0.0], [0.0, 0.0]],
                      [[0.0, 0.0], [0.0, 0.0]]])          # [M=2, B=2, C=2]
  labels = jnp.array([0, 1])
  conf = scores.true_class_confidence(logits, labels, ("a", "b"))
  np.testing.assert_allclose(conf["a"], 0.75 + 0.5)         # softmax(log 3, 0)[0] = 3/4
  np.testing.assert_allclose(conf["b"], 1.0)
  acc = scores.accuracy(logits, labels, ("a", "b"))
  np.testing.assert_allclose(acc["a"], 0.5)                  # ties break to class 0
  masked = scores.accuracy(logits, labels, ("a", "b"), mask=jnp.array([True, False]))
  np.testing.assert_allclose(masked["a"], 1.0)
  ce = scores.cross_entropy(logits, labels, ("a", "b"))
  np.testing.assert_allclose(ce["b"], np.log(2.0), rtol=1e-6)


def test_shapley_matrix_two_modalities_by_hand():
  # Subsets by bitmask: 0 = {}, 1 = {a}, 2 = {b}, 3 = {a, b}.
  # phi_a = 1/2 (v(a) - v({})) + 1/2 (v(ab) - v(b)), phi_b symmetric.
  expected = np.array([[-0.5, 0.5, -0.5, 0.5],
                       [-0.5, -0.5, 0.5, 0.5]])
  np.testing.assert_allclose(scores.shapley_matrix(2), expected)
  np.testing.assert_array_equal(scores.subset_masks(2), [[0, 0], [1, 0], [0, 1], [1, 1]])


@pytest.mark.parametrize("num", [2, 3, 6])
def test_shapley_axioms(num):
  w = scores.shapley_matrix(num)
  v = np.random.default_rng(0).normal(size=2 ** num)
  phi = w @ v
  np.testing.assert_allclose(phi.sum(), v[-1] - v[0], atol=1e-12)     # efficiency
  additive = scores.subset_masks(num) @ np.arange(1.0, num + 1)        # v(S) = sum of m+1 in S
  np.testing.assert_allclose(w @ additive, np.arange(1.0, num + 1), atol=1e-12)


def test_shapley_three_modalities_matches_agm_formula():
  # AGM (Li et al., 2023): o_a = 1/3 (AVT - VT) + 1/6 (AV - V + AT - T) + 1/3 A.
  w = scores.shapley_matrix(3)
  a, v, t = 1, 2, 4
  expected = np.zeros(8)
  expected[[a | v | t, v | t]] += [1 / 3, -1 / 3]
  expected[[a | v, v, a | t, t]] += [1 / 6, -1 / 6, 1 / 6, -1 / 6]
  expected[[a, 0]] += [1 / 3, -1 / 3]
  np.testing.assert_allclose(w[0], expected, atol=1e-12)
