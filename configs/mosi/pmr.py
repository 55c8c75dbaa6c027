"""PMR (Fan et al., CVPR 2023).

On CMU-MOSI, with the data, encoders and optimiser of `joint.py`; the method's
settings are mmbal's defaults (`mmbal.train.config`).
On this regression task its prototypes are feature means of the labels' metric bins (eval.regression_bins).

  mmbal train --config configs/mosi/pmr.py --workdir runs/mosi_pmr
"""
BASE = "joint.py"


def get_config():
  return dict(model=dict(unimodal="probe"), method=dict(name="pmr"))
