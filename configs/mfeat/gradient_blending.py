"""Gradient-Blending (Wang et al., CVPR 2020), online, on UCI mfeat (pix, fou, mor).

Unimodal heads train their encoders; the fused and unimodal losses are weighted by each
head's generalisation gain over its overfitting, re-estimated on validation every epoch.

  mmbal train --config configs/mfeat/gradient_blending.py --workdir /tmp/mfeat_gblend
"""


def get_config():
  return dict(
      data=dict(name="uci_mfeat", modalities=("pix", "fou", "mor")),
      model=dict(fusion="concat", unimodal="heads"),
      method=dict(name="gradient_blending", gradient_blending=dict(super_epoch=1)),
      train=dict(batch_size=64, num_epochs=20),
  )
