"""Does each balancing method do what its paper claims? A reproduction protocol.

Per method, on one data set (default AV-MNIST composed from FSDD + MNIST, `configs/av_mnist/`):

1. **Select on validation.** The method's main hyperparameter (`SWEEPS`: 3 values around
   the paper's / mmbal's default) is trained once each with a selection seed that is NOT
   one of the evaluation seeds; the value with the best validation fused accuracy is kept.
   Methods without such a hyperparameter (PCGrad, BalGrad, MLA) run at their defaults.
2. **Evaluate with seeds.** The selected value is trained with every evaluation seed
   (>= 5), and so is each baseline. Per seed: fused test accuracy, each modality's
   linear-probe accuracy on the frozen encoders (one yardstick for every method), the
   model's own unimodal accuracy where it has one, and the utilisation gap.
3. **Compare paired.** Per seed, method minus joint training (same seed: same data order
   and initialisation); the mean difference with a 95% bootstrap interval over seeds
   (percentile, 10,000 resamples).
4. **Verdict on the papers' claim** (the weak modality's encoder learns more, the fused
   accuracy does not drop): *reproduced* when the weak modality's probe difference has an
   interval above 0 and the fused difference's interval is not entirely below 0;
   *reversed* when the weak modality's interval is entirely below 0; *trade-off* when
   the weak modality is up but fused accuracy is down; *not reproduced* otherwise (no
   effect the seeds can tell from zero). The weak modality is the one with the lower
   probe accuracy under joint training.

Every run is saved as it finishes (`<out>.runs.json`), so an interrupted protocol resumes
where it stopped. Outputs: `<out>.json`, `<out>.md` (table) and `<out>.png` (per method:
change in weak-modality accuracy vs change in fused accuracy, with intervals).

  PYTHONPATH=. python benchmarks/reproduce.py --manual-dir /path/to/av_mnist \\
      --data-dir /path/to/tensorflow_datasets \\
      --builder-config "fsdd_mnist:pca_energy=0.75,snr_db=0"       # ~2 h on 2 CPU cores
  PYTHONPATH=. python benchmarks/reproduce.py --quick ...          # smoke test: 2 methods, 1 step
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

# The main hyperparameter per method and the values swept (the middle one is the default).
SWEEPS = {
    "ogm_ge": ("alpha", [0.3, 0.8, 1.5]),
    "agm": ("alpha", [0.5, 1.0, 2.0]),
    "cggm": ("rho", [0.7, 1.3, 2.0]),
    "miles": ("tau", [0.1, 0.2, 0.4]),
    "gradient_blending": ("super_epoch", [1, 2, 4]),
    "mmpareto": ("gamma", [0.5, 1.0, 2.0]),
    "sam": ("rho", [0.01, 0.05, 0.2]),
    "msam": ("rho", [0.01, 0.05, 0.2]),
    "mnl": ("weight", [0.3, 0.7, 1.0]),
    "pmr": ("alpha", [0.5, 1.0, 2.0]),
}
# Rows that are a registered method's config with overrides.
VARIANTS = {
    "joint_heads": ("joint", ["model.unimodal=heads"]),       # + unimodal losses (projection methods' start)
    "joint_split_head": ("joint", ["model.unimodal=split_head"]),   # OGM-GE's and AGM's model
    "joint_late": ("joint", ["model.unimodal=heads", "model.fusion=late"]),   # MNL's own baseline
    "msam_modality": ("msam", ["method.msam.decomposition=modality"]),
    # The official code's OGM-GE: scaling and GE noise on 4-D (convolution) leaves only.
    "ogm_ge_conv": ("ogm_ge", ["method.ogm_ge.leaves=conv"]),
}
BASELINES = ("joint", "joint_heads", "joint_late", "joint_split_head")
QUICK = dict(methods=["joint", "ogm_ge"], seeds=[0, 1], sweep_values=2,
             overrides=["train.num_steps=1", "train.batch_size=16", "eval.batch_size=16",
                        "model.feature_dim=8", "model.hidden_dim=8", "eval.linear_probe=False"])


def default_methods() -> list[str]:
  from mmbal.methods import REGISTRY
  methods = [m for m, method in REGISTRY.items() if not method.baseline and method.data is None]
  variants = {"msam": "msam_modality", "ogm_ge": "ogm_ge_conv"}   # each after its method
  return list(BASELINES) + [row for m in methods for row in (m, variants.get(m)) if row]


def row_config(args, row: str):
  """A row's config: its method's config file with the row's overrides (`VARIANTS`)."""
  from mmbal.train import apply_overrides, load_config
  base, overrides = VARIANTS.get(row, (row, []))
  return apply_overrides(load_config(str(pathlib.Path(args.configs) / f"{base}.py")), overrides)


