"""The results table printed at the end of a run."""
from __future__ import annotations


def _pct(x):
  return "   n/a" if x is None else f"{100 * x:6.2f}"


def format_table(results: dict) -> str:
  """Fused and per-modality accuracy (%) on validation and test."""
  val, test = results["validation"], results["test"]
  rows = [("fused", val["fused"]["accuracy"], test["fused"]["accuracy"])]
  for name in results["modalities"]:
    rows.append((f"unimodal {name}", val["unimodal"][name]["accuracy"],
                 test["unimodal"][name]["accuracy"]))
  if "probe" in test:
    for name in results["modalities"]:
      rows.append((f"probe {name}", val["probe"][name]["accuracy"], test["probe"][name]["accuracy"]))
  fused_trained = test["fused"]["accuracy"] is not None   # not a `unimodal` run's untrained head
  for name in results["modalities"] if fused_trained else ():
    rows.append((f"fused without {name}", val["without"][name]["accuracy"],
                 test["without"][name]["accuracy"]))
  width = max(len(r[0]) for r in rows) + 2
  score = "micro-F1 (%)" if results.get("task") == "multilabel" else "accuracy (%)"
  lines = [f"{score:<{width}} {'val':>6}  {'test':>6}",
           f"{'-' * width} {'-' * 6}  {'-' * 6}"]
  lines += [f"{name:<{width}} {_pct(v)}  {_pct(t)}" for name, v, t in rows]
  lines.append(f"val n={val['count']}, test n={test['count']}, model selected on validation.")
  lines.append("unimodal: the model's own unimodal outputs; probe: a linear probe fitted on "
               "frozen encoder features" + (";\nfused without m: the fused prediction with "
               "modality m zeroed (how much the model relies on m)." if fused_trained else "."))
  return "\n".join(lines)
