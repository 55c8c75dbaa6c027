"""Do the balancing methods balance? Joint training vs every method, several seeds.

For each data set (a strong + a weak modality) and method, trains with the method's
config (`configs/<data>/<method>.py`), selects on validation and reports on test, mean
± std over seeds:

* fused accuracy;
* each modality's linear-probe accuracy on the frozen encoder (the same yardstick for
  every method: how much each encoder learned);
* utilisation u_m = (A_all - A_without_m) / A_all (how much the fused prediction relies
  on m) and the gap u_strong - u_weak (smaller = more balanced).

  PYTHONPATH=. python benchmarks/balance.py                 # ~40 min on 2 CPU cores (5 seeds)
  PYTHONPATH=. python benchmarks/balance.py --methods joint ogm_ge --seeds 0
  PYTHONPATH=. python benchmarks/balance.py --docs          # rewrite the method pages' rows

Writes `benchmarks/results/balance.json` and `benchmarks/results/balance.md`; `--docs`
rewrites, from that JSON, every row `| <data set> (<strong> / <weak>) | <method> | ...` of
the method pages in `docs/methods/`.
"""
from __future__ import annotations

import argparse
import contextlib
import io
import json
import pathlib
import tempfile
import time

import numpy as np

try:  # run as a script (benchmarks/ is on sys.path) or imported as benchmarks.<name>
  from _results import write_json_atomic
except ImportError:
  from benchmarks._results import write_json_atomic

ROOT = pathlib.Path(__file__).resolve().parent.parent
DATASETS = {
    # name: (config dir, overrides, strong modality, weak modality)
    "mfeat pix+fou": ("mfeat", ["data.modalities=pix,fou"], "pix", "fou"),
    "synthetic two_modal": ("synthetic", [], "audio", "video"),
}


# Baselines that are a method's config with overrides: joint training plus unimodal heads
# that train their encoders (L_fused + sum_m L_m), the loss the projection methods start from.
VARIANTS = {"joint_heads": ("joint", ["model.unimodal=heads"]),
            # MNL's own baseline: late fusion (mean) of unimodal heads.
            "joint_late": ("joint", ["model.unimodal=heads", "model.fusion=late"])}


def run_one(data_key, method, seed, data_dir, extra):
  from mmbal.train import apply_overrides, load_config
  from mmbal.train.loop import train_and_evaluate
  folder, overrides, _, _ = DATASETS[data_key]
  method, variant_overrides = VARIANTS.get(method, (method, []))
  overrides = overrides + variant_overrides
  config = load_config(str(ROOT / "configs" / folder / f"{method}.py"))
  config = apply_overrides(config, overrides + [f"seed={seed}", f"data.data_dir={data_dir}",
                                                "log.progress=False"] + extra)
  with tempfile.TemporaryDirectory() as workdir, contextlib.redirect_stdout(io.StringIO()):
    return train_and_evaluate(config, workdir).results["test"]


def summarize(runs, strong, weak):
  def stat(values):
    return dict(mean=float(np.mean(values)), std=float(np.std(values)), values=list(values))
  return dict(
      fused=stat([r["fused"]["accuracy"] for r in runs]),
      probe={m: stat([r["probe"][m]["accuracy"] for r in runs]) for m in (strong, weak)},
      utilisation={m: stat([r["utilisation"][m] for r in runs]) for m in (strong, weak)},
      gap=stat([r["utilisation"][strong] - r["utilisation"][weak] for r in runs]))


def markdown(results, seeds):
  pm = lambda s, scale=100: f"{scale * s['mean']:.1f} ± {scale * s['std']:.1f}"
  lines = []
  for data_key, methods in results.items():
    _, _, strong, weak = DATASETS[data_key]
    lines += [f"**{data_key}** (strong: {strong}, weak: {weak}; test, %, mean ± std over seeds {seeds})",
              "",
              f"| method | fused acc | probe {strong} | probe {weak} | util {strong} | util {weak} | gap |",
              "|---|---|---|---|---|---|---|"]
    for method, s in methods.items():
      lines.append(f"| {method} | {pm(s['fused'])} | {pm(s['probe'][strong])} | {pm(s['probe'][weak])} "
                   f"| {pm(s['utilisation'][strong])} | {pm(s['utilisation'][weak])} | {pm(s['gap'])} |")
    lines.append("")
  return "\n".join(lines)


def row_cells(s: dict, strong: str, weak: str) -> list[str]:
  pm = lambda x: f"{100 * x['mean']:.1f} ± {100 * x['std']:.1f}"
  return [pm(s["fused"]), pm(s["probe"][strong]), pm(s["probe"][weak]),
          pm(s["utilisation"][strong]), pm(s["utilisation"][weak]), pm(s["gap"])]