def own_baseline(args, method: str) -> str | None:
  """A row's own baseline: the baseline row that trains the same model (fusion, unimodal
  branch) without the method, so a gain is credited to the method, not to the losses or
  fusion it trains with (None: a baseline row, or no baseline trains its model)."""
  def model_of(row):
    model = row_config(args, row).model
    return model.fusion, model.unimodal
  if method in BASELINES:
    return None
  return next((b for b in BASELINES if model_of(b) == model_of(method)), None)


def sweep_of(method: str, quick: bool) -> tuple[str, str, list]:
  """(the field overridden, its config path, the values) of a row's sweep; one None value
  when the row has nothing to sweep."""
  base = VARIANTS.get(method, (method, []))[0]
  if base not in SWEEPS:
    return "", "", [None]
  field, values = SWEEPS[base]
  return field, f"method.{base}.{field}", values[:QUICK["sweep_values"]] if quick else values


def run_one(args, method: str, setting: str, value, seed: int) -> dict:
  """Trains one row at one value and seed; returns its validation and test measures."""
  from mmbal.train import apply_overrides
  from mmbal.train.loop import train_and_evaluate
  config = row_config(args, method)
  overrides = [f"{setting}={value}"] if setting else []
  common = [f"seed={seed}", f"data.data_dir={args.data_dir}", "log.progress=False"]
  if args.manual_dir:
    common.append(f"data.manual_dir={args.manual_dir}")
  if args.builder_config:
    common.append(f"data.builder_config={args.builder_config}")
  config = apply_overrides(config, overrides + common + args.overrides)
  with tempfile.TemporaryDirectory() as workdir, contextlib.redirect_stdout(io.StringIO()):
    results = train_and_evaluate(config, workdir).results
  if results is None:   # stopped by a signal: the runs saved so far are kept
    raise SystemExit("stopped; run the same command again to resume")
  test = results["test"]
  return dict(
      val_fused=results["validation"]["fused"]["accuracy"],
      fused=test["fused"]["accuracy"],
      probe={m: r["accuracy"] for m, r in test.get("probe", {}).items()},
      unimodal={m: r["accuracy"] for m, r in test["unimodal"].items()},
      utilisation=test["utilisation"])


# ----------------------------------------------------------------------------- statistics


def bootstrap_interval(diffs, *, resamples: int = 10_000, seed: int = 0) -> list[float]:
  """95% percentile interval of the mean of paired differences, resampling seeds."""
  diffs = np.asarray(diffs, np.float64)
  rng = np.random.default_rng(seed)
  means = diffs[rng.integers(0, len(diffs), (resamples, len(diffs)))].mean(axis=1)
  return [float(np.percentile(means, 2.5)), float(np.percentile(means, 97.5))]


def verdict(weak_ci, fused_ci) -> str:
  if weak_ci[1] < 0:
    return "reversed"
  if weak_ci[0] > 0:
    return "trade-off" if fused_ci[1] < 0 else "reproduced"
  return "not reproduced"


def yardstick(run: dict, modality: str) -> float:
  """How much a modality's encoder learned: its probe accuracy (else its unimodal output)."""
  value = run["probe"].get(modality)
  return run["unimodal"][modality] if value is None else value


def measures(runs: list[dict], modalities, weak: str) -> dict[str, list[float]]:
  """Per seed: fused accuracy, each modality's yardstick accuracy, the utilisation gap."""
  strong = [m for m in modalities if m != weak]
  gap = [max(r["utilisation"][m] for m in strong) - r["utilisation"][weak] for r in runs]
  return dict(fused=[r["fused"] for r in runs], gap=gap,
              **{f"probe_{m}": [yardstick(r, m) for r in runs] for m in modalities})


