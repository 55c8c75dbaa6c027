"""OGM-GE (Peng et al., CVPR 2022).

On AV-MNIST (fsdd_mnist), with the data, encoders and optimiser of `joint.py`; the method's
settings are mmbal's defaults (`mmbal/methods/ogm_ge.py`).

  mmbal train --config configs/av_mnist/ogm_ge.py --workdir runs/av_mnist_ogm_ge
"""
BASE = "joint.py"


def get_config():
  return dict(model=dict(unimodal="split_head"), method=dict(name="ogm_ge"))
