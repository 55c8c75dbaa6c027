"""Multi-label training pieces: losses, decisions, F1 scores and the per-modality scores."""
import math

import jax.numpy as jnp
import numpy as np
import pytest

from mmbal import scores
from mmbal.train.evaluate import f1_scores, report_from_sums
from mmbal.train.step import make_eval_step, task_correct, task_loss
from mmbal.models.classifier import Outputs


def test_sigmoid_loss_and_hamming_correctness_hand_computed():
  # BCE of logits (0, ln3) against (1, 0): (ln2 + ln4) / 2 = 1.5 ln2.
  loss = task_loss(jnp.array([[0.0, math.log(3.0)]]), jnp.array([[1, 0]]), "multilabel")
  np.testing.assert_allclose(loss, [1.5 * math.log(2.0)], rtol=1e-6)
  # Decisions (1, 0, 1) against (1, 1, 0): one class of three right.
  right = task_correct(jnp.array([[1.0, -1.0, 2.0]]), jnp.array([[1, 1, 0]]), "multilabel")
  np.testing.assert_allclose(right, [1 / 3], rtol=1e-6)
  # Leading axes broadcast ([M, B, C] unimodal logits against [B, C] labels).
  assert task_loss(jnp.zeros((2, 3, 4)), jnp.ones((3, 4)), "multilabel").shape == (2, 3)


def test_f1_scores_hand_computed():
  # Per class (tp, fp, fn): (2, 1, 0), (0, 0, 0), (1, 0, 1).
  # micro = 2*3 / (2*3 + 1 + 1) = 0.75; macro = mean(4/5, 0, 2/3).
  micro, macro = f1_scores([2, 0, 1], [1, 0, 0], [0, 0, 1])
  assert micro == pytest.approx(0.75) and macro == pytest.approx((0.8 + 2 / 3) / 3)


def test_eval_step_counts_and_report():
  labels = jnp.array([[1, 0, 1], [0, 1, 0], [1, 1, 1]])   # the last row is padding
  fused = jnp.array([[2.0, -1.0, -1.0], [1.0, 1.0, -1.0], [5.0, 5.0, 5.0]])

  def apply_fn(params, inputs, present=None):
    del params, inputs
    logits = fused if present is None else fused - 10.0 * (1 - present[:, :1])  # "a" carries it
    return Outputs(logits, jnp.stack([logits, -jnp.ones_like(logits)]), jnp.zeros((2, 3, 1)))

  step = make_eval_step(apply_fn, ("a", "b"), "multilabel")
  sums = step(None, {"a": jnp.zeros((3, 1)), "b": jnp.zeros((3, 1)), "label": labels,
                     "mask": jnp.array([True, True, False])})
  # Real rows: decisions (1,0,0) vs (1,0,1) and (1,1,0) vs (0,1,0): tp (1,1,0), fp (1,0,0), fn (0,0,1).
  np.testing.assert_array_equal(sums["fused_tp"], [1, 1, 0])
  np.testing.assert_array_equal(sums["fused_fp"], [1, 0, 0])
  np.testing.assert_array_equal(sums["fused_fn"], [0, 0, 1])
  report = report_from_sums(sums, ("a", "b"), task="multilabel")
  assert report["count"] == 2
  assert report["fused"]["accuracy"] == pytest.approx(2 * 2 / (2 * 2 + 1 + 1))   # micro-F1
  assert report["fused"]["f1_macro"] == pytest.approx((2 / 3 + 1 + 0) / 3)
  assert report["fused"]["hamming"] == pytest.approx((2 / 3 + 2 / 3) / 2)
  assert report["without"]["a"]["accuracy"] == 0.0 and report["utilisation"]["a"] == pytest.approx(1.0)
  assert report["unimodal"]["b"]["accuracy"] == 0.0   # predicts nothing


def test_multilabel_modality_scores_hand_computed():
  labels = jnp.array([[1, 0], [0, 0]])
  logits = jnp.array([[[0.0, 5.0], [1.0, 1.0]], [[math.log(3.0), -1.0], [-1.0, -1.0]]])
  conf = scores.multilabel_confidence(logits, labels, ("a", "b"))
  # a: sample 0's true class has sigmoid(0) = 0.5; sample 1 has no positives.
  assert float(conf["a"]) == pytest.approx(0.5) and float(conf["b"]) == pytest.approx(0.75)
  f1 = scores.multilabel_f1(logits, labels, ("a", "b"))
  # a: decisions (0,1),(1,1) -> tp 0: F1 0. b: (1,0),(0,0) -> tp 1, no errors: F1 1.
  assert float(f1["a"]) == 0.0 and float(f1["b"]) == 1.0
