"""AGM (Li et al., ICCV 2023).

On AV-MNIST (fsdd_mnist), with the data, encoders and optimiser of `joint.py`; the method's
settings are mmbal's defaults (`mmbal/methods/agm.py`).

  mmbal train --config configs/av_mnist/agm.py --workdir runs/av_mnist_agm
"""
BASE = "joint.py"


def get_config():
  return dict(model=dict(unimodal="split_head"), method=dict(name="agm"))
