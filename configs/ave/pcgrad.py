"""PCGrad (Yu et al., NeurIPS 2020).

On AVE, with the data, encoders and optimiser of `joint.py`; the method's
settings are mmbal's defaults (`mmbal.train.config`).

  mmbal train --config configs/ave/pcgrad.py --workdir runs/ave_pcgrad
"""
BASE = "joint.py"


def get_config():
  return dict(model=dict(unimodal="heads"), method=dict(name="pcgrad"))
