"""Scores over a split: the one loop that sums a jitted per-batch function over a split's
batches, and the trainer's evaluation report built on it."""
from __future__ import annotations

from typing import Callable, Iterable

import jax
import jax.numpy as jnp
import numpy as np
from jax.experimental import multihost_utils

from mmbal import data as mmdata
from mmbal.diagnostics import fit_linear_probes, probe_accuracy
from mmbal.train import sharding as shd
from mmbal.train.regression import add_regression_metrics

# Per-example outputs (regression predictions): gathered, not summed.
PER_EXAMPLE = ("label", "mask")


def split_sums(fn: Callable, params, batches: Iterable[dict], put_batch: Callable):
  """``(sums, examples)``: ``fn(params, put_batch(batch))`` summed over ``batches``; its
  ``pred_*``, ``label`` and ``mask`` outputs are per-example and returned as host arrays, one
  dict per batch, in ``examples``."""
  totals, examples = None, []
  for batch in batches:
    sums = dict(fn(params, put_batch(batch)))
    per_example = {k: sums.pop(k) for k in list(sums) if k.startswith("pred_") or k in PER_EXAMPLE}
    if per_example:
      examples.append(jax.device_get(per_example))
    totals = sums if totals is None else jax.tree.map(jnp.add, totals, sums)
  return jax.device_get(totals), examples


def evaluate(run, params, split: str) -> dict:
  """The trainer's report on ``split`` (`report_from_sums`; regression adds MMSA's metrics)."""
  c, names = run.config, run.model.names
  sums, examples = split_sums(run.eval_step, params,
                              mmdata.eval_batches(run.dataset[split], c.eval.batch_size),
                              lambda batch: shd.global_batch(run.mesh, batch))
  report = report_from_sums(sums, names, run.method.selection == "unimodal_mean", run.task)
  if examples:   # regression: the standard metrics from every prediction of the split
    add_regression_metrics(report, examples, names, c.eval.regression_bins)
  return report


def add_linear_probes(run, params, results: dict):
  """Each encoder's linear-probe accuracy on validation and test, fitted on train: the same
  yardstick for every method."""
  features = jax.jit(lambda params, batch: run.apply_fn(
      params, {n: batch[n] for n in run.model.names}).features,
      in_shardings=(run.param_sharding, shd.batch_sharding(run.mesh)))

  def split_features(split):
    """``([M, N, D] features, [N] labels)`` of every example of a split (host arrays)."""
    feats, labels = [], []
    for batch in mmdata.eval_batches(run.dataset[split], run.config.eval.batch_size):
      out = multihost_utils.process_allgather(features(params, shd.global_batch(run.mesh, batch)),
                                              tiled=True)
      mask = np.asarray(multihost_utils.process_allgather(batch["mask"])).reshape(-1)
      labs = np.asarray(multihost_utils.process_allgather(batch["label"])).reshape(-1)
      feats.append(np.asarray(out)[:, mask])
      labels.append(labs[mask])
    return np.concatenate(feats, axis=1), np.concatenate(labels)

  probes = fit_linear_probes(*split_features("train"), num_classes=run.dataset.spec.num_classes)
  for split in ("validation", "test"):
    accuracy = probe_accuracy(probes, *split_features(split))
    results[split]["probe"] = {m: dict(accuracy=float(a)) for m, a in zip(run.model.names, accuracy)}


def f1_scores(tp, fp, fn) -> tuple[np.ndarray, np.ndarray]:
  """``(micro F1, macro F1)`` over the last axis of per-class counts (a class with no
  positives and no predictions scores 0 in the macro mean, as scikit-learn's default)."""
  tp, fp, fn = (np.asarray(x, np.float64) for x in (tp, fp, fn))
  micro = 2 * tp.sum(-1) / np.maximum(2 * tp.sum(-1) + fp.sum(-1) + fn.sum(-1), 1e-12)
  macro = (2 * tp / np.maximum(2 * tp + fp + fn, 1e-12)).mean(-1)
  return micro, macro


def report_from_sums(totals, names, fused_untrained=False, task="classification") -> dict:
  """Scores, mean losses and utilisation from the eval step's summed counts.

  ``accuracy`` is the task's score: accuracy, or micro-F1 for ``"multilabel"`` (which also
  reports ``f1_macro`` and the Hamming accuracy ``hamming``).
  """
  n = max(float(totals["count"]), 1.0)
  score = lambda key, i=None: float(totals[key] if i is None else totals[key][i]) / n
  extra = lambda key, i=None: {}
  if task == "multilabel":
    counts = {k: tuple(totals[f"{k}_{c}"] for c in ("tp", "fp", "fn"))
              for k in ("fused", "unimodal", "without")}
    f1 = {k: f1_scores(*v) for k, v in counts.items()}
    hamming = score
    score = lambda key, i=None: float(f1[key][0] if i is None else f1[key][0][i])
    extra = lambda key, i=None: dict(
        f1_macro=float(f1[key][1] if i is None else f1[key][1][i]), hamming=hamming(key, i))
  fused = score("fused")
  without = {m: score("without", i) for i, m in enumerate(names)}
  return dict(
      count=int(totals["count"]),
      fused=dict(accuracy=None if fused_untrained else fused, loss=float(totals["fused_loss"]) / n,
                 **extra("fused")),
      unimodal={m: dict(accuracy=score("unimodal", i), loss=float(totals["unimodal_loss"][i]) / n,
                        **extra("unimodal", i)) for i, m in enumerate(names)},
      # The fused score with modality m absent, and m's conditional utilisation
      # u_m = (A_all - A_without_m) / A_all (Wu et al., 2022; MILES).
      without={m: dict(accuracy=a, **extra("without", i)) for i, (m, a) in enumerate(without.items())},
      utilisation={m: (fused - a) / max(fused, 1e-8) for m, a in without.items()})


def epoch_report(val: dict, names, epoch: int, train: dict | None = None) -> dict:
  """What a method's ``epoch_end`` sees. ``train_losses`` are the ``train`` report's losses
  when it is given (measured at the same parameters as ``val_losses``), else the epoch's
  running mean, added on device."""
  losses = lambda r: np.array([r["fused"]["loss"]] + [r["unimodal"][m]["loss"] for m in names],
                              np.float32)
  report = dict(
      fused_accuracy=np.float32(val["fused"]["accuracy"] or 0.0),
      unimodal_accuracy={m: np.float32(val["unimodal"][m]["accuracy"]) for m in names},
      without_accuracy={m: np.float32(val["without"][m]["accuracy"]) for m in names},
      val_losses=losses(val), epoch=np.int32(epoch))
  if train is not None:
    report["train_losses"] = losses(train)
  return report


def selection_score(method, result) -> float:
  """The validation score that selects the checkpoint (the method spec's ``selection``)."""
  if method.selection == "unimodal_mean":
    return float(np.mean([u["accuracy"] for u in result["unimodal"].values()]))
  return result["fused"]["accuracy"]
