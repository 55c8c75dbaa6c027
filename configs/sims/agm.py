"""AGM (Li et al., ICCV 2023).

On CH-SIMS, with the data, encoders and optimiser of `joint.py`; the method's
settings are mmbal's defaults (`mmbal.train.config`).
On this regression task its scores are the (floored) L1 errors of the Shapley unimodal outputs.

  mmbal train --config configs/sims/agm.py --workdir runs/sims_agm
"""
BASE = "joint.py"


def get_config():
  return dict(model=dict(unimodal="split_head"), method=dict(name="agm"))
