"""BalGrad (Kwon et al., NAACL 2025; mmbal's documented reconstruction).

On UCF-101, with the data, encoders and optimiser of `joint.py`; the method's
settings are mmbal's defaults (`mmbal.train.config`).

  mmbal train --config configs/ucf101/balgrad.py --workdir runs/ucf101_balgrad
"""
BASE = "joint.py"


def get_config():
  return dict(model=dict(unimodal="heads"), method=dict(name="balgrad"))
