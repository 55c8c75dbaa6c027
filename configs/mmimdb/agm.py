"""AGM (Li et al., ICCV 2023).

On MM-IMDb, with the data, encoders and optimiser of `joint.py`; the method's
settings are mmbal's defaults (`mmbal.train.config`).

  mmbal train --config configs/mmimdb/agm.py --workdir runs/mmimdb_agm
"""
BASE = "joint.py"


def get_config():
  return dict(model=dict(unimodal="split_head"), method=dict(name="agm"))