def rewrite_docs(results: dict, folder: pathlib.Path = ROOT / "docs" / "methods") -> int:
  """Rewrites the balance rows of the method pages from `results`; returns rows changed."""
  changed = 0
  for page in sorted(folder.glob("*.md")):
    lines = page.read_text().split("\n")
    for i, line in enumerate(lines):
      cells = [c.strip() for c in line.strip().strip("|").split("|")]
      for data_key, (_, _, strong, weak) in DATASETS.items():
        if len(cells) == 8 and cells[0] == f"{data_key} ({strong} / {weak})":
          method = cells[1].strip("*")
          new = "| " + " | ".join(cells[:2] + row_cells(results[data_key][method], strong, weak)) + " |"
          changed += new != line
          lines[i] = new
    page.write_text("\n".join(lines))
  return changed


def main():
  from mmbal.methods import REGISTRY
  parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--methods", nargs="+", default=["joint", "joint_heads", "joint_late"] + [
      m for m, method in REGISTRY.items() if not method.baseline and method.data is None])
  parser.add_argument("--merge", action="store_true",
                      help="add to (or replace rows of) the existing results instead of starting anew")
  parser.add_argument("--datasets", nargs="+", default=list(DATASETS), choices=list(DATASETS))
  parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2, 3, 4])
  parser.add_argument("--data-dir", default=str(pathlib.Path.home() / "tensorflow_datasets"))
  parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "balance"))
  parser.add_argument("--docs", action="store_true",
                      help="only rewrite the method pages' rows from the saved results")
  parser.add_argument("overrides", nargs="*", help="config overrides for every run, e.g. train.num_epochs=2")
  args = parser.parse_args()
  if args.docs:
    saved = json.loads(pathlib.Path(args.out).with_suffix(".json").read_text())["results"]
    print(f"{rewrite_docs(saved)} rows rewritten in docs/methods/")
    return

  out = pathlib.Path(args.out)
  results, t0 = {}, time.time()
  if args.merge and out.with_suffix(".json").exists():
    results = json.loads(out.with_suffix(".json").read_text())["results"]
  # Each finished row is saved at once, so an interrupted run resumes where it stopped.
  partial = out.with_suffix(".partial.json")
  done = _resume(partial, args)
  todo = [(d, m) for d in args.datasets for m in args.methods if m not in done.get(d, {})]
  for d, rows in done.items():
    results.setdefault(d, {}).update(rows)
  for i, (data_key, method) in enumerate(todo):
    _, _, strong, weak = DATASETS[data_key]
    runs = [run_one(data_key, method, seed, args.data_dir, args.overrides) for seed in args.seeds]
    s = results.setdefault(data_key, {})[method] = summarize(runs, strong, weak)
    done.setdefault(data_key, {})[method] = s
    write_json_atomic(partial, dict(seeds=args.seeds, overrides=args.overrides, results=done))
    elapsed = time.time() - t0
    print(f"{data_key:22s} {method:18s} fused {100 * s['fused']['mean']:.1f} "
          f"gap {100 * s['gap']['mean']:.1f} ({elapsed:.0f}s, {i + 1}/{len(todo)} rows, "
          f"ETA {elapsed / (i + 1) * (len(todo) - i - 1) / 60:.0f} min)", flush=True)
  order = ["joint", "joint_heads", "joint_late"]   # baselines first, then the methods in registry order
  results = {d: {m: r[m] for m in sorted(r, key=lambda m: (m not in order, order.index(m)
                                                            if m in order else 0))}
             for d, r in results.items()}
  table = markdown(results, args.seeds)
  print(table)
  out.parent.mkdir(parents=True, exist_ok=True)
  out.with_suffix(".json").write_text(json.dumps(
      dict(results=results, seeds=args.seeds, overrides=args.overrides,
           wall_seconds=time.time() - t0), indent=2))
  out.with_suffix(".md").write_text(table)
  partial.unlink(missing_ok=True)


def _resume(partial: pathlib.Path, args) -> dict:
  """The rows an interrupted run of the same seeds and overrides finished (else none)."""
  if not partial.exists():
    return {}
  saved = json.loads(partial.read_text())
  if saved["seeds"] != args.seeds or saved["overrides"] != args.overrides:
    print(f"{partial}: from a run with other seeds or overrides; starting anew", flush=True)
    return {}
  print(f"resuming: {sum(map(len, saved['results'].values()))} rows done in {partial}", flush=True)
  return saved["results"]


if __name__ == "__main__":
  main()
