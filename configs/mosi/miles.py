"""MILES (Guerra-Manzanares & Shamout, IJCNN 2025).

On CMU-MOSI, with the data, encoders and optimiser of `joint.py`; the method's
settings are mmbal's defaults (`mmbal.train.config`).

  mmbal train --config configs/mosi/miles.py --workdir runs/mosi_miles
"""
BASE = "joint.py"


def get_config():
  return dict(model=dict(unimodal="probe"), method=dict(name="miles"))
