"""OGM-GE (Peng et al., CVPR 2022).

On CMU-MOSI, with the data, encoders and optimiser of `joint.py`; the method's
settings are mmbal's defaults (`mmbal.train.config`).

  mmbal train --config configs/mosi/ogm_ge.py --workdir runs/mosi_ogm_ge
"""
BASE = "joint.py"


def get_config():
  return dict(model=dict(unimodal="split_head"), method=dict(name="ogm_ge"))
