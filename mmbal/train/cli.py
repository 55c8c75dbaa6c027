"""``mmbal`` command line: ``mmbal train [--config FILE] [--workdir DIR] [field=value ...]``."""
from __future__ import annotations

import argparse
import datetime
import logging
import os
import sys


def _parser():
  parser = argparse.ArgumentParser(prog="mmbal", description="Balanced multimodal learning in JAX.")
  sub = parser.add_subparsers(dest="command", required=True)
  train = sub.add_parser("train", help="train, select on validation, report test accuracy",
                         epilog="example: mmbal train --config configs/mfeat/joint.py "
                                "--workdir /tmp/run train.num_epochs=5 model.fusion=sum")
  train.add_argument("--config", help="Python file with get_config() (default: embedded mfeat)")
  train.add_argument("--workdir", help="where checkpoints, metrics.jsonl and results.json go "
                                       "(default: runs/<data>-<method>-<time>); reusing one resumes")
  train.add_argument("--distributed", action="store_true",
                     help="call jax.distributed.initialize() (multi-host; auto-detects TPU/SLURM)")
  train.add_argument("overrides", nargs="*", help="config overrides: field.name=value")
  return parser


def main(argv=None):
  args = _parser().parse_args(argv)
  logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s", stream=sys.stderr)
  for noisy in ("absl", "orbax", "jax"):  # orbax logs every checkpoint step at INFO through absl
    logging.getLogger(noisy).setLevel(logging.WARNING)
  # Deferred: importing jax is slow and --help should not pay for it.
  from mmbal.train.config import apply_overrides, check_config, load_config
  try:
    config = apply_overrides(load_config(args.config), args.overrides)
    check_config(config)
  except (ValueError, FileNotFoundError) as err:
    sys.exit(f"mmbal: error: {err}")
  if args.distributed:
    import jax
    jax.distributed.initialize()
  workdir = args.workdir or os.path.join(
      "runs", f"{config.data.name}-{config.method.name}-{datetime.datetime.now():%Y%m%d-%H%M%S}")
  from mmbal.train.loop import train_and_evaluate
  try:
    train_and_evaluate(config, workdir)  # prints the results table
  except ValueError as err:
    sys.exit(f"mmbal: error: {err}")
  print(f"results: {os.path.join(workdir, 'results.json')}")


if __name__ == "__main__":
  main()
