"""Regression task pieces: losses, sign agreement, the benchmark metrics, modality scores, and the
balancing methods' regression (and multi-label) forms."""
import math
import pathlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mmbal import scores, transforms
from mmbal.tasks import regression_classes
from mmbal.train.regression import regression_metrics
from mmbal.train.step import task_correct, task_loss

ROOT = pathlib.Path(__file__).resolve().parent.parent


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


# ----------------------------------------------------------------------------- methods' forms


def test_regression_classes_are_mmsa_bins():
  y = jnp.array([-3.7, -2.5, -0.5, 0.5, 1.49, 2.6])
  # round(clip(y, -3, 3)) half to even: (-3, -2, -0, 0, 1, 3), shifted by 3.
  np.testing.assert_array_equal(regression_classes(y, "mosi"), [0, 1, 3, 3, 4, 6])
  # SIMS's right-closed Acc-5 bins (-0.7, -0.1, 0.1, 0.7].
  y = jnp.array([-0.8, -0.7, -0.1, 0.0, 0.1, 0.5, 0.71])
  np.testing.assert_array_equal(regression_classes(y, "sims"), [0, 0, 1, 2, 2, 3, 4])
  with pytest.raises(ValueError, match="regression bins"):
    regression_classes(y, "acc3")


# f(a), f(v), f(a, v) for two examples (one output each): o_a = (f(av) - f(v) + f(a)) / 2 =
# (1.5, 2), o_v = (f(av) - f(a) + f(v)) / 2 = (2.5, 1); they sum to f(av) = (4, 3).
AGM_SUBSETS = jnp.array([[[1.0], [0.0]], [[2.0], [-1.0]], [[4.0], [3.0]]])
AGM_LABELS = jnp.array([0.0, 4.0])


@pytest.mark.parametrize("task, loss, shares, score_a, score_v", [
    # L1: z - y = (4, -1), loss 2.5, c = sign / B = (0.5, -0.5); shares <c, o_m>;
    # scores mean |o_m - y|: a (1.5 + 2) / 2, v (2.5 + 3) / 2.
    ("regression", 2.5, [0.75 - 1.0, 1.25 - 0.5], 1.75, 2.75),
    # MSE: loss (16 + 1) / 2, c = 2 (z - y) / B = (4, -1); scores mean (o_m - y)^2.
    ("regression_mse", 8.5, [6.0 - 2.0, 10.0 - 1.0], (2.25 + 4) / 2, (6.25 + 9) / 2),
])
def test_agm_shares_for_regression_by_hand(task, loss, shares, score_a, score_v):
  res = transforms.agm_shares(AGM_SUBSETS, AGM_LABELS, ("a", "v"), task=task)
  np.testing.assert_allclose(res.outputs[..., 0], [[1.5, 2.0], [2.5, 1.0]])
  assert float(res.loss) == pytest.approx(loss)
  np.testing.assert_allclose(res.shares, shares, rtol=1e-6)
  assert float(res.scores["a"]) == pytest.approx(score_a)
  assert float(res.scores["v"]) == pytest.approx(score_v)


def test_agm_scores_are_capped_and_finite():
  cap = -math.log(1e-8)
  for task in ("regression", "regression_mse"):
    for scale in (0.0, 1e30):
      res = transforms.agm_shares(AGM_SUBSETS * scale, AGM_LABELS, ("a", "v"), task=task)
      assert all(np.isfinite(float(s)) and float(s) <= cap + 1e-4 for s in res.scores.values())
  huge = transforms.agm_shares(AGM_SUBSETS * 1e30, AGM_LABELS, ("a", "v"), task="regression")
  assert float(huge.scores["a"]) == pytest.approx(cap) and np.all(np.isfinite(huge.shares))
  # Multi-label: zero outputs give every class probability 1/2, BCE log 2.
  res = transforms.agm_shares(jnp.zeros((3, 1, 2)), jnp.array([[1, 0]]), ("a", "v"),
                              task="multilabel")
  assert float(res.scores["a"]) == pytest.approx(math.log(2.0))


def test_subset_values_for_regression_and_multilabel_by_hand():
  z = jnp.array([[[0.0], [0.0]], [[1.0], [-1.0]], [[-2.0], [3.0]], [[0.5], [1.0]]])
  y = jnp.array([1.0, -2.0])
  # Sign agreement (z >= 0) == (y >= 0): (T, F), (T, T), (F, F), (T, F).
  np.testing.assert_allclose(transforms.subset_values(z, y, task="regression"), [0.5, 1, 0, 0.5])
  np.testing.assert_allclose(transforms.subset_values(z, y, value="loss", task="regression"),
                             [-1.5, -0.5, -4.0, -1.75])
  np.testing.assert_allclose(transforms.subset_values(z, y, value="loss", task="regression_mse"),
                             [-2.5, -0.5, -17.0, -4.625])
  z = jnp.array([[[0.0, 0.0]], [[1.0, -1.0]], [[-1.0, 1.0]], [[2.0, 2.0]]])
  y = jnp.array([[1, 0]])
  # Hamming accuracy of z > 0 against (1, 0): 1/2, 1, 0, 1/2.
  np.testing.assert_allclose(transforms.subset_values(z, y, task="multilabel"), [0.5, 1, 0, 0.5])
  assert float(transforms.subset_values(z, y, value="loss", task="multilabel")[0]) == \
      pytest.approx(-math.log(2.0))


