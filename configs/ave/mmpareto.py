"""MMPareto (Wei & Hu, ICML 2024).

On AVE, with the data, encoders and optimiser of `joint.py`; the method's
settings are mmbal's defaults (`mmbal.train.config`).

  mmbal train --config configs/ave/mmpareto.py --workdir runs/ave_mmpareto
"""
BASE = "joint.py"


def get_config():
  return dict(model=dict(unimodal="heads"), method=dict(name="mmpareto"))
