"""SAM (Foret et al., ICLR 2021).

On UPMC Food-101, with the data, encoders and optimiser of `joint.py`; the method's
settings are mmbal's defaults (`mmbal.train.config`).

  mmbal train --config configs/upmc_food101/sam.py --workdir runs/upmc_food101_sam
"""
BASE = "joint.py"


def get_config():
  return dict(model=dict(unimodal="probe"), method=dict(name="sam"))
