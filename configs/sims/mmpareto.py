"""MMPareto (Wei & Hu, ICML 2024).

On CH-SIMS, with the data, encoders and optimiser of `joint.py`; the method's
settings are mmbal's defaults (`mmbal.train.config`).

  mmbal train --config configs/sims/mmpareto.py --workdir runs/sims_mmpareto
"""
BASE = "joint.py"


def get_config():
  return dict(model=dict(unimodal="heads"), method=dict(name="mmpareto"))
