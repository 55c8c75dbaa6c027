"""PMR (Fan et al., CVPR 2023).

On Kinetics-Sounds, with the data, encoders and optimiser of `joint.py`; the method's
settings are mmbal's defaults (`mmbal.train.config`).

  mmbal train --config configs/kinetics_sounds/pmr.py --workdir runs/kinetics_sounds_pmr
"""
BASE = "joint.py"


def get_config():
  return dict(model=dict(unimodal="probe"), method=dict(name="pmr"))
