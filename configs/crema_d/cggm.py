"""CGGM (Guo et al., NeurIPS 2024).

On CREMA-D, with the data, encoders and optimiser of `joint.py`; the method's
settings are mmbal's defaults (`mmbal.train.config`).

  mmbal train --config configs/crema_d/cggm.py --workdir runs/crema_d_cggm
"""
BASE = "joint.py"


def get_config():
  return dict(model=dict(unimodal="probe"), method=dict(name="cggm"))
