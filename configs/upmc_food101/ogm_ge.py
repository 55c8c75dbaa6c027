"""OGM-GE (Peng et al., CVPR 2022).

On UPMC Food-101, with the data, encoders and optimiser of `joint.py`; the method's
settings are mmbal's defaults (`mmbal.train.config`).

  mmbal train --config configs/upmc_food101/ogm_ge.py --workdir runs/upmc_food101_ogm_ge
"""
BASE = "joint.py"


def get_config():
  return dict(model=dict(unimodal="split_head"), method=dict(name="ogm_ge"))
