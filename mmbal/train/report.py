"""The results table printed at the end of a run."""
from __future__ import annotations


def _pct(x):
  return "   n/a" if x is None else f"{100 * x:6.2f}"


def format_table(results: dict) -> str:
  """Fused and per-modality accuracy (%) on validation and test."""
  rows = [("fused", results["validation"]["fused"]["accuracy"], results["test"]["fused"]["accuracy"])]
  for name in results["modalities"]:
    rows.append((f"unimodal {name}", results["validation"]["unimodal"][name]["accuracy"],
                 results["test"]["unimodal"][name]["accuracy"]))
  width = max(len(r[0]) for r in rows) + 2
  lines = [f"{'accuracy (%)':<{width}} {'val':>6}  {'test':>6}",
           f"{'-' * width} {'-' * 6}  {'-' * 6}"]
  lines += [f"{name:<{width}} {_pct(v)}  {_pct(t)}" for name, v, t in rows]
  lines.append(f"(val n={results['validation']['count']}, test n={results['test']['count']}, "
               f"model selected on validation)")
  return "\n".join(lines)
