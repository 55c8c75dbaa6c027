"""Each encoder trained alone by its own head (the unimodal baselines).

On AV-MNIST (fsdd_mnist), with the data, encoders and optimiser of `joint.py`; the method's
settings are mmbal's defaults (`mmbal/methods/unimodal.py`).

  mmbal train --config configs/av_mnist/unimodal.py --workdir runs/av_mnist_unimodal
"""
BASE = "joint.py"


def get_config():
  return dict(model=dict(unimodal="heads"), method=dict(name="unimodal"))