def summarize(rows: dict, seeds: list[int], baselines: dict | None = None) -> dict:
  """Per row: mean ± std of each measure, and the paired differences to joint training
  and (``baselines``: row -> its own baseline row) to its own baseline."""
  runs_of = lambda row: [row["runs"][str(s)] for s in seeds]
  joint = runs_of(rows["joint"])
  modalities = list(joint[0]["unimodal"])
  weak = min(modalities, key=lambda m: np.mean([yardstick(r, m) for r in joint]))
  reference = measures(joint, modalities, weak)
  out = dict(weak=weak, strong=[m for m in modalities if m != weak], rows={})
  for name, row in rows.items():
    values = measures(runs_of(row), modalities, weak)
    summary = dict(selected=row.get("selected"), sweep=row.get("sweep"),
                   mean={k: float(np.mean(v)) for k, v in values.items()},
                   std={k: float(np.std(v)) for k, v in values.items()}, values=values)
    if name != "joint":
      diffs = {k: np.subtract(v, reference[k]) for k, v in values.items()}
      summary["diff"] = {k: dict(mean=float(np.mean(d)), ci=bootstrap_interval(d))
                         for k, d in diffs.items()}
      summary["verdict"] = verdict(summary["diff"][f"probe_{weak}"]["ci"],
                                   summary["diff"]["fused"]["ci"])
    own = (baselines or {}).get(name)
    if own is not None and own != "joint" and own in rows:
      base = measures(runs_of(rows[own]), modalities, weak)
      diffs = {k: np.subtract(values[k], base[k]) for k in ("fused", f"probe_{weak}")}
      summary["baseline"] = own
      summary["diff_baseline"] = {k: dict(mean=float(np.mean(d)), ci=bootstrap_interval(d))
                                  for k, d in diffs.items()}
      summary["verdict_baseline"] = verdict(summary["diff_baseline"][f"probe_{weak}"]["ci"],
                                            summary["diff_baseline"]["fused"]["ci"])
    elif own == "joint":
      summary["baseline"] = "joint"
    out["rows"][name] = summary
  return out


# ----------------------------------------------------------------------------- reporting


def markdown(summary: dict, seeds, setup: str) -> str:
  weak, strong = summary["weak"], summary["strong"]
  pct = lambda x: f"{100 * x:.1f}"
  ci = lambda d: f"{100 * d['mean']:+.1f} [{100 * d['ci'][0]:+.1f}, {100 * d['ci'][1]:+.1f}]"
  lines = [f"{setup}; test accuracy (%), mean ± std over seeds {seeds}; weak modality: {weak}. "
           "Δ: paired difference to joint training (same seeds) with its 95% bootstrap interval; "
           "vs own baseline: the same against joint training of the method's own model "
           "(same fusion and unimodal heads, no method).",
           "",
           f"| method | selected | fused | probe {' | probe '.join(strong)} | probe {weak} | gap "
           f"| Δ fused | Δ probe {weak} | claim | vs own baseline: Δ fused, Δ probe {weak} |",
           "|---|---|---|" + "---|" * len(strong) + "---|---|---|---|---|---|"]
  for name, row in summary["rows"].items():
    m, s = row["mean"], row["std"]
    cells = [f"{pct(m[k])} ± {pct(s[k])}" for k in ["fused"] + [f"probe_{x}" for x in strong] +
             [f"probe_{weak}", "gap"]]
    diff = row.get("diff")
    lines.append(f"| {name} | {row['selected'] if row['selected'] is not None else '–'} | "
                 + " | ".join(cells) + " | "
                 + (f"{ci(diff['fused'])} | {ci(diff[f'probe_{weak}'])} | {row['verdict']} | "
                    if diff else "(reference) | | | ")
                 + _versus_own(row, weak) + " |")
  return "\n".join(lines) + "\n"


def _versus_own(row: dict, weak: str) -> str:
  ci = lambda d: f"{100 * d['mean']:+.1f} [{100 * d['ci'][0]:+.1f}, {100 * d['ci'][1]:+.1f}]"
  own = row.get("diff_baseline")
  if own is None:
    return "= joint" if row.get("baseline") == "joint" else "–"
  return (f"{row['baseline']}: {ci(own['fused'])}, {ci(own[f'probe_{weak}'])} "
          f"({row['verdict_baseline']})")


