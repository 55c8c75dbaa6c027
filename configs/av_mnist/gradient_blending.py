"""G-Blending (Wang et al., CVPR 2020).

On AV-MNIST (fsdd_mnist), with the data, encoders and optimiser of `joint.py`; the method's
settings are mmbal's defaults (`mmbal/methods/gradient_blending.py`).

  mmbal train --config configs/av_mnist/gradient_blending.py --workdir runs/av_mnist_gradient_blending
"""
BASE = "joint.py"


def get_config():
  return dict(model=dict(unimodal="heads"), method=dict(name="gradient_blending"))
