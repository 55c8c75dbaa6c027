"""M-SAM (Nowdeh et al., NeurIPS 2025).

On UPMC Food-101, with the data, encoders and optimiser of `joint.py`; the method's
settings are mmbal's defaults (`mmbal.train.config`).

  mmbal train --config configs/upmc_food101/msam.py --workdir runs/upmc_food101_msam
"""
BASE = "joint.py"


def get_config():
  return dict(model=dict(unimodal="probe"), method=dict(name="msam"))
