"""CGGM (Guo et al., NeurIPS 2024).

On CH-SIMS, with the data, encoders and optimiser of `joint.py`; the method's
settings are mmbal's defaults (`mmbal.train.config`).

  mmbal train --config configs/sims/cggm.py --workdir runs/sims_cggm
"""
BASE = "joint.py"


def get_config():
  return dict(model=dict(unimodal="probe"), method=dict(name="cggm", cggm=dict(direction="weights")))
