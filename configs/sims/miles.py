"""MILES (Guerra-Manzanares & Shamout, IJCNN 2025).

On CH-SIMS, with the data, encoders and optimiser of `joint.py`; the method's
settings are mmbal's defaults (`mmbal.train.config`).

  mmbal train --config configs/sims/miles.py --workdir runs/sims_miles
"""
BASE = "joint.py"


def get_config():
  return dict(model=dict(unimodal="probe"), method=dict(name="miles"))
