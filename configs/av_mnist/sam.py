"""SAM (Foret et al., ICLR 2021).

On AV-MNIST (fsdd_mnist), with the data, encoders and optimiser of `joint.py`; the method's
settings are mmbal's defaults (`mmbal/methods/sam.py`).

  mmbal train --config configs/av_mnist/sam.py --workdir runs/av_mnist_sam
"""
BASE = "joint.py"


def get_config():
  return dict(model=dict(unimodal="probe"), method=dict(name="sam"))
