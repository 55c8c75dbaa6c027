"""The ``mmbal diagnose`` report: Markdown, JSON and PNG plots of a `diagnose` result.

``write_report(result, out_dir, run=..., metrics=...)`` writes ``report.md``,
``diagnosis.json`` (the same numbers) and ``curves.png`` (per-modality accuracy over
training steps, from the run's ``metrics.jsonl``), ``shapley.png`` and
``dependence.png``. matplotlib (Agg, no pyplot state) is imported only here.
"""
from __future__ import annotations

import json
import pathlib
from typing import Any, Mapping


def read_metrics(path) -> list[dict]:
  """The records of a run's ``metrics.jsonl`` (empty if there is none yet)."""
  path = pathlib.Path(path)
  if not path.is_file():
    return []
  records = []
  for line in path.read_text().splitlines():
    try:
      records.append(json.loads(line))
    except json.JSONDecodeError:   # a line being written by a running trainer
      continue
  return records


def headline(result: Mapping[str, Any]) -> str:
  """One sentence naming the modality the model leans on most and the least-used one."""
  names = result["modalities"]
  phi = result["shapley"]["accuracy"]
  full = result["accuracy"]
  without = {m: result["dependence"][m]["removed"]["accuracy"] for m in names}
  if len(names) == 1:
    m = names[0]
    return (f"A single modality, **{m}**: accuracy {_pct(full)} with it, {_pct(without[m])} "
            f"without it.")
  ranked = sorted(names, key=lambda m: phi[m], reverse=True)
  most, least = ranked[0], ranked[-1]
  return (f"The model leans most on **{most}** (Shapley value {_pp(phi[most])} of accuracy; "
          f"without it accuracy falls from {_pct(full)} to {_pct(without[most])}) and uses "
          f"**{least}** least (Shapley value {_pp(phi[least])}; without it: "
          f"{_pct(without[least])}).")


def markdown(result: Mapping[str, Any], run: Mapping[str, Any] | None = None,
             plots: Mapping[str, str] | None = None) -> str:
  """The report page (tables of every measure; ``plots``: ``{title: relative png path}``)."""
  names = result["modalities"]
  dep, dom, sh = result["dependence"], result["dominance"], result["shapley"]
  lines = ["# Modality diagnosis", ""]
  if run:
    lines += ["| run | |", "|---|---|"]
    lines += [f"| {k} | {_cell(v)} |" for k, v in run.items()]
    lines.append("")
  lines += [headline(result), "",
            f"Fused accuracy {_pct(result['accuracy'])} (loss {result['loss']:.4f}) on "
            f"{result['count']} examples; with every modality removed: "
            f"{_pct(result['empty']['accuracy'])} (loss {result['empty']['loss']:.4f}). "
            f"A removed modality is represented by: `{result['fill']}`"
            + (" (the model's own absence handling)." if result["fill"] == "present" else "."), ""]

  estimator = ("exact, all 2^M subsets" if sh["estimator"] == "exact"
               else f"Monte Carlo, {sh['num_permutations']} orderings")
  lines += ["## Shapley values", "",
            f"Each modality's share of the gain over no input ({estimator}); accuracy in "
            "percentage points, loss in nats (negative: the modality lowers the loss). They sum "
            "to v(all) - v(empty).", "",
            "| modality | accuracy (pp) | loss |", "|---|---:|---:|"]
  lines += [f"| {m} | {100 * sh['accuracy'][m]:.2f} | {sh['loss'][m]:.4f} |" for m in names]
  lines += [f"| sum | {100 * sum(sh['accuracy'].values()):.2f} | {sum(sh['loss'].values()):.4f} |", ""]

  lines += ["## Conditional utilisation", "",
            "u(m | rest) = (A(all) - A(all without m)) / A(all) (Wu et al., 2022; MILES). "
            f"Utilisation gap (max - min): {result['utilisation_gap']:.4f}.", "",
            "| modality | u(m \\| rest) |", "|---|---:|"]
  lines += [f"| {m} | {result['utilisation'][m]:.4f} |" for m in names]
  lines.append("")

  lines += ["## Dominant modality", "",
            "Per example, the modality (alone) with both the largest confidence margin "
            "z_y - max_{c != y} z_c and the largest target probability (MNL); otherwise undecided.",
            "", "| modality | examples dominated | mean margin |", "|---|---:|---:|"]
  lines += [f"| {m} | {_pct(dom['share'][m])} | {dom['margin'][m]:.4f} |" for m in names]
  lines += [f"| undecided | {_pct(dom['undecided'])} | |", ""]

  lines += ["## Dependence", "",
            "Accuracy and prediction-change rate (vs the full input) with the modality removed, "
            "replaced by another example's (shuffled within the batch), and alone "
            "(\"MLLMs are Deeply Affected by Modality Bias\", Zheng et al., 2025).", "",
            "| modality | removed acc | removed changed | shuffled acc | shuffled changed | alone acc |",
            "|---|---:|---:|---:|---:|---:|"]
  lines += [f"| {m} | {_pct(dep[m]['removed']['accuracy'])} | {_pct(dep[m]['removed']['change_rate'])} "
            f"| {_pct(dep[m]['shuffled']['accuracy'])} | {_pct(dep[m]['shuffled']['change_rate'])} "
            f"| {_pct(dep[m]['alone']['accuracy'])} |" for m in names]
  lines.append("")
  if plots:
    lines += ["## Plots", ""]
    lines += [f"### {title}\n\n![{title}]({path})\n" for title, path in plots.items()]
  return "\n".join(lines)


