"""PMR (Fan et al., CVPR 2023).

On VGGSound, with the data, encoders and optimiser of `joint.py`; the method's
settings are mmbal's defaults (`mmbal.train.config`).

  mmbal train --config configs/vggsound/pmr.py --workdir runs/vggsound_pmr
"""
BASE = "joint.py"


def get_config():
  return dict(model=dict(unimodal="probe"), method=dict(name="pmr"))
