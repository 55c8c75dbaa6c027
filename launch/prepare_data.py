"""Prepares a run's TFDS data set once, before the processes of a multi-process run start.

  python launch/prepare_data.py [--config FILE] [--workdir DIR] [field=value ...]

takes the same arguments as ``mmbal train`` and generates the configured data set in its data
dir (``data.data_dir``; default ~/tensorflow_datasets) unless it is there already. Every process
of a run prepares its data dir when it starts; processes that share one data dir (a cluster's
shared filesystem, several processes on one machine) and find it empty race to create the same
directory, and all but one fail. launch/slurm.sbatch and launch/tpu_vm.sh --data-dir run this
first, in one process.
"""
import pathlib
import sys

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent.parent))  # the checkout's mmbal

from mmbal import data as mmdata  # noqa: E402
from mmbal.train.cli import _parser  # noqa: E402
from mmbal.train.config import apply_overrides, check_config, load_config  # noqa: E402


def main(argv):
  args = _parser().parse_args(["train", *argv])
  try:
    c = apply_overrides(load_config(args.config), args.overrides)
    check_config(c)
    dataset = mmdata.load(c.data.name, data_dir=c.data.data_dir or None,
                          config=c.data.builder_config or None, modalities=tuple(c.data.modalities),
                          val_fraction=c.data.val_fraction, seed=c.seed)
  except (ValueError, FileNotFoundError) as err:
    sys.exit(f"prepare_data: error: {err}")
  sizes = ", ".join(f"{k} {v}" for k, v in dataset.spec.split_sizes.items())
  print(f"prepare_data: {c.data.name} ready in {c.data.data_dir or '~/tensorflow_datasets'} ({sizes})")


if __name__ == "__main__":
  main(sys.argv[1:])
