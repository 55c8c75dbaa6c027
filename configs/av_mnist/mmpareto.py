"""MMPareto (Wei & Hu, ICML 2024).

On AV-MNIST (fsdd_mnist), with the data, encoders and optimiser of `joint.py`; the method's
settings are mmbal's defaults (`mmbal/methods/mmpareto.py`).

  mmbal train --config configs/av_mnist/mmpareto.py --workdir runs/av_mnist_mmpareto
"""
BASE = "joint.py"


def get_config():
  return dict(model=dict(unimodal="heads"), method=dict(name="mmpareto"))
