"""The robustness protocol: accuracy as inputs degrade, per modality, and summary scores.

`sweep` evaluates a model on seeded corruptions (`mmbal.data.corrupt`) at rates 0 ... 0.9
of each modality alone and of all modalities at once, for several seeds, plus every
modality removed entirely. Scores:

* relative robustness (MultiBench, Liang et al. 2021): the area under the accuracy-vs-rate
  curve, normalised by the swept range (the mean accuracy over the range; trapezoid rule);
* effective robustness against a reference run's curve (MultiBench compares to late fusion):
  the normalised area of ``acc(r) - acc(0) * ref(r) / ref(0)``, the accuracy kept beyond
  what the reference keeps once both start from the same clean accuracy (our reading of
  MultiBench's definition; its code's exact form was not checked);
* the missing-modality gap (BalGrad, Kwon et al. 2025): accuracy with each modality fully
  removed, and ``max - min`` over modalities (|missing image - missing text| for two).
"""
from __future__ import annotations

import json
import pathlib
from typing import Callable, Iterable, Mapping, Sequence

import numpy as np

from mmbal.data import corrupt as corruptions

RATES = tuple(round(0.1 * i, 1) for i in range(10))


def _area(rates, values) -> float:
  rates, values = np.asarray(rates, float), np.asarray(values, float)
  width = rates[-1] - rates[0]
  if width <= 0:
    return float(values[0])
  return float(np.sum((values[1:] + values[:-1]) / 2 * np.diff(rates)) / width)


def relative_robustness(rates, accuracy) -> float:
  """Normalised area under ``accuracy(rate)`` (the mean accuracy over the swept range)."""
  return _area(rates, accuracy)


def effective_robustness(rates, accuracy, reference) -> float:
  """Normalised area of ``acc(r) - acc(0) * ref(r) / ref(0)`` (0: degrades like the reference)."""
  accuracy, reference = np.asarray(accuracy, float), np.asarray(reference, float)
  expected = accuracy[0] * reference / max(reference[0], 1e-12)
  return _area(rates, accuracy - expected)


def sweep(evaluate: Callable[[Mapping], tuple[float, float]], batches: Callable[[], Iterable[Mapping]],
          names: Sequence[str], *, kinds: Sequence[str] = ("missing",), rates: Sequence[float] = RATES,
          seeds: Sequence[int] = (0,), fill=None, scale=None, noise_scale: float = 2.0) -> dict:
  """Accuracy curves under corruption; see the module docstring.

  ``evaluate(batch) -> (correct, count)`` over the real rows of one corrupted batch (it
  receives ``batch["present"]``, ``[B, M]``, for models that handle absence natively);
  ``batches()`` yields the split's batches afresh. ``noise`` severities are
  ``rate * noise_scale`` standard deviations (``scale``: per-modality std). ``steps`` (LNLN's
  random missing time steps) applies to sequence modalities only.
  """
  names = tuple(names)
  for kind in kinds:
    if kind not in corruptions.KINDS:
      raise ValueError(f"kinds: each must be one of {corruptions.KINDS}, got {kind!r}")

  def accuracy(kind, targets, rate, seed):
    rng = np.random.default_rng([seed, corruptions.KINDS.index(kind), int(round(rate * 1000))]
                                + [names.index(t) for t in targets])
    level = rate * noise_scale if kind == "noise" else rate
    correct = count = 0.0
    for batch in batches():
      c, n = evaluate(corruptions.corrupt(batch, names, kind, targets, level, rng, fill=fill,
                                          scale=scale))
      correct, count = correct + c, count + n
    return correct / max(count, 1.0)

  sample = next(iter(batches()))
  result = dict(rates=list(rates), seeds=list(seeds), modalities=list(names), curves={})
  for kind in kinds:
    targets = {m: (m,) for m in names}
    if kind == "steps":
      targets = {m: (m,) for m in names if np.asarray(sample[m]).ndim >= 3}
    if len(targets) > 1:
      targets["all"] = tuple(t for (t,) in targets.values())
    curves = {}
    for label, mods in targets.items():
      runs = np.array([[accuracy(kind, mods, r, s) for r in rates] for s in seeds])
      mean = runs.mean(0)
      curves[label] = dict(accuracy=mean.tolist(), std=runs.std(0).tolist(),
                           relative_robustness=relative_robustness(rates, mean))
    result["curves"][kind] = curves
  removed = {m: accuracy("missing", (m,), 1.0, seeds[0]) for m in names}
  result["removed"] = removed
  result["missing_gap"] = max(removed.values()) - min(removed.values())
  return result


