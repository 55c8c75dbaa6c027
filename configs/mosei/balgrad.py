"""BalGrad (Kwon et al., NAACL 2025; mmbal's documented reconstruction).

On CMU-MOSEI, with the data, encoders and optimiser of `joint.py`; the method's
settings are mmbal's defaults (`mmbal.train.config`).
On this regression task its KL is between unit-scale Laplace predictive distributions (L1's).

  mmbal train --config configs/mosei/balgrad.py --workdir runs/mosei_balgrad
"""
BASE = "joint.py"


def get_config():
  return dict(model=dict(unimodal="heads"), method=dict(name="balgrad"))