def test_balgrad_kl_for_regression_by_hand():
  mu = jnp.array([[[1.0]], [[3.0]]])                      # [M=2, B=1, 1]
  laplace = 2.0 + math.exp(-2.0) - 1.0                   # |d| + exp(-|d|) - 1, d = 2
  np.testing.assert_allclose(transforms.balgrad_kl_losses(mu, task="regression"),
                             [laplace, laplace], rtol=1e-6)
  np.testing.assert_allclose(transforms.balgrad_kl_losses(mu, task="regression_mse"), [2.0, 2.0])
  # Only modality m's own prediction is pulled: d KL_0 / d mu_0 = -(1 - exp(-2)), d / d mu_1 = 0.
  g = jax.grad(lambda m: transforms.balgrad_kl_losses(m, task="regression")[0])(mu)
  np.testing.assert_allclose(g[:, 0, 0], [-(1.0 - math.exp(-2.0)), 0.0], rtol=1e-6)
  # Three modalities: the mean over the others of d^2 / 2, mu = (0, 1, 3).
  mu3 = jnp.array([0.0, 1.0, 3.0])[:, None, None]
  np.testing.assert_allclose(transforms.balgrad_kl_losses(mu3, task="regression_mse"),
                             [(0.5 + 4.5) / 2, (0.5 + 2.0) / 2, (4.5 + 2.0) / 2])
  for task, scale in (("regression", 1e30), ("regression_mse", 1e15), ("regression", 0.0)):
    assert np.all(np.isfinite(transforms.balgrad_kl_losses(mu3 * scale, task=task)))
  assert np.all(transforms.balgrad_kl_losses(jnp.zeros((3, 2, 1)), task="regression") == 0)


def test_balgrad_kl_for_multilabel_by_hand():
  logits = jnp.array([[[0.0]], [[math.log(3.0)]]])       # probabilities 0.5 and 0.75
  kl_a = 0.75 * math.log(0.75 / 0.5) + 0.25 * math.log(0.25 / 0.5)   # KL(Bern(.75) || Bern(.5))
  kl_v = 0.5 * math.log(0.5 / 0.75) + 0.5 * math.log(0.5 / 0.25)
  np.testing.assert_allclose(transforms.balgrad_kl_losses(logits, task="multilabel"),
                             [kl_a, kl_v], rtol=1e-5)


def test_task_limits_are_explained():
  from mmbal import methods  # pylint: disable=import-outside-toplevel
  assert "mnl" not in methods.methods_for("regression_mse") and "pmr" in methods.methods_for("regression")
  assert {"agm", "msam", "balgrad"} <= set(methods.methods_for("multilabel")) - {"pmr", "mnl"}
  with pytest.raises(ValueError, match="mnl.*classification data only.*non-target classes"):
    methods.get("mnl").check_task("regression")
  with pytest.raises(ValueError, match="pmr.*multi-hot.*is multi-label"):
    methods.get("pmr").check_task("multilabel")


@pytest.mark.parametrize("method", ["ogm_ge", "agm", "msam", "balgrad"])
def test_methods_take_a_multilabel_step(method):
  """One jitted train step on multi-hot labels: finite losses, the method's state updated."""
  from mmbal.modalities import Modality  # pylint: disable=import-outside-toplevel
  from mmbal.train import load_config  # pylint: disable=import-outside-toplevel
  from mmbal.train.run import build_parts  # pylint: disable=import-outside-toplevel
  c = load_config(f"{ROOT}/configs/mmimdb/{method}.py")
  c.model.feature_dim, c.model.hidden_dim = 4, 4
  mods = [Modality(n, (3,)) for n in c.data.modalities]
  parts = build_parts(c, mods, 3, task="multilabel", steps_per_epoch=2, total_steps=2)
  step, state = parts.step_fn, parts.init_state(parts.params)
  rng = np.random.default_rng(0)
  batch = {n: jnp.asarray(rng.normal(size=(4, 3)), jnp.float32) for n in c.data.modalities}
  batch["label"] = jnp.asarray([[1, 0, 1], [0, 1, 0], [1, 1, 0], [0, 0, 1]])
  new, metrics = jax.jit(step)(state, batch)
  assert np.all(np.isfinite(metrics["losses"])) and int(new.step) == 1
  changed = jax.tree.map(lambda a, b: bool(np.any(np.asarray(a) != np.asarray(b))),
                         new.opt_state, state.opt_state)
  assert any(jax.tree.leaves(changed))
