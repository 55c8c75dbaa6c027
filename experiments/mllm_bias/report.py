"""Aggregating runs over seeds, the escape step, figures and the Markdown report.

A run's *history* is a list of evaluation records (dicts with a ``step`` and float
metrics), one per evaluation; a *condition* is a list of histories, one per seed.
"""
from __future__ import annotations

import math
import pathlib
from typing import Mapping, Sequence

import numpy as np

History = Sequence[Mapping[str, float]]


def escape_step(history: History, threshold: float = 0.5, metric: str = "ood_accuracy"):
  """T_escape: the first evaluated step whose inverted-prior accuracy reaches ``threshold``
  (the model has left the language shortcut), or None if it never does within the budget."""
  for record in history:
    if record[metric] >= threshold:
      return int(record["step"])
  return None


def curve(histories: Sequence[History], metric: str):
  """``(steps, mean, std)`` of ``metric`` over seeds (histories evaluated at the same steps)."""
  steps = np.array([r["step"] for r in histories[0]])
  values = np.array([[r[metric] for r in h] for h in histories], np.float64)
  return steps, values.mean(0), values.std(0)


def at_step(histories: Sequence[History], metric: str, step: int | None = None):
  """Per-seed values of ``metric`` at ``step`` (default: the last evaluation)."""
  def pick(history):
    if step is None:
      return history[-1][metric]
    matches = [r[metric] for r in history if r["step"] == step]
    if not matches:
      raise ValueError(f"no evaluation at step {step} (evaluated: {[r['step'] for r in history]})")
    return matches[0]
  return [float(pick(h)) for h in histories]


def mean_std(values: Sequence[float], digits: int = 2) -> str:
  """``"0.83 ± 0.02"`` over seeds; ``"—"`` for no values."""
  values = [v for v in values if v is not None and not math.isnan(v)]
  if not values:
    return "—"
  return f"{np.mean(values):.{digits}f} ± {np.std(values):.{digits}f}"


def escape_summary(histories: Sequence[History], threshold: float = 0.5) -> str:
  """T_escape over seeds: ``"150 ± 0 (3/3)"``, or ``"never (0/3)"``; runs that never escape
  are left out of the mean and counted in the parenthesis."""
  steps = [escape_step(h, threshold) for h in histories]
  escaped = [s for s in steps if s is not None]
  count = f"({len(escaped)}/{len(steps)} escaped)"
  if not escaped:
    return f"never {count}"
  return f"{np.mean(escaped):.0f} ± {np.std(escaped):.0f} {count}"


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
  lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
  lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
  return "\n".join(lines)


def plot_curves(path: pathlib.Path, conditions: Mapping[str, Sequence[History]],
                metrics: Sequence[tuple[str, str]], title: str,
                reference: Mapping[str, float] | None = None):
  """One panel per ``(metric, label)``: mean over seeds with a ±std band, one line per
  condition; ``reference`` draws dashed horizontal lines (e.g. the blind-prior accuracy)."""
  import matplotlib
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt

  fig, axes = plt.subplots(1, len(metrics), figsize=(4.6 * len(metrics), 3.6), squeeze=False)
  for ax, (metric, label) in zip(axes[0], metrics):
    for name, histories in conditions.items():
      steps, mean, std = curve(histories, metric)
      line, = ax.plot(steps, mean, label=name)
      ax.fill_between(steps, mean - std, mean + std, color=line.get_color(), alpha=0.15)
    for text, value in (reference or {}).items():
      ax.axhline(value, color="grey", linestyle="--", linewidth=1)
      ax.annotate(text, (ax.get_xlim()[0], value), fontsize=7, color="grey",
                  xytext=(2, 2), textcoords="offset points")
    ax.set_xlabel("training step")
    ax.set_title(label, fontsize=10)
    ax.grid(alpha=0.3)
  axes[0][-1].legend(fontsize=7, loc="best")
  fig.suptitle(title, fontsize=11)
  fig.tight_layout()
  fig.savefig(path, dpi=110)
  plt.close(fig)


def plot_escape_bars(path: pathlib.Path, conditions: Mapping[str, Sequence[History]],
                     budget_steps: int, title: str, threshold: float = 0.5):
  """T_escape per condition (mean ± std over seeds; a run that never escapes counts as the
  budget and is marked with a hatched bar and its count)."""
  import matplotlib
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt

  names = list(conditions)
  steps = [[escape_step(h, threshold) for h in conditions[n]] for n in names]
  values = [[budget_steps if s is None else s for s in runs] for runs in steps]
  fig, ax = plt.subplots(figsize=(6.4, 0.45 * len(names) + 1.2))
  y = np.arange(len(names))
  bars = ax.barh(y, [np.mean(v) for v in values], xerr=[np.std(v) for v in values],
                 color="tab:blue", alpha=0.7)
  for bar, runs in zip(bars, steps):
    never = sum(s is None for s in runs)
    if never:
      bar.set_hatch("//")
      ax.annotate(f"{never}/{len(runs)} never", (bar.get_width(), bar.get_y() + 0.4),
                  fontsize=7, xytext=(3, 0), textcoords="offset points")
  ax.set_yticks(y, names, fontsize=8)
  ax.invert_yaxis()
  ax.set_xlim(0, budget_steps * 1.15)
  ax.set_xlabel(f"T_escape: first step with inverted-prior accuracy ≥ {threshold}")
  ax.set_title(title, fontsize=10)
  ax.grid(axis="x", alpha=0.3)
  fig.tight_layout()
  fig.savefig(path, dpi=110)
  plt.close(fig)
