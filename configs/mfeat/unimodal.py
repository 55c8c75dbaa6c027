"""Unimodal baselines on UCI mfeat: each view's encoder trained alone by its own head.

The unimodal losses touch disjoint parameters, so this trains M independent unimodal
models in one step. The fused head is not trained (reported as n/a).

  mmbal train --config configs/mfeat/unimodal.py --workdir /tmp/mfeat_unimodal
"""


def get_config():
  return dict(
      data=dict(name="uci_mfeat", modalities=("pix", "fou", "mor")),
      model=dict(fusion="concat", unimodal="heads"),
      method=dict(name="unimodal"),
      train=dict(batch_size=64, num_epochs=20),
  )
