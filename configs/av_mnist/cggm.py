"""CGGM (Guo et al., NeurIPS 2024).

On AV-MNIST (fsdd_mnist), with the data, encoders and optimiser of `joint.py`; the method's
settings are mmbal's defaults (`mmbal/methods/cggm.py`).

  mmbal train --config configs/av_mnist/cggm.py --workdir runs/av_mnist_cggm
"""
BASE = "joint.py"


def get_config():
  return dict(model=dict(unimodal="probe"), method=dict(name="cggm"))
