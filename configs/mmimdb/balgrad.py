"""BalGrad (Kwon et al., NAACL 2025; mmbal's documented reconstruction).

On MM-IMDb, with the data, encoders and optimiser of `joint.py`; the method's
settings are mmbal's defaults (`mmbal.train.config`).

  mmbal train --config configs/mmimdb/balgrad.py --workdir runs/mmimdb_balgrad
"""
BASE = "joint.py"


def get_config():
  return dict(model=dict(unimodal="heads"), method=dict(name="balgrad"))
