"""M-SAM (Nowdeh et al., NeurIPS 2025).

On CH-SIMS, with the data, encoders and optimiser of `joint.py`; the method's
settings are mmbal's defaults (`mmbal.train.config`).
On this regression task its subset values are sign agreements (method.msam.value=loss: negative L1 errors).

  mmbal train --config configs/sims/msam.py --workdir runs/sims_msam
"""
BASE = "joint.py"


def get_config():
  return dict(model=dict(unimodal="probe"), method=dict(name="msam"))