def add_effective_robustness(result: dict, reference: Mapping) -> dict:
  """Adds each curve's effective robustness against the same curve of ``reference``."""
  for kind, curves in result["curves"].items():
    for label, curve in curves.items():
      ref = reference.get("curves", {}).get(kind, {}).get(label)
      if ref is not None and len(ref["accuracy"]) == len(curve["accuracy"]):
        curve["effective_robustness"] = effective_robustness(result["rates"], curve["accuracy"],
                                                             ref["accuracy"])
  return result


def markdown(result: Mapping) -> str:
  lines = [f"Rates {result['rates'][0]} to {result['rates'][-1]}, seeds {result['seeds']}; "
           "relative robustness = mean accuracy over the rates.", ""]
  for kind, curves in result["curves"].items():
    has_eff = any("effective_robustness" in c for c in curves.values())
    lines += [f"**{kind}**", "", "| corrupted | clean acc | acc at max rate | relative robustness"
              + (" | effective robustness |" if has_eff else " |"),
              "|---|---:|---:|---:|" + ("---:|" if has_eff else "")]
    for label, c in curves.items():
      row = (f"| {label} | {100 * c['accuracy'][0]:.1f} | {100 * c['accuracy'][-1]:.1f} "
             f"| {100 * c['relative_robustness']:.1f} |")
      if has_eff:
        row += f" {100 * c.get('effective_robustness', float('nan')):+.1f} |"
      lines.append(row)
    lines.append("")
  removed = ", ".join(f"{m} {100 * a:.1f}" for m, a in result["removed"].items())
  lines.append(f"Accuracy with each modality fully removed: {removed}; missing-modality gap "
               f"{100 * result['missing_gap']:.1f} points.")
  return "\n".join(lines) + "\n"


def write(result: Mapping, out_dir) -> dict:
  """``robustness.json``, ``robustness.md`` and ``robustness.png`` in ``out_dir``."""
  out = pathlib.Path(out_dir)
  out.mkdir(parents=True, exist_ok=True)
  paths = dict(json=out / "robustness.json", report=out / "robustness.md", plot=out / "robustness.png")
  paths["json"].write_text(json.dumps(result, indent=2))
  paths["report"].write_text(markdown(result))
  _plot(result, paths["plot"])
  return paths


def _plot(result, path):
  from matplotlib.figure import Figure   # no pyplot global state
  kinds = list(result["curves"])
  fig = Figure(figsize=(4.5 * len(kinds), 3.4), layout="constrained")
  rates = np.asarray(result["rates"])
  for i, kind in enumerate(kinds):
    ax = fig.add_subplot(1, len(kinds), i + 1)
    for label, c in result["curves"][kind].items():
      mean, std = 100 * np.asarray(c["accuracy"]), 100 * np.asarray(c["std"])
      ax.plot(rates, mean, marker="o", ms=3, label=label, ls="--" if label == "all" else "-")
      ax.fill_between(rates, mean - std, mean + std, alpha=0.2)
    ax.set(title=f"{kind}", xlabel="rate" if kind != "noise" else "severity / noise_scale",
           ylabel="accuracy (%)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
  fig.savefig(path, dpi=110)
