"""Joint training on AV-MNIST with late fusion: the mean of two unimodal heads' logits.

The late-fusion counterpart of `joint.py` (same data, encoders and optimiser).

  mmbal train --config configs/av_mnist/joint_late.py --workdir runs/av_mnist_joint_late \\
      data.manual_dir=/path/to/av_mnist data.data_dir=/path/to/tensorflow_datasets
"""
BASE = "joint.py"


def get_config():
  return dict(model=dict(fusion="late", unimodal="heads"))
