"""SAM (Foret et al., ICLR 2021).

On Kinetics-Sounds, with the data, encoders and optimiser of `joint.py`; the method's
settings are mmbal's defaults (`mmbal.train.config`).

  mmbal train --config configs/kinetics_sounds/sam.py --workdir runs/kinetics_sounds_sam
"""
BASE = "joint.py"


def get_config():
  return dict(model=dict(unimodal="probe"), method=dict(name="sam"))
