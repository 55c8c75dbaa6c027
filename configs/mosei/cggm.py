"""CGGM (Guo et al., NeurIPS 2024).

On CMU-MOSEI, with the data, encoders and optimiser of `joint.py`; the method's
settings are mmbal's defaults (`mmbal.train.config`).

  mmbal train --config configs/mosei/cggm.py --workdir runs/mosei_cggm
"""
BASE = "joint.py"


def get_config():
  return dict(model=dict(unimodal="probe"), method=dict(name="cggm", cggm=dict(direction="weights")))
