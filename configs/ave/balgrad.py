"""BalGrad (Kwon et al., NAACL 2025; mmbal's documented reconstruction).

On AVE, with the data, encoders and optimiser of `joint.py`; the method's
settings are mmbal's defaults (`mmbal.train.config`).

  mmbal train --config configs/ave/balgrad.py --workdir runs/ave_balgrad
"""
BASE = "joint.py"


def get_config():
  return dict(model=dict(unimodal="heads"), method=dict(name="balgrad"))
