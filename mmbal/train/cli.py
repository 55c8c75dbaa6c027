"""``mmbal`` command line.

``mmbal train [--config FILE] [--workdir DIR] [field=value ...]`` trains;
``mmbal diagnose --workdir DIR [--split test|validation] [--fill present|zeros|mean] [--out DIR]``
writes a report on how much the run's model uses each modality.
"""
from __future__ import annotations

import argparse
import datetime
import logging
import os
import pathlib
import sys


def _parser():
  import mmbal  # pylint: disable=import-outside-toplevel  (instant: everything in it is lazy)
  parser = argparse.ArgumentParser(prog="mmbal", description="Balanced multimodal learning in JAX.")
  parser.add_argument("--version", action="version", version=f"mmbal {mmbal.__version__}")
  sub = parser.add_subparsers(dest="command", required=True)
  train = sub.add_parser("train", help="train, select on validation, report test accuracy",
                         epilog="example: mmbal train --config configs/mfeat/joint.py "
                                "--workdir /tmp/run train.num_epochs=5 model.fusion=sum")
  train.add_argument("--config", help="Python file with get_config() (default: embedded mfeat)")
  train.add_argument("--workdir", help="where checkpoints, metrics.jsonl and results.json go "
                                       "(default: runs/<data>-<method>-<time>); reusing one resumes")
  train.add_argument("--distributed", action="store_true",
                     help="join the JAX distributed runtime (auto-detected on TPU pods and SLURM; "
                          "local runs: launch/local_multiprocess.sh)")
  train.add_argument("--coordinator", help="host:port of process 0 (with --distributed, when "
                                          "not auto-detected)")
  train.add_argument("--num-processes", type=int, help="with --coordinator")
  train.add_argument("--process-id", type=int, help="with --coordinator")
  train.add_argument("--heartbeat-timeout", type=int, default=None,
                     help="seconds before a silent process counts as dead and the others stop "
                          "with an error (JAX default 100)")
  train.add_argument("overrides", nargs="*", help="config overrides: field.name=value")
  diag = sub.add_parser(
      "diagnose", help="report how much a run's model uses each modality (Shapley values, "
                       "utilisation, dominance, dependence, training curves)",
      epilog="example: mmbal diagnose --workdir /tmp/run --split validation")
  diag.add_argument("--workdir", required=True,
                    help="a training run's workdir (finished, or still running: the latest "
                         "checkpoint is used)")
  diag.add_argument("--split", choices=("test", "validation"), default="test",
                    help="which split to measure on (default: test)")
  diag.add_argument("--fill", choices=("present", "zeros", "mean"), default="present",
                    help="how a removed modality is represented: present = the model's own "
                         "absence handling, as the trainer's eval (default); zeros; mean = the "
                         "modality's mean input over the train split")
  diag.add_argument("--out", help="report directory (default: WORKDIR/diagnosis)")
  diag.add_argument("--seed", type=int, default=0, help="seed of the shuffles and Monte-Carlo orderings")
  diag.add_argument("--num-permutations", type=int, default=64,
                    help="Monte-Carlo orderings for Shapley values when there are more than "
                         "8 modalities (default: 64)")
  ev = sub.add_parser("eval", help="evaluate a run; --robustness sweeps corruptions per modality",
                      epilog="example: mmbal eval --workdir /tmp/run --robustness --kinds missing,noise")
  ev.add_argument("--workdir", required=True, help="a training run's workdir")
  ev.add_argument("--robustness", action="store_true",
                  help="accuracy under seeded corruptions at rates 0..0.9 per modality")
  ev.add_argument("--kinds", default="missing", help="missing,noise,steps (comma-separated)")
  ev.add_argument("--split", default="test", choices=("test", "validation"))
  ev.add_argument("--fill", default="present", choices=("present", "zeros", "mean"),
                  help="a removed modality: the model's absence mask, zeros, or the mean train input")
  ev.add_argument("--seeds", default="0,1,2", help="corruption seeds (comma-separated)")
  ev.add_argument("--noise-scale", type=float, default=2.0,
                  help="noise severity at rate r: r * noise-scale training standard deviations")
  ev.add_argument("--reference", help="another run's workdir already evaluated with --robustness: "
                                      "adds effective robustness against it (e.g. late fusion)")
  ev.add_argument("--out", help="output directory (default WORKDIR/robustness)")
  return parser


def console() -> int:
  """The ``mmbal`` console script: exit status 0 on success (errors exit non-zero with the
  message); ``main`` returns the command's result for Python callers."""
  main()
  return 0


