"""AGM (Li et al., ICCV 2023).

On Kinetics-Sounds, with the data, encoders and optimiser of `joint.py`; the method's
settings are mmbal's defaults (`mmbal.train.config`).

  mmbal train --config configs/kinetics_sounds/agm.py --workdir runs/kinetics_sounds_agm
"""
BASE = "joint.py"


def get_config():
  return dict(model=dict(unimodal="split_head"), method=dict(name="agm"))
