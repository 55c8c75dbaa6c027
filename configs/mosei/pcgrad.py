"""PCGrad (Yu et al., NeurIPS 2020).

On CMU-MOSEI, with the data, encoders and optimiser of `joint.py`; the method's
settings are mmbal's defaults (`mmbal.train.config`).

  mmbal train --config configs/mosei/pcgrad.py --workdir runs/mosei_pcgrad
"""
BASE = "joint.py"


def get_config():
  return dict(model=dict(unimodal="heads"), method=dict(name="pcgrad"))
