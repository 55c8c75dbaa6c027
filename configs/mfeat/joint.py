"""Joint training on UCI mfeat, three imbalanced views (pix strong, fou medium, mor weak).

  mmbal train --config configs/mfeat/joint.py --workdir /tmp/mfeat_joint
"""


def get_config():
  return dict(
      data=dict(name="uci_mfeat", modalities=("pix", "fou", "mor")),
      model=dict(fusion="concat", unimodal="probe"),
      method=dict(name="joint"),
      train=dict(batch_size=64, num_epochs=20),
  )
