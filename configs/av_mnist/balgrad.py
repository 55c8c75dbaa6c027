"""BalGrad (Kwon et al., NAACL 2025; mmbal's documented reconstruction).

On AV-MNIST (fsdd_mnist), with the data, encoders and optimiser of `joint.py`; the method's
settings are mmbal's defaults (`mmbal/methods/balgrad.py`).

  mmbal train --config configs/av_mnist/balgrad.py --workdir runs/av_mnist_balgrad
"""
BASE = "joint.py"


def get_config():
  return dict(model=dict(unimodal="heads"), method=dict(name="balgrad"))
