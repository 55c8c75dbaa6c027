"""SAM (Foret et al., ICLR 2021).

On AVE, with the data, encoders and optimiser of `joint.py`; the method's
settings are mmbal's defaults (`mmbal.train.config`).

  mmbal train --config configs/ave/sam.py --workdir runs/ave_sam
"""
BASE = "joint.py"


def get_config():
  return dict(model=dict(unimodal="probe"), method=dict(name="sam"))
