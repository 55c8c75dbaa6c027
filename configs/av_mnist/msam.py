"""M-SAM (Nowdeh et al., NeurIPS 2025).

On AV-MNIST (fsdd_mnist), with the data, encoders and optimiser of `joint.py`; the method's
settings are mmbal's defaults (`mmbal/methods/msam.py`).

  mmbal train --config configs/av_mnist/msam.py --workdir runs/av_mnist_msam
"""
BASE = "joint.py"


def get_config():
  return dict(model=dict(unimodal="probe"), method=dict(name="msam"))
