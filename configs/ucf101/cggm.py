"""CGGM (Guo et al., NeurIPS 2024).

On UCF-101, with the data, encoders and optimiser of `joint.py`; the method's
settings are mmbal's defaults (`mmbal.train.config`).

  mmbal train --config configs/ucf101/cggm.py --workdir runs/ucf101_cggm
"""
BASE = "joint.py"


def get_config():
  return dict(model=dict(unimodal="probe"), method=dict(name="cggm"))
