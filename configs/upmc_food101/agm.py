"""AGM (Li et al., ICCV 2023).

On UPMC Food-101, with the data, encoders and optimiser of `joint.py`; the method's
settings are mmbal's defaults (`mmbal.train.config`).

  mmbal train --config configs/upmc_food101/agm.py --workdir runs/upmc_food101_agm
"""
BASE = "joint.py"


def get_config():
  return dict(model=dict(unimodal="split_head"), method=dict(name="agm"))
