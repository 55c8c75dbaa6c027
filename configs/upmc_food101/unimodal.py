"""Each encoder trained alone by its own head (the unimodal baselines).

On UPMC Food-101, with the data, encoders and optimiser of `joint.py`; the method's
settings are mmbal's defaults (`mmbal.train.config`).

  mmbal train --config configs/upmc_food101/unimodal.py --workdir runs/upmc_food101_unimodal
"""
BASE = "joint.py"


def get_config():
  return dict(model=dict(unimodal="heads"), method=dict(name="unimodal"))