def figure(summary: dict, path: pathlib.Path, setup: str):
  import matplotlib
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt
  weak = summary["weak"]
  fig, ax = plt.subplots(figsize=(7, 5.5))
  colours = {"reproduced": "tab:green", "trade-off": "tab:orange", "reversed": "tab:red",
             "not reproduced": "tab:gray"}
  for name, row in summary["rows"].items():
    if "diff" not in row:
      continue
    dx, dy = row["diff"][f"probe_{weak}"], row["diff"]["fused"]
    x, y = 100 * dx["mean"], 100 * dy["mean"]
    ax.errorbar(x, y, xerr=[[x - 100 * dx["ci"][0]], [100 * dx["ci"][1] - x]],
                yerr=[[y - 100 * dy["ci"][0]], [100 * dy["ci"][1] - y]], fmt="o",
                color=colours[row["verdict"]], capsize=3)
    ax.annotate(name, (x, y), textcoords="offset points", xytext=(4, 4), fontsize=8)
  ax.axhline(0, color="k", lw=0.8)
  ax.axvline(0, color="k", lw=0.8)
  ax.set_xlabel(f"Δ {weak} probe accuracy vs joint (points)")
  ax.set_ylabel("Δ fused accuracy vs joint (points)")
  ax.set_title(f"{setup}\n(95% bootstrap intervals over seeds; colour = verdict on the claim)",
               fontsize=9)
  for verdict_name, colour in colours.items():
    ax.plot([], [], "o", color=colour, label=verdict_name)
  ax.legend(fontsize=8, loc="best")
  fig.tight_layout()
  fig.savefig(path, dpi=120)
  plt.close(fig)


# ----------------------------------------------------------------------------- protocol


def plan(args) -> list[tuple[str, str, object, int, str]]:
  """Every run of the protocol, in order: (row, setting, value, seed, purpose)."""
  runs = []
  for method in args.methods:
    _, setting, values = sweep_of(method, args.quick)
    if len(values) > 1:
      runs += [(method, setting, v, args.selection_seed, "sweep") for v in values]
    runs += [(method, setting, "selected" if len(values) > 1 else values[0], s, "seed")
             for s in args.seeds]
  return runs


def key(method, value, seed) -> str:
  return f"{method}|{value}|{seed}"


def run_protocol(args, done: dict, out: pathlib.Path) -> dict:
  """Runs what `done` lacks, saving after each run; returns the selected value per row."""
  todo = plan(args)
  t0, ran = time.time(), 0
  for i, (method, setting, value, seed, purpose) in enumerate(todo):
    if value == "selected":   # the sweep before it in `todo` is finished
      value = _selected(args, done)[method]
    k = key(method, value, seed)
    if k not in done["runs"]:
      done["runs"][k] = run_one(args, method, setting, value, seed)
      write_json_atomic(out.with_suffix(".runs.json"), done)
      ran += 1
      elapsed = time.time() - t0
      label = f"{method} {setting.split('.')[-1]}={value}" if setting else method
      print(f"[{i + 1}/{len(todo)}] {label} seed {seed} ({purpose}): "
            f"val {100 * done['runs'][k]['val_fused']:.1f} test {100 * done['runs'][k]['fused']:.1f}"
            f"  ({elapsed / 60:.0f} min, ETA {elapsed / ran * (len(todo) - i - 1) / 60:.0f} min)",
            flush=True)
  return _selected(args, done)


def _selected(args, done: dict) -> dict:
  """The selected value of every row whose sweep is finished."""
  selected = {}
  for method in args.methods:
    _, _, values = sweep_of(method, args.quick)
    scores = [done["runs"].get(key(method, v, args.selection_seed), {}).get("val_fused")
              for v in values]
    if len(values) > 1 and None not in scores:
      selected[method] = values[int(np.argmax(scores))]   # ties: the smaller value
  return selected


