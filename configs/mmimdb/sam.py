"""SAM (Foret et al., ICLR 2021).

On MM-IMDb, with the data, encoders and optimiser of `joint.py`; the method's
settings are mmbal's defaults (`mmbal.train.config`).

  mmbal train --config configs/mmimdb/sam.py --workdir runs/mmimdb_sam
"""
BASE = "joint.py"


def get_config():
  return dict(model=dict(unimodal="probe"), method=dict(name="sam"))
