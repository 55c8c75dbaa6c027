"""MLA (Zhang et al., CVPR 2024): shared head, entropy-weighted late fusion.

On CH-SIMS, with the data, encoders and optimiser of `joint.py`; the method's
settings are mmbal's defaults (`mmbal.train.config`).

  mmbal train --config configs/sims/mla.py --workdir runs/sims_mla
"""
BASE = "joint.py"


def get_config():
  return dict(model=dict(fusion="late_entropy", unimodal="shared_head"), method=dict(name="mla"))
