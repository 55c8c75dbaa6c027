"""The prior-strength x visual-difficulty x LM-capacity grid, analysed as time-to-event.

    python -m experiments.mllm_bias.grid --out results/mllm_bias --seeds 0 1 2 3 4 5 6 7 8 9
    python -m experiments.mllm_bias.grid --tiny --out /tmp/grid --seeds 0 1   # smoke run

The outcome is the *prior-induced delay* of each cell: how much later the model leaves the
language shortcut (T_escape: the first evaluation with inverted-prior accuracy >= 0.5) with a
language prior of strength p than the same model on the same images with no prior
(p = 1/K, every colour equally likely per question). Runs that never escape within the budget
are censored (`survival`), never dropped: each cell's T_escape is a Kaplan–Meier curve, the
delay is the difference of medians, and each prior is compared with its no-prior control by a
log-rank test (Holm-corrected over the grid). The delay is given in steps and in training
compute (6 x parameters x tokens per step, the usual transformer estimate), since the two
LM capacities cost different amounts per step.

A cell whose no-prior control does not escape within the budget (in at least half its seeds)
is *too hard for this model*: the images alone do not carry enough evidence, so following the
prior there is the rational answer, not a bias; its delays are not reported as prior effects.
Every run is saved as it finishes (`run_experiment`), so the grid resumes after interruption.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import pathlib
import time

import jax
import numpy as np
from flax import nnx

from experiments.mllm_bias import report, survival
from experiments.mllm_bias.common import Budget, Setting, data_config, tiny_vlm, vision_ceiling
from experiments.mllm_bias.factors import Experiment, escape_times
from experiments.mllm_bias.run import run_experiment
from mmbal.data.prior_vqa import seq_len, vocabulary

NO_PRIOR = "no prior"
PRIORS = (NO_PRIOR, 0.5, 0.8, 0.95)
DIFFICULTIES = {"clean": (), "low contrast 0.6": (("color_similarity", 0.6),),
                "small object (32x32 canvas)": (("image_size", 32),),
                "pixel noise 0.3": (("noise", 0.3),)}
CAPACITIES = {"1-block LM": dict(depth=1), "2-block LM": dict(depth=2)}


def cell_name(prior, difficulty: str) -> str:
  return f"{difficulty}, {'prior ' + format(prior, 'g') if prior != NO_PRIOR else NO_PRIOR}"


def grid_experiment(capacity: str, priors=PRIORS, difficulties=tuple(DIFFICULTIES)) -> Experiment:
  """The cells of one LM capacity as an `Experiment` (one saved run per cell and seed)."""
  k = len(vocabulary(data_config(Setting("x"), Budget(), 0)).answer_ids_for("color"))
  conditions = tuple(
      Setting(cell_name(p, d), data=DIFFICULTIES[d] + (("prior", 1.0 / k if p == NO_PRIOR else p),))
      for d in difficulties for p in priors)
  return Experiment(f"grid/{_slug(capacity)}", f"Prior x difficulty grid, {capacity}",
                    "How much later does a prior of strength p make the model escape?",
                    conditions, claims=(), groups=())


def _slug(text: str) -> str:
  return "".join(c if c.isalnum() else "-" for c in text.lower()).strip("-")


def training_flops_per_step(budget: Budget, config) -> float:
  """``6 N T``: parameters N of the VLM (vision + projector + LM) times the tokens T of a
  batch (visual tokens + the question's text tokens, per example, times the batch)."""
  model = tiny_vlm(vocabulary(config).size, config, budget, 0)
  params = sum(x.size for x in jax.tree.leaves(nnx.state(model, nnx.Param)))
  side = config.image_size * config.upsample // budget.patch
  return 6.0 * params * budget.batch * (side * side + seq_len(config))


def vision_ceilings(difficulties, budget: Budget, seeds, out: pathlib.Path,
                    saved_only: bool = False, log=print) -> dict[str, list[float]]:
  """`common.vision_ceiling` per difficulty and seed, each saved as it finishes (resumable)."""
  folder = out / "grid" / "vision-only"
  folder.mkdir(parents=True, exist_ok=True)
  found: dict[str, list[float]] = {}
  record = json.loads(json.dumps(dataclasses.asdict(budget)))
  legacy = json.loads(json.dumps(dataclasses.asdict(Budget())))   # files without a record
  for d in difficulties:
    for seed in seeds:
      path = folder / f"{_slug(d)}__seed{seed}.json"
      # A ceiling measured with another budget does not count (files from before the budget
      # was recorded were all measured with the default one).
      if not path.exists() or json.loads(path.read_text()).get("budget", legacy) != record:
        if saved_only:
          continue
        start = time.time()
        accuracy = vision_ceiling(DIFFICULTIES[d], budget, seed)
        path.write_text(json.dumps(dict(difficulty=d, seed=seed, ood_accuracy=accuracy,
                                        seconds=time.time() - start, budget=record)))
        log(f"[grid] vision-only ceiling, {d}, seed {seed}: OOD accuracy {accuracy:.2f}")
      found.setdefault(d, []).append(json.loads(path.read_text())["ood_accuracy"])
  return found


def analyse(results: dict, budget: Budget, capacity: str, difficulties, priors,
            ceilings=None) -> list[dict]:
  """One row per (difficulty, prior != none): medians, delay, log-rank vs the no-prior cell,
  and the difficulty's vision-only ceiling (mean over seeds) when measured."""
  budget = dataclasses.replace(budget, **CAPACITIES[capacity])
  rows = []
  for d in difficulties:
    control = results.get(cell_name(NO_PRIOR, d))
    if not control:
      continue
    t0, e0 = escape_times(control, budget)
    km0 = survival.kaplan_meier(t0, e0)
    too_hard = survival.median_time(km0) is None
    flops = training_flops_per_step(budget, data_config(Setting("x", data=DIFFICULTIES[d]), budget, 0))
    for p in priors:
      runs = results.get(cell_name(p, d))
      if p == NO_PRIOR or not runs:
        continue
      t, e = escape_times(runs, budget)
      km = survival.kaplan_meier(t, e)
      test = survival.log_rank(t, e, t0, e0)
      median, median0 = survival.median_time(km), survival.median_time(km0)
      delay = None if median is None or median0 is None else median - median0
      rows.append(dict(capacity=capacity, difficulty=d, prior=p, seeds=len(runs),
                       control_seeds=len(control),
                       switching_point=_median_switch(runs),
                       control_switching_point=_median_switch(control),
                       escaped=int(sum(e)), control_escaped=int(sum(e0)),
                       median=median, control_median=median0, delay_steps=delay,
                       delay_flops=None if delay is None else delay * flops,
                       locked_at_end=survival.survival_at(km, budget.steps),
                       chi2=test.chi2, p_value=test.p_value, too_hard=too_hard,
                       # the log-rank direction: fewer escapes than expected = held longer
                       prior_holds=test.observed_a < test.expected_a,
                       vision_ceiling=(float(np.mean(ceilings[d]))
                                       if ceilings and ceilings.get(d) else None),
                       end_ood_accuracy=_mean_at_end(runs, "ood_accuracy"),
                       vcd_ood_accuracy=_mean_at_end(runs, "ood_vcd_accuracy")))
  return rows


def _mean_at_end(histories, metric: str):
  values = [h[-1][metric] for h in histories if metric in h[-1]]
  return float(np.mean(values)) if values else None


def _median_switch(histories):
  switches = [h[-1]["switching_point"] for h in histories if "switching_point" in h[-1]]
  return float(np.median(switches)) if switches else None


def _fmt(x, digits=0):
  return "—" if x is None else f"{x:.{digits}f}"


def write_report(rows: list[dict], budget: Budget, seeds, out: pathlib.Path, command: str,
                 compared=()):
  for row, adjusted in zip(rows, survival.holm([r["p_value"] for r in rows])):
    row["p_holm"] = adjusted
  header = ["LM", "images", "prior", "escaped / control", "median T (steps)",
            "no-prior median", "delay (steps)", "delay (TFLOP)", "still locked at end",
            "switch w (no prior)", "vision-only OOD acc", "OOD acc at end: plain / VCD",
            "log-rank p (Holm)", "reading"]
  table = []
  for r in rows:
    if r["too_hard"]:
      reading = "too hard without a prior: not a prior effect"
    elif r["p_holm"] < 0.05:
      reading = "prior delays the escape" if r["prior_holds"] else "prior speeds it"
    else:
      reading = "no delay shown"
    table.append([r["capacity"], r["difficulty"], format(r["prior"], "g"),
                  f"{r['escaped']}/{r['seeds']} vs "
                  f"{r['control_escaped']}/{r['control_seeds']}",
                  _fmt(r["median"]) if r["median"] is not None else f"> {budget.steps}",
                  _fmt(r["control_median"]) if r["control_median"] is not None else f"> {budget.steps}",
                  _fmt(r["delay_steps"]),
                  _fmt(None if r["delay_flops"] is None else r["delay_flops"] / 1e12, 2),
                  f"{r['locked_at_end']:.2f}",
                  f"{_fmt(r['switching_point'], 2)} ({_fmt(r['control_switching_point'], 2)})",
                  _fmt(r.get("vision_ceiling"), 2),
                  f"{_fmt(r.get('end_ood_accuracy'), 2)} / {_fmt(r.get('vcd_ood_accuracy'), 2)}",
                  f"{r['p_value']:.3g} ({r['p_holm']:.3g})", reading])
  lines = ["# The prior-induced delay: prior strength x visual difficulty x LM capacity", "",
           f"Command: `{command}`", "",
           f"Seeds {list(seeds)} per cell; {budget.steps} steps, evaluated every "
           f"{budget.eval_every}; TinyVLM d={budget.dim}; prior-VQA colour questions. T_escape is "
           "the first evaluation with inverted-prior accuracy >= 0.5; runs that never escape are "
           "censored at the budget (Kaplan–Meier medians; `> budget` when fewer than half "
           "escaped). Delay = median(prior) - median(no prior) on the same images and model; "
           "log-rank test against the no-prior cell, Holm-corrected over the table. Switch w: "
           "the ambiguous-evidence probe at the end of training (median over seeds; the blend "
           "weight from the prior colour to the true one at which the model stops answering the "
           "prior; 0.5 is unbiased, noise-free cells only). Vision-only OOD acc: the "
           "difficulty's ceiling, a vision-only colour classifier (the VLM's encoder, linear "
           "head) trained as long on prior-free answers and scored on the same inverted-prior "
           "test (mean over seeds). VCD: visual contrastive decoding at the end of training "
           "(`mmbal.diagnostics.contrastive.contrastive_logits`, alpha 1, beta 0.1, against the no-image "
           "pass), OOD accuracy, mean over seeds (runs saved before it was recorded: —).", "",
           report.markdown_table(header, table), ""]
  if compared:
    steps = lambda m: f"> {budget.steps}" if m is None else f"{m:.0f}"
    lines += ["## LM capacity", "",
              "The same cells at both LM capacities: median T_escape of each and a log-rank "
              "test between them (Holm over this table).", "",
              report.markdown_table(
                  ["images", "prior", f"{compared[0]['small']} median",
                   f"{compared[0]['large']} median", "log-rank p (Holm)"],
                  [[r["difficulty"], str(r["prior"]), steps(r["small_median"]),
                    steps(r["large_median"]), f"{r['p_value']:.3g} ({r['p_holm']:.3g})"]
                   for r in compared]), ""]
  folder = out / "grid"
  folder.mkdir(parents=True, exist_ok=True)
  (folder / "report.md").write_text("\n".join(lines))
  (folder / "results.json").write_text(json.dumps(dict(budget=dataclasses.asdict(budget),
                                                       seeds=list(seeds), rows=rows,
                                                       capacity=list(compared)), indent=1))
  return folder / "report.md"


def main(argv=None):
  parser = argparse.ArgumentParser(prog="python -m experiments.mllm_bias.grid",
                                   description=__doc__.split("\n\n")[0])
  parser.add_argument("--out", default="results/mllm_bias")
  parser.add_argument("--seeds", type=int, nargs="+", default=list(range(10)))
  parser.add_argument("--tiny", action="store_true", help="seconds-sized smoke run")
  parser.add_argument("--report-only", action="store_true")
  parser.add_argument("--capacities", nargs="+", default=list(CAPACITIES), choices=list(CAPACITIES))
  parser.add_argument("--difficulties", nargs="+", default=list(DIFFICULTIES),
                      choices=list(DIFFICULTIES))
  args = parser.parse_args(argv)
  budget = Budget.tiny() if args.tiny else Budget()
  out = pathlib.Path(args.out)
  seeds = " ".join(str(s) for s in args.seeds)
  command = (f"python -m experiments.mllm_bias.grid --out {args.out} --seeds {seeds}"
             f"{' --tiny' if args.tiny else ''} --report-only")
  vision_ceilings(args.difficulties, budget, args.seeds, out, args.report_only)
  for capacity in args.capacities:   # runs (or finds saved) the cells asked for
    run_experiment(grid_experiment(capacity, difficulties=tuple(args.difficulties)),
                   dataclasses.replace(budget, **CAPACITIES[capacity]), args.seeds, out,
                   saved_only=args.report_only)
  # The report covers every cell saved under --out, not only those asked for now: running a
  # part of the grid never drops the other cells' rows from it.
  rows, by_capacity, difficulties = [], {}, list(DIFFICULTIES)
  ceilings = vision_ceilings(difficulties, budget, args.seeds, out, saved_only=True)
  for capacity in CAPACITIES:
    by_capacity[capacity] = run_experiment(grid_experiment(capacity),
                                           dataclasses.replace(budget, **CAPACITIES[capacity]),
                                           args.seeds, out, saved_only=True)
    rows += analyse(by_capacity[capacity], budget, capacity, difficulties, PRIORS, ceilings)
  compared = compare_capacities(by_capacity, budget, difficulties)
  print(f"wrote {write_report(rows, budget, args.seeds, out, command, compared)}")


def compare_capacities(by_capacity: dict, budget: Budget, difficulties) -> list[dict]:
  """Per cell run at both LM capacities: the KM medians and a log-rank test between them
  (does the larger LM hold the prior longer?), Holm-corrected over these comparisons."""
  if len(by_capacity) != 2:
    return []
  (small, a), (large, b) = by_capacity.items()
  rows = []
  for d in difficulties:
    for p in PRIORS:
      name = cell_name(p, d)
      if not a.get(name) or not b.get(name):
        continue
      ta, ea = escape_times(a[name], budget)
      tb, eb = escape_times(b[name], budget)
      rows.append(dict(difficulty=d, prior=p, small=small, large=large,
                       small_median=survival.km_median(ta, ea), large_median=survival.km_median(tb, eb),
                       p_value=survival.log_rank(ta, ea, tb, eb).p_value))
  for row, adjusted in zip(rows, survival.holm([r["p_value"] for r in rows])):
    row["p_holm"] = adjusted
  return rows


if __name__ == "__main__":
  main()
