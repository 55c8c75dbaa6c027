"""MMPareto (Wei & Hu, ICML 2024).

On VGGSound, with the data, encoders and optimiser of `joint.py`; the method's
settings are mmbal's defaults (`mmbal.train.config`).

  mmbal train --config configs/vggsound/mmpareto.py --workdir runs/vggsound_mmpareto
"""
BASE = "joint.py"


def get_config():
  return dict(model=dict(unimodal="heads"), method=dict(name="mmpareto"))
