"""CGGM (Guo et al., NeurIPS 2024).

On MM-IMDb, with the data, encoders and optimiser of `joint.py`; the method's
settings are mmbal's defaults (`mmbal.train.config`).

  mmbal train --config configs/mmimdb/cggm.py --workdir runs/mmimdb_cggm
"""
BASE = "joint.py"


def get_config():
  return dict(model=dict(unimodal="probe"), method=dict(name="cggm", cggm=dict(direction="weights")))
