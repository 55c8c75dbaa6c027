"""PCGrad (Yu et al., NeurIPS 2020).

On Hateful Memes, with the data, encoders and optimiser of `joint.py`; the method's
settings are mmbal's defaults (`mmbal.train.config`).

  mmbal train --config configs/hateful_memes/pcgrad.py --workdir runs/hateful_memes_pcgrad
"""
BASE = "joint.py"


def get_config():
  return dict(model=dict(unimodal="heads"), method=dict(name="pcgrad"))
