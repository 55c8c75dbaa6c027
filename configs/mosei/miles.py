"""MILES (Guerra-Manzanares & Shamout, IJCNN 2025).

On CMU-MOSEI, with the data, encoders and optimiser of `joint.py`; the method's
settings are mmbal's defaults (`mmbal.train.config`).

  mmbal train --config configs/mosei/miles.py --workdir runs/mosei_miles
"""
BASE = "joint.py"


def get_config():
  return dict(model=dict(unimodal="probe"), method=dict(name="miles"))