def plot_curves(records: list[dict], names, path, caption: str = "") -> None:
  """Per-modality (and fused) accuracy vs training step: validation and train panels."""
  fig = _figure(12, 4.2)
  for i, split in enumerate(("validation", "train")):
    ax = fig.add_subplot(1, 2, i + 1)
    rows = [r for r in records if r.get("split") == split]
    steps = [r["step"] for r in rows]
    series = {"fused": [_get(r, ("fused", "accuracy"), ("accuracy", "fused")) for r in rows]}
    for m in names:
      series[m] = [_get(r, ("unimodal", m, "accuracy"), ("accuracy", m)) for r in rows]
    drawn = False
    for label, ys in series.items():
      points = [(s, y) for s, y in zip(steps, ys) if y is not None]
      if points:
        ax.plot(*zip(*points), marker="o", markersize=3, label=label,
                linewidth=2.5 if label == "fused" else 1.5, color="black" if label == "fused" else None)
        drawn = True
    ax.set_title(f"{split} accuracy" + ("" if split == "train" else " (unimodal outputs)"))
    ax.set_xlabel("step")
    ax.set_ylabel("accuracy")
    ax.grid(alpha=0.3)
    if drawn:   # beside the panel, where it hides no curve
      ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    else:
      ax.text(0.5, 0.5, f"no {split} records yet", ha="center", va="center", transform=ax.transAxes)
  _save(fig, path, caption)


def plot_shapley(result: Mapping[str, Any], path, caption: str = "") -> None:
  names = result["modalities"]
  fig = _figure(9, 3.5)
  for i, (key, unit) in enumerate((("accuracy", "accuracy (pp)"), ("loss", "loss (nats)"))):
    ax = fig.add_subplot(1, 2, i + 1)
    values = [result["shapley"][key][m] * (100 if key == "accuracy" else 1) for m in names]
    helps = [(v >= 0) == (key == "accuracy") for v in values]   # a lower loss helps
    ax.bar(names, values, color=["tab:blue" if h else "tab:red" for h in helps])
    ax.axhline(0, color="black", linewidth=0.8)
    ax.set_title(f"Shapley value: {key}" + (" (negative: lowers it)" if key == "loss" else ""))
    ax.set_ylabel(unit)
    ax.grid(axis="y", alpha=0.3)
  _save(fig, path, caption)


