"""G-Blending (Wang et al., CVPR 2020).

On CH-SIMS, with the data, encoders and optimiser of `joint.py`; the method's
settings are mmbal's defaults (`mmbal.train.config`).

  mmbal train --config configs/sims/gradient_blending.py --workdir runs/sims_gradient_blending
"""
BASE = "joint.py"


def get_config():
  return dict(model=dict(unimodal="heads"), method=dict(name="gradient_blending"))
