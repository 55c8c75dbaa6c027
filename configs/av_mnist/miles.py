"""MILES (Guerra-Manzanares & Shamout, IJCNN 2025).

On AV-MNIST (fsdd_mnist), with the data, encoders and optimiser of `joint.py`; the method's
settings are mmbal's defaults (`mmbal/methods/miles.py`).

  mmbal train --config configs/av_mnist/miles.py --workdir runs/av_mnist_miles
"""
BASE = "joint.py"


def get_config():
  return dict(model=dict(unimodal="probe"), method=dict(name="miles"))