def main(argv=None):
  """Runs a command; returns its result (the ``diagnose`` / ``eval`` report dict)."""
  parser = _parser()
  # Overrides may come before or after the options (argparse alone stops at the first option).
  args, extra = parser.parse_known_args(argv)
  late = [e for e in extra if "=" in e and not e.startswith("-")]
  if len(late) < len(extra) or (late and args.command != "train"):
    parser.error(f"unrecognized arguments: {' '.join(extra)}")
  if late:
    args.overrides = list(args.overrides) + late
  # force: an imported library may have configured the root logger already.
  logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s", stream=sys.stderr,
                      force=True)
  for noisy in ("absl", "orbax", "jax"):  # orbax logs every checkpoint step at INFO through absl
    logging.getLogger(noisy).setLevel(logging.WARNING)
  if args.command == "diagnose":
    return _diagnose(args)
  if args.command == "eval":
    return _eval(args)
  # Deferred: importing jax is slow and --help should not pay for it.
  from mmbal.train.config import apply_overrides, check_config, load_config
  try:
    config = apply_overrides(load_config(args.config), args.overrides)
    check_config(config)
  except (ValueError, FileNotFoundError) as err:
    sys.exit(f"mmbal: error: {err}")
  if args.distributed:
    from mmbal.train.distributed import initialize
    initialize(args.coordinator, args.num_processes, args.process_id, args.heartbeat_timeout)
  elif args.coordinator or args.num_processes or args.process_id is not None:
    sys.exit("mmbal: error: --coordinator/--num-processes/--process-id need --distributed")
  workdir = args.workdir or os.path.join(
      "runs", f"{config.data.name}-{config.method.name}-{datetime.datetime.now():%Y%m%d-%H%M%S}")
  from mmbal.train.loop import train_and_evaluate
  try:
    run = train_and_evaluate(config, workdir)  # prints the results table
  except ValueError as err:
    sys.exit(f"mmbal: error: {err}")
  import jax
  if run.results is not None and jax.process_index() == 0:
    print(f"results: {os.path.join(workdir, 'results.json')}")


def _diagnose(args):
  """``mmbal diagnose``: restores the run, measures it on a split, writes the report."""
  import jax

  from mmbal import data as mmdata
  from mmbal.diagnostics import diagnose, mean_inputs
  from mmbal.diagnostics.report import headline, write_report
  from mmbal.train import sharding as shd
  from mmbal.train.restore import restore_run
  try:
    _refuse_task(args.workdir, "mmbal diagnose")   # before anything is loaded
    run = restore_run(args.workdir)
    _refuse_task(args.workdir, "mmbal diagnose", run.task)
  except (ValueError, FileNotFoundError) as err:
    sys.exit(f"mmbal: error: {err}")
  c, names = run.config, run.model.names
  apply_fn = run.apply_fn
  if args.fill == "present":
    apply = lambda params, inputs, present: apply_fn(params, inputs, present).logits
    fill = "present"
  else:
    apply = lambda params, inputs: apply_fn(params, inputs).logits
    fill = "zeros" if args.fill == "zeros" else mean_inputs(
        mmdata.eval_batches(run.dataset.train, c.eval.batch_size), names)
  try:
    result = diagnose(apply, run.params, mmdata.eval_batches(run.dataset[args.split], c.eval.batch_size),
                      names, fill=fill, key=jax.random.key(args.seed),
                      num_permutations=args.num_permutations,
                      put_batch=lambda batch: shd.global_batch(run.mesh, batch))
  except ValueError as err:
    sys.exit(f"mmbal: error: {err}")
  result["fill"] = args.fill
  status = ("finished" if run.finished else
            f"running or stopped (checkpoint at step {run.step} of {run.total_steps})")
  info = dict(workdir=str(run.workdir), data=c.data.name, modalities=list(names),
              method=c.method.name, fusion=c.model.fusion, unimodal_outputs=c.model.unimodal,
              status=status, step=run.step, total_steps=run.total_steps,
              parameters=("best on validation so far" if run.selected == "best"
                          else "latest (no evaluation yet)"),
              split=args.split, seed=args.seed)
  if c.method.name == "unimodal":
    info["note"] = ("method 'unimodal' trains each encoder with its own head, not the fused "
                    "head: the fused numbers below come from an untrained head")
  out = args.out or os.path.join(args.workdir, "diagnosis")
  paths = write_report(result, out, run=info, metrics=run.workdir / "metrics.jsonl")
  print(headline(result).replace("**", ""))
  print(f"report: {paths['report']}")
  return result


