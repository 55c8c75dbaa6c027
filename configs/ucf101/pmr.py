"""PMR (Fan et al., CVPR 2023).

On UCF-101, with the data, encoders and optimiser of `joint.py`; the method's
settings are mmbal's defaults (`mmbal.train.config`).

  mmbal train --config configs/ucf101/pmr.py --workdir runs/ucf101_pmr
"""
BASE = "joint.py"


def get_config():
  return dict(model=dict(unimodal="probe"), method=dict(name="pmr"))
