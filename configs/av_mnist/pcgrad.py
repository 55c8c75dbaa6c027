"""PCGrad (Yu et al., NeurIPS 2020).

On AV-MNIST (fsdd_mnist), with the data, encoders and optimiser of `joint.py`; the method's
settings are mmbal's defaults (`mmbal/methods/pcgrad.py`).

  mmbal train --config configs/av_mnist/pcgrad.py --workdir runs/av_mnist_pcgrad
"""
BASE = "joint.py"


def get_config():
  return dict(model=dict(unimodal="heads"), method=dict(name="pcgrad"))
