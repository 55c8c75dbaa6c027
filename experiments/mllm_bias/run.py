"""Run a factor experiment over seeds and write its report (Markdown + PNG + JSON).

    python -m experiments.mllm_bias data --out results/mllm_bias          # factor 1
    python -m experiments.mllm_bias backbones --out results/mllm_bias     # factor 2
    python -m experiments.mllm_bias objectives --out results/mllm_bias    # factor 3
    python -m experiments.mllm_bias all --seeds 0 1 2 --scale 2           # longer runs
    python -m experiments.mllm_bias all --large                            # on an accelerator

Every finished run is saved as ``<out>/<experiment>/runs/<condition>__seed<k>.json`` and
skipped when the command is run again, so an interrupted experiment resumes where it stopped
(delete the folder to start over). ``--tiny`` runs a seconds-sized smoke version (its numbers
mean nothing).
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import pathlib
import re
import sys
import time

import jax
import numpy as np

from experiments.mllm_bias import common, report, survival
from experiments.mllm_bias.common import Budget, run
from experiments.mllm_bias.factors import EXPERIMENTS, Experiment, early_step, judge

METRICS = (("ood_accuracy", "inverted-prior (OOD) accuracy"),
           ("ood_prior_following", "OOD answers = the language prior"),
           ("id_accuracy", "ordinary (ID) accuracy"),
           ("id_blind_accuracy", "ID accuracy, image blanked"))


def slug(text: str) -> str:
  return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")


def run_experiment(experiment: Experiment, budget: Budget, seeds, out: pathlib.Path,
                   only: str | None = None, log=print, saved_only: bool = False) -> dict:
  """``{condition: [history per seed]}``, running (or loading) every condition x seed
  (``saved_only``: only the runs already saved; conditions without any are left out)."""
  budget = dataclasses.replace(budget, base_data=experiment.base_data)
  folder = out / experiment.name / "runs"
  folder.mkdir(parents=True, exist_ok=True)
  results = {}
  conditions = [c for c in experiment.conditions if not only or re.search(only, c.name)]
  if not conditions:
    raise ValueError(f"--only {only!r} matches none of {[c.name for c in experiment.conditions]}")
  for i, setting in enumerate(conditions):
    results[setting.name] = []
    for seed in seeds:
      path = folder / f"{slug(setting.name)}__seed{seed}.json"
      if path.exists():
        saved = json.loads(path.read_text())
        if saved["budget"] == json.loads(json.dumps(dataclasses.asdict(budget))):
          results[setting.name].append(_current_names(saved["history"]))
          continue
      if saved_only:
        continue
      start = time.time()
      history = run(setting, budget, seed)
      saved = dict(condition=setting.name, seed=seed, budget=dataclasses.asdict(budget),
                   setting=dataclasses.asdict(setting), seconds=time.time() - start,
                   history=history)
      tmp = path.with_suffix(".tmp")
      tmp.write_text(json.dumps(saved, indent=1))
      tmp.replace(path)                       # atomic: a killed run leaves no half file
      results[setting.name].append(history)
      log(f"[{experiment.name}] {i + 1}/{len(conditions)} {setting.name} seed {seed}: "
          f"T_escape={report.escape_step(history)} OOD={history[-1]['ood_accuracy']:.2f} "
          f"({time.time() - start:.0f} s)", flush=True)
  return {name: runs for name, runs in results.items() if runs}


def _current_names(history: list[dict]) -> list[dict]:
  """A saved history with today's metric names (KL(full || blank) was stored as ``id_vig``
  before it was renamed ``id_blind_kl``), so old and new runs of a condition aggregate."""
  return [{("id_blind_kl" if k == "id_vig" else k): v for k, v in e.items()} for e in history]


def condition_rows(experiment: Experiment, results: dict, budget: Budget):
  early = early_step(budget)
  header = ["condition", "T_escape (steps)", f"OOD acc @{early}", f"OOD acc @{budget.steps}",
            f"ID acc @{budget.steps}", f"OOD prior-following @{budget.steps}",
            f"ID blind acc @{budget.steps}", f"KL(full‖blank) @{budget.steps} (nats)",
            f"grad ratio V/L (≤{early})"]
  rows = []
  for name, histories in results.items():
    ratio = [np.mean([r["grad_ratio"] for r in h if r["step"] <= early]) for h in histories]
    rows.append([name, report.escape_summary(histories),
                 report.mean_std(report.at_step(histories, "ood_accuracy", early)),
                 report.mean_std(report.at_step(histories, "ood_accuracy")),
                 report.mean_std(report.at_step(histories, "id_accuracy")),
                 report.mean_std(report.at_step(histories, "ood_prior_following")),
                 report.mean_std(report.at_step(histories, "id_blind_accuracy")),
                 report.mean_std(report.at_step(histories, "id_blind_kl"), 3),
                 report.mean_std(ratio)])
  return header, rows


def step_costs(experiment: Experiment, results: dict, budget: Budget,
               folder: pathlib.Path) -> dict[str, float]:
  """XLA FLOPs per training step of each condition with runs (`common.step_flops`), kept in
  ``<folder>/step_flops.json`` with the budget, the backend and jax version, and each
  condition's setting (compiling them takes a minute); a change in any of these is measured
  again. Conditions without runs keep their saved entry."""
  path = folder / "step_flops.json"
  as_json = lambda x: json.loads(json.dumps(dataclasses.asdict(x)))
  record = dict(budget=as_json(budget), backend=jax.default_backend(), jax=jax.__version__)
  saved = json.loads(path.read_text()) if path.exists() else {}
  same = all(saved.get(k) == v for k, v in record.items())
  settings = dict(saved.get("settings", {})) if same else {}
  costs = {k: v for k, v in saved.get("flops", {}).items() if k in settings} if same else {}
  for setting in experiment.conditions:
    if setting.name not in results:
      continue
    current = as_json(setting)
    if settings.get(setting.name) != current or setting.name not in costs:
      settings[setting.name] = current
      costs[setting.name] = common.step_flops(setting, budget)
  path.write_text(json.dumps(dict(record, settings=settings, flops=costs), indent=1) + "\n")
  return {name: costs[name] for name in results if name in costs}


def write_report(experiment: Experiment, results: dict, budget: Budget, seeds, out: pathlib.Path,
                 command: str) -> pathlib.Path:
  budget = dataclasses.replace(budget, base_data=experiment.base_data)
  folder = out / experiment.name
  figures = []
  for k, (title, names) in enumerate(experiment.groups):
    present = {n: results[n] for n in names if n in results}
    if not present:
      continue
    path = folder / f"curves_{k + 1}.png"
    report.plot_curves(path, present, METRICS, title,
                       reference={f"blind prior ({budget.prior:.2f})": budget.prior})
    figures.append((title, path.name))
  report.plot_escape_bars(folder / "escape.png", results, budget.steps,
                          f"{experiment.title.split(' — ')[0]}: how long the prior holds")
  figures.insert(0, ("T_escape per condition", "escape.png"))
  costs = (step_costs(experiment, results, budget, folder)
           if any(c.summary == "escape_compute" for c in experiment.claims) else None)
  claims = [(c, judge(c, results, budget, costs)) for c in experiment.claims
            if c.better in results and c.worse in results]
  adjusted = survival.holm([j.p_value for _, j in claims]) if claims else []
  verdicts = [j.as_claimed and p < 0.05 for (_, j), p in zip(claims, adjusted)]
  header, rows = condition_rows(experiment, results, budget)
  lines = [
      f"# {experiment.title}", "", experiment.question, "",
      f"Command: `{command}`", "",
      "Setup: the tiny VLM (`mmbal.models.TinyVLM`: patch encoder, projector, "
      f"{budget.depth}-block causal LM, d={budget.dim}) trained with next-token cross-entropy on "
      f"the answer token of prior-VQA colour questions (`mmbal.data.prior_vqa`), "
      f"{budget.num_train} training examples, batch {budget.batch}, Adam {budget.learning_rate}, "
      f"{budget.steps} steps, evaluated every {budget.eval_every} steps on {budget.num_test} "
      f"ordinary (ID) and {budget.num_test} inverted-prior (OOD) test questions; seeds "
      f"{list(seeds)} (mean ± std over seeds). Language prior: in training and ID test the answer "
      f"is the shape's prior colour with probability {budget.prior} (a blind model scores "
      f"{budget.prior} on ID and 0 on OOD); the OOD split never uses the prior colour."
      + (f" Shared data settings: {dict(experiment.base_data)}." if experiment.base_data else ""),
      "",
      "Blind scores remove the image by replacing it with a constant image at the training "
      "images' mean pixel value (`blind=\"blank\"`); T_escape is the first evaluated step with OOD "
      "accuracy ≥ 0.5 (runs that never escape are counted in the parenthesis; in the claims they "
      "are censored at the budget).", "",
      "## Conditions", "", report.markdown_table(header, rows), "",
      "## Claims", "",
      "Each claim is tested over the seeds: T_escape with a log-rank test (runs that never "
      "escape censored at the budget, Kaplan–Meier medians shown), a metric with a two-sided "
      "Mann-Whitney U test; p-values Holm-corrected over this report's claims. A claim is "
      "*reproduced* when the corrected p < 0.05 and the difference points the claimed way.", "",
      report.markdown_table(
          ["claim", "measure", "better condition", "other condition", "test", "p (Holm)",
           "verdict"],
          [[c.text, {"escape": "T_escape", "escape_compute": "T_escape in TFLOP"}.get(
              c.summary, f"{c.summary} @{'end' if c.step == 'end' else early_step(budget)}"),
            f"{c.better}: {j.better}", f"{c.worse}: {j.worse}", j.test,
            f"{j.p_value:.3g} ({p:.3g})",
            "**reproduced**" if ok else "**not reproduced**" if j.tested else "**not tested**"]
           for (c, j), p, ok in zip(claims, adjusted, verdicts)]), "",
  ]
  untested = [c.text for c, j in claims if not j.tested]
  failed = [c.text for (c, j), ok in zip(claims, verdicts) if j.tested and not ok]
  if failed:
    lines += ["Not reproduced here: " + "; ".join(failed) + ".", ""]
  if untested:
    lines += ["Not tested (fewer than 2 runs a side): " + "; ".join(untested) + ".", ""]
  if not failed and not untested:
    lines += ["Every claim above reproduced.", ""]
  for title, name in figures:
    lines += [f"![{title}]({name})", ""]
  path = folder / "report.md"
  path.write_text("\n".join(lines))
  (folder / "results.json").write_text(json.dumps(dict(
      experiment=experiment.name, budget=dataclasses.asdict(budget), seeds=list(seeds),
      conditions=results,
      claims=[dict(text=c.text, better=c.better, worse=c.worse, measure=c.summary,
                   reproduced=ok, test=j.test, p_value=j.p_value, p_holm=p,
                   better_summary=j.better, worse_summary=j.worse)
              for (c, j), p, ok in zip(claims, adjusted, verdicts)]),
      indent=1))
  return path


def main(argv=None):
  parser = argparse.ArgumentParser(prog="python -m experiments.mllm_bias", description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("experiment", choices=list(EXPERIMENTS) + ["all"])
  parser.add_argument("--out", default="results/mllm_bias")
  parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
  parser.add_argument("--scale", type=float, default=1.0, help="multiply the training steps")
  size = parser.add_mutually_exclusive_group()
  size.add_argument("--tiny", action="store_true", help="seconds-sized smoke run")
  size.add_argument("--large", action="store_true",
                    help="a bigger model and budget, for an accelerator (Budget.large)")
  parser.add_argument("--only", help="regex: run only the conditions whose name matches")
  parser.add_argument("--report-only", action="store_true",
                      help="write the report from the runs saved so far (no training)")
  args = parser.parse_args(argv)
  budget = Budget.tiny() if args.tiny else Budget.large() if args.large else Budget()
  if args.scale != 1.0:
    budget = budget.scaled(args.scale)
  out = pathlib.Path(args.out)
  command = "python -m experiments.mllm_bias " + " ".join(
      a for a in (argv if argv is not None else sys.argv[1:]) if a != "--report-only")
  names = list(EXPERIMENTS) if args.experiment == "all" else [args.experiment]
  for name in names:
    experiment = EXPERIMENTS[name]()
    results = run_experiment(experiment, budget, args.seeds, out, args.only,
                             saved_only=args.report_only)
    print(f"wrote {write_report(experiment, results, budget, args.seeds, out, command)}")


if __name__ == "__main__":
  main()