def plot_dependence(result: Mapping[str, Any], path, caption: str = "") -> None:
  import numpy as np
  names, dep = result["modalities"], result["dependence"]
  x = np.arange(len(names))
  fig = _figure(11, 3.8)
  ax = fig.add_subplot(1, 2, 1)
  for j, kind in enumerate(("removed", "shuffled", "alone")):
    ax.bar(x + (j - 1) * 0.27, [100 * dep[m][kind]["accuracy"] for m in names], 0.27, label=kind)
  ax.axhline(100 * result["accuracy"], color="black", linestyle="--", label="all modalities")
  ax.set_xticks(x, names)
  ax.set_ylabel("accuracy (%)")
  ax.set_title("accuracy with the modality removed / shuffled / alone")
  ax.set_ylim(0, 118)
  ax.legend(fontsize=8, ncols=4, loc="upper center")
  ax.grid(axis="y", alpha=0.3)
  ax = fig.add_subplot(1, 2, 2)
  for j, kind in enumerate(("removed", "shuffled")):
    ax.bar(x + (j - 0.5) * 0.4, [100 * dep[m][kind]["change_rate"] for m in names], 0.4, label=kind)
  ax.set_xticks(x, names)
  ax.set_ylabel("predictions changed (%)")
  ax.set_title("prediction changes vs the full input")
  ax.legend(fontsize=8)
  ax.grid(axis="y", alpha=0.3)
  _save(fig, path, caption)


def write_report(result: Mapping[str, Any], out_dir, *, run: Mapping[str, Any] | None = None,
                 metrics=None) -> dict:
  """Writes the report files; returns ``{"report", "json", "curves", "shapley", "dependence"}`` paths.

  ``run``: facts about the run for the header table; ``metrics``: the run's
  ``metrics.jsonl`` (path) or its records, for the training curves.
  """
  out = pathlib.Path(out_dir)
  out.mkdir(parents=True, exist_ok=True)
  records = metrics if isinstance(metrics, list) else read_metrics(metrics) if metrics else []
  paths = dict(report=out / "report.md", json=out / "diagnosis.json", curves=out / "curves.png",
               shapley=out / "shapley.png", dependence=out / "dependence.png")
  caption = _caption(run or {})
  plot_curves(records, result["modalities"], paths["curves"], caption)
  plot_shapley(result, paths["shapley"], caption)
  plot_dependence(result, paths["dependence"], caption)
  plots = {"Accuracy during training": "curves.png", "Shapley values": "shapley.png",
           "Dependence": "dependence.png"}
  paths["report"].write_text(markdown(result, run, plots))
  paths["json"].write_text(json.dumps(dict(run=dict(run or {}), **result), indent=2))
  return paths


def _caption(run: Mapping[str, Any]) -> str:
  """Which run a plot shows: method, data, fusion, step and workdir (empty if unknown)."""
  if "method" not in run:
    return ""
  step = f", step {run['step']} of {run['total_steps']}" if "step" in run else ""
  return (f"{run['method']} on {run.get('data', '?')} ({run.get('fusion', '?')} fusion{step}) "
          f"— {run.get('workdir', '')}")


def _save(fig, path, caption: str):
  if caption:
    fig.suptitle(caption, fontsize=9)
  fig.tight_layout()
  fig.savefig(path, dpi=100)


def _figure(width, height):
  from matplotlib.figure import Figure   # no pyplot: no global backend or figure state
  return Figure(figsize=(width, height))


def _get(record, *paths):
  """The first value found along any of the key ``paths`` (None if absent)."""
  for keys in paths:
    node = record
    for k in keys:
      node = node.get(k) if isinstance(node, dict) else None
    if isinstance(node, (int, float)):
      return float(node)
  return None


def _pct(x) -> str:
  return "n/a" if x is None else f"{100 * x:.2f} %"


def _pp(x) -> str:
  return f"{100 * x:+.2f} pp"


def _cell(v) -> str:
  if isinstance(v, (list, tuple)):
    return ", ".join(str(x) for x in v)
  return str(v)
