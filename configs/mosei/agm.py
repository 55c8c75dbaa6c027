"""AGM (Li et al., ICCV 2023).

On CMU-MOSEI, with the data, encoders and optimiser of `joint.py`; the method's
settings are mmbal's defaults (`mmbal.train.config`).
On this regression task its scores are the (floored) L1 errors of the Shapley unimodal outputs.

  mmbal train --config configs/mosei/agm.py --workdir runs/mosei_agm
"""
BASE = "joint.py"


def get_config():
  return dict(model=dict(unimodal="split_head"), method=dict(name="agm"))
