"""PMR (Fan et al., CVPR 2023).

On AV-MNIST (fsdd_mnist), with the data, encoders and optimiser of `joint.py`; the method's
settings are mmbal's defaults (`mmbal/methods/pmr.py`).

  mmbal train --config configs/av_mnist/pmr.py --workdir runs/av_mnist_pmr
"""
BASE = "joint.py"


def get_config():
  return dict(model=dict(unimodal="probe"), method=dict(name="pmr"))
