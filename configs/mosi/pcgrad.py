"""PCGrad (Yu et al., NeurIPS 2020).

On CMU-MOSI, with the data, encoders and optimiser of `joint.py`; the method's
settings are mmbal's defaults (`mmbal.train.config`).

  mmbal train --config configs/mosi/pcgrad.py --workdir runs/mosi_pcgrad
"""
BASE = "joint.py"


def get_config():
  return dict(model=dict(unimodal="heads"), method=dict(name="pcgrad"))
