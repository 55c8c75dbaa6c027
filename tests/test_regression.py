"""Regression task pieces: losses, sign agreement, the benchmark metrics, modality scores."""
import math

import jax.numpy as jnp
import numpy as np
import pytest

from mmbal import scores
from mmbal.train.regression import regression_metrics
from mmbal.train.step import task_correct, task_loss


def test_losses_and_sign_agreement():
  logits = jnp.array([[0.5], [-1.0], [2.0]])
  labels = jnp.array([1.5, -0.5, -1.0])
  np.testing.assert_allclose(task_loss(logits, labels, "regression"), [1.0, 0.5, 3.0])
  np.testing.assert_allclose(task_loss(logits, labels, "regression_mse"), [1.0, 0.25, 9.0])
  np.testing.assert_allclose(task_correct(logits, labels, "regression"), [1.0, 1.0, 0.0])
  # [M, B, 1] unimodal outputs against [B] labels.
  assert task_loss(jnp.zeros((2, 3, 1)), labels[None], "regression").shape == (2, 3)


def test_mosi_metrics_hand_computed():
  pred = np.array([2.6, -0.4, 0.2, -2.2, 0.0])
  truth = np.array([3.0, -1.0, 0.0, -1.6, -0.2])
  m = regression_metrics(pred, truth, "mosi")
  assert m["mae"] == pytest.approx((0.4 + 0.6 + 0.2 + 0.6 + 0.2) / 5)
  # has0: pred >= 0 -> (T, F, T, F, T); truth >= 0 -> (T, F, T, F, F): 4 of 5.
  assert m["acc2_has0"] == pytest.approx(0.8)
  # non0 drops truth == 0 (index 2): pred > 0 (T, F, F, F) vs truth > 0 (T, F, F, F): 4 of 4.
  assert m["acc2_non0"] == 1.0 and m["f1_non0"] == 1.0
  # acc7: round(clip) pred (3, -0, 0, -2, 0) vs truth (3, -1, 0, -2, -0): 4 of 5 (index 1 differs).
  assert m["acc7"] == pytest.approx(0.8)
  # acc5: clip to [-2, 2]: pred (2, -0, 0, -2, 0) vs truth (2, -1, 0, -2, -0): 4 of 5.
  assert m["acc5"] == pytest.approx(0.8)
  # Weighted F1 of has0: class "non-negative" (3 predicted, 2 true, tp 2): F1 2*2/(4+1+0) = 0.8;
  # class "negative" (2 predicted, 3 true, tp 2): 2*2/(4+0+1) = 0.8; weights 2/5 and 3/5.
  assert m["f1_has0"] == pytest.approx(0.8)
  assert m["corr"] == pytest.approx(np.corrcoef(pred, truth)[0, 1])


def test_sims_bins():
  pred = np.array([-0.9, -0.05, 0.05, 0.5, 1.7])
  truth = np.array([-0.8, 0.0, -0.2, 0.8, 1.0])
  m = regression_metrics(pred, truth, "sims")
  # Right-closed bins as MMSA (0 is negative). acc2: pred (0, 0, 1, 1, 1), truth (0, 0, 0, 1, 1).
  assert m["acc2"] == pytest.approx(0.8)
  # acc3 edges (-0.1, 0.1]: pred (0, 1, 1, 2, 2), truth (0, 1, 0, 2, 2): 4 of 5.
  assert m["acc3"] == pytest.approx(0.8)
  # acc5 edges (-0.7, -0.1, 0.1, 0.7]: pred (0, 2, 2, 3, 4), truth (0, 2, 1, 4, 4): 3 of 5.
  assert m["acc5"] == pytest.approx(0.6)
  assert m["mae"] == pytest.approx((0.1 + 0.05 + 0.25 + 0.3 + 0.0) / 5)   # pred clipped to 1


def test_regression_modality_scores():
  logits = jnp.array([[[1.0], [-1.0]], [[3.0], [1.0]]])   # [M=2, B=2, 1]
  labels = jnp.array([1.0, -2.0])
  conf = scores.regression_confidence(logits, labels, ("a", "b"))
  assert float(conf["a"]) == pytest.approx(1.0 + math.exp(-1.0))
  assert float(conf["b"]) == pytest.approx(math.exp(-2.0) + math.exp(-3.0))
  agree = scores.sign_agreement(logits, labels, ("a", "b"))
  assert float(agree["a"]) == 1.0 and float(agree["b"]) == 0.5