def _eval(args):
  """``mmbal eval``: the selected parameters on a split, optionally the robustness sweep."""
  import json

  import jax
  import jax.numpy as jnp
  import numpy as np

  from mmbal import data as mmdata
  from mmbal.diagnostics import mean_inputs, robustness
  from mmbal.methods import task_kind
  from mmbal.tasks import task_correct
  from mmbal.train import sharding as shd
  from mmbal.train.evaluate import split_sums
  from mmbal.train.restore import restore_run
  try:
    run = restore_run(args.workdir)
    kinds = tuple(k for k in args.kinds.split(",") if k)
    seeds = tuple(int(s) for s in args.seeds.split(",") if s)
    reference = None
    if args.reference:
      ref_file = pathlib.Path(args.reference) / "robustness" / "robustness.json"
      if not ref_file.is_file():
        raise ValueError(f"--reference: {ref_file} does not exist (run mmbal eval --robustness "
                         f"on that workdir first)")
      reference = json.loads(ref_file.read_text())
  except (ValueError, FileNotFoundError) as err:
    sys.exit(f"mmbal: error: {err}")
  names, c = run.model.names, run.config
  native = args.fill == "present"
  score_name = SCORE_NAMES[task_kind(run.task)]

  @jax.jit
  def correct_and_count(params, batch):
    logits = run.apply_fn(params, {n: batch[n] for n in names},
                          batch["present"] if native else None).logits
    mask = batch["mask"].astype(jnp.float32)
    return dict(correct=(task_correct(logits, batch["label"], run.task) * mask).sum(),
                count=mask.sum())

  def put(batch):
    batch = dict(batch)
    batch.setdefault("present", np.ones((len(batch["label"]), len(names)), np.float32))
    return shd.global_batch(run.mesh, batch)

  def evaluate(batch):
    sums, _ = split_sums(correct_and_count, run.params, [batch], put)
    return float(sums["correct"]), float(sums["count"])

  batches = lambda split: mmdata.eval_batches(run.dataset[split], c.eval.batch_size)
  sums, _ = split_sums(correct_and_count, run.params, batches(args.split), put)
  correct, count = float(sums["correct"]), float(sums["count"])
  print(f"{args.split} fused {score_name}: {100 * correct / max(count, 1):.2f}% (n={int(count)})")
  if not args.robustness:
    return dict(accuracy=correct / max(count, 1))
  train = list(batches("train"))
  fill = mean_inputs(train, names) if args.fill == "mean" else None
  scale = {m: float(np.concatenate([b[m][b["mask"]].ravel() for b in train]).std()) for m in names}
  try:
    result = robustness.sweep(evaluate, lambda: batches(args.split), names, kinds=kinds,
                              seeds=seeds, fill=fill, scale=scale, noise_scale=args.noise_scale)
  except ValueError as err:
    sys.exit(f"mmbal: error: {err}")
  result.update(split=args.split, fill=args.fill, noise_scale=args.noise_scale,
                workdir=str(args.workdir))
  if reference is not None:
    robustness.add_effective_robustness(result, reference)
    result["reference"] = str(args.reference)
  paths = robustness.write(result, args.out or pathlib.Path(args.workdir) / "robustness")
  print(robustness.markdown(result))
  print(f"report: {paths['report']}\nplot: {paths['plot']}")
  return result


# What `mmbal eval` reports per task kind: the per-example correctness of `mmbal.tasks.task_correct`.
SCORE_NAMES = {"classification": "accuracy", "multilabel": "Hamming accuracy",
               "regression": "sign accuracy (negative / non-negative)"}


def _refuse_task(workdir, command: str, task: str | None = None):
  """Errors unless the run is single-label classification; ``task=None`` reads it from the
  run's ``run.json`` / ``results.json`` (when there is neither, the caller checks later)."""
  if task is None:
    for name in ("run.json", "results.json"):
      file = pathlib.Path(workdir) / name
      if file.is_file():
        import json  # pylint: disable=import-outside-toplevel
        task = json.loads(file.read_text()).get("task")
        break
  if task is not None and task != "classification":
    raise ValueError(f"{command} measures single-label accuracy (Shapley values of the fused "
                     f"accuracy); this run's task is {task}. `mmbal eval --workdir {workdir} "
                     f"--robustness` works on every task, with the task's score")


if __name__ == "__main__":
  main()
