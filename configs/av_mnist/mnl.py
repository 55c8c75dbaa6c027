"""MNL (Gong et al., NeurIPS 2025), on late fusion of unimodal heads.

On AV-MNIST (fsdd_mnist), with the data, encoders and optimiser of `joint.py`; the method's
settings are mmbal's defaults (`mmbal/methods/mnl.py`).

  mmbal train --config configs/av_mnist/mnl.py --workdir runs/av_mnist_mnl
"""
BASE = "joint.py"


def get_config():
  return dict(model=dict(fusion="late", unimodal="heads"), method=dict(name="mnl"))
