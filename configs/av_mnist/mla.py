"""MLA (Zhang et al., CVPR 2024): shared head, entropy-weighted late fusion.

On AV-MNIST (fsdd_mnist), with the data, encoders and optimiser of `joint.py`; the method's
settings are mmbal's defaults (`mmbal/methods/mla.py`).

  mmbal train --config configs/av_mnist/mla.py --workdir runs/av_mnist_mla
"""
BASE = "joint.py"


def get_config():
  return dict(model=dict(fusion="late_entropy", unimodal="shared_head"), method=dict(name="mla"))
