"""MMPareto (Wei & Hu, ICML 2024).

On Kinetics-Sounds, with the data, encoders and optimiser of `joint.py`; the method's
settings are mmbal's defaults (`mmbal.train.config`).

  mmbal train --config configs/kinetics_sounds/mmpareto.py --workdir runs/kinetics_sounds_mmpareto
"""
BASE = "joint.py"


def get_config():
  return dict(model=dict(unimodal="heads"), method=dict(name="mmpareto"))
