"""Each encoder trained alone by its own head (the unimodal baselines).

On CMU-MOSI, with the data, encoders and optimiser of `joint.py`; the method's
settings are mmbal's defaults (`mmbal.train.config`).

  mmbal train --config configs/mosi/unimodal.py --workdir runs/mosi_unimodal
"""
BASE = "joint.py"


def get_config():
  return dict(model=dict(unimodal="heads"), method=dict(name="unimodal"))
