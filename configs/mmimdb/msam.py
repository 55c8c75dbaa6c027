"""M-SAM (Nowdeh et al., NeurIPS 2025).

On MM-IMDb, with the data, encoders and optimiser of `joint.py`; the method's
settings are mmbal's defaults (`mmbal.train.config`).

  mmbal train --config configs/mmimdb/msam.py --workdir runs/mmimdb_msam
"""
BASE = "joint.py"


def get_config():
  return dict(model=dict(unimodal="probe"), method=dict(name="msam"))
