"""MNL (Gong et al., NeurIPS 2025), on late fusion of unimodal heads.

On Hateful Memes, with the data, encoders and optimiser of `joint.py`; the method's
settings are mmbal's defaults (`mmbal.train.config`).

  mmbal train --config configs/hateful_memes/mnl.py --workdir runs/hateful_memes_mnl
"""
BASE = "joint.py"


def get_config():
  return dict(model=dict(fusion="late", unimodal="heads"), method=dict(name="mnl"))