def main(argv=None):
  from mmbal.data import pipeline
  parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--configs", default=str(ROOT / "configs" / "av_mnist"),
                      help="the data set's config folder (joint.py and one file per method)")
  parser.add_argument("--methods", nargs="+", default=None,
                      help="rows (default: joint, joint_heads, joint_late, every method, msam_modality)")
  parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2, 3, 4])
  parser.add_argument("--selection-seed", type=int, default=100)
  parser.add_argument("--data-dir", default=str(pathlib.Path.home() / "tensorflow_datasets"))
  parser.add_argument("--manual-dir", default=None)
  parser.add_argument("--builder-config", default=None,
                      help='e.g. "fsdd_mnist:pca_energy=0.75,snr_db=0"')
  parser.add_argument("--quick", action="store_true", help="smoke test: joint + OGM-GE, 2 seeds, 1 step")
  parser.add_argument("--readme", action="store_true",
                      help="also put the table into README.md (between its reproduce markers)")
  parser.add_argument("--report-only", action="store_true",
                      help="train nothing: report the rows finished so far")
  parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "reproduce_av_mnist"))
  parser.add_argument("overrides", nargs="*", help="config overrides for every run")
  args = parser.parse_args(argv)
  if args.quick:
    args.methods = args.methods or QUICK["methods"]
    args.seeds = QUICK["seeds"]
    args.overrides = QUICK["overrides"] + args.overrides
  args.methods = args.methods or default_methods()
  if "joint" not in args.methods:
    args.methods = ["joint"] + args.methods
  if len(set(args.seeds)) < 2 or args.selection_seed in args.seeds:
    parser.error("--seeds: at least 2 distinct seeds, none equal to --selection-seed")

  if not args.quick:
    _compilation_cache()
  out = pathlib.Path(args.out)
  setup = (f"{pathlib.Path(args.configs).name} ({args.builder_config or 'default data'})"
           + (f", overrides {args.overrides}" if args.overrides else ""))
  done = _resume(out.with_suffix(".runs.json"), args, setup)
  if args.report_only:   # the rows finished so far (e.g. while the protocol still runs)
    selected = _selected(args, done)
  else:
    with pipeline.reuse_in_memory_loads():   # one read of the data for every run
      selected = run_protocol(args, done, out)

  rows, unfinished = {}, []
  for method in args.methods:
    field, _, values = sweep_of(method, args.quick)
    value = selected.get(method, values[0])
    if len(values) > 1 and method not in selected or any(
        key(method, value, s) not in done["runs"] for s in args.seeds):
      unfinished.append(method)
      continue
    rows[method] = dict(
        runs={str(s): done["runs"][key(method, value, s)] for s in args.seeds},
        selected=f"{field}={value}" if field else None,
        sweep={str(v): done["runs"][key(method, v, args.selection_seed)]["val_fused"]
               for v in values} if len(values) > 1 else None)
  if unfinished:
    print(f"not finished yet, left out: {unfinished}")
  summary = summarize(rows, args.seeds, {m: own_baseline(args, m) for m in rows})
  table = markdown(summary, args.seeds, setup) + (
      f"\nNot finished yet (the protocol resumes): {', '.join(unfinished)}.\n" if unfinished else "")
  print(table)
  out.parent.mkdir(parents=True, exist_ok=True)
  write_json_atomic(out.with_suffix(".json"), dict(setup=setup, seeds=args.seeds,
                                               selection_seed=args.selection_seed, **summary))
  out.with_suffix(".md").write_text(table)
  figure(summary, out.with_suffix(".png"), setup)
  if args.readme:
    _into_readme(table)
  return summary


def _into_readme(table: str, path: pathlib.Path = ROOT / "README.md"):
  start, end = "<!-- reproduce:start -->", "<!-- reproduce:end -->"
  text = path.read_text()
  head, rest = text.split(start, 1)
  path.write_text(f"{head}{start}\n{table}{end}{rest.split(end, 1)[1]}")


def _compilation_cache():
  """Seeds of one row compile the same programs: keep them across runs."""
  import jax
  if not jax.config.jax_compilation_cache_dir:
    jax.config.update("jax_compilation_cache_dir",
                      str(pathlib.Path(tempfile.gettempdir()) / "mmbal_jax_cache"))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.5)


def _resume(path: pathlib.Path, args, setup: str) -> dict:
  """The runs an interrupted protocol with the same setup finished; another setup's runs are
  never overwritten."""
  if path.exists():
    saved = json.loads(path.read_text())
    if saved.get("setup") == setup:
      print(f"resuming: {len(saved['runs'])} runs done in {path}", flush=True)
      return saved
    raise SystemExit(f"{path} holds {len(saved['runs'])} runs of another setup "
                     f"({saved.get('setup')}; this one: {setup}); pass another --out to start "
                     f"anew (nothing is overwritten)")
  return dict(setup=setup, runs={})


if __name__ == "__main__":
  main()
