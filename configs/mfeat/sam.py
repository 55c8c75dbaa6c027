"""SAM (Foret et al., ICLR 2021) on UCI mfeat (pix, fou, mor): the joint model trained at the worst-case
point within an L2 ball of radius rho.

  mmbal train --config configs/mfeat/sam.py --workdir /tmp/mfeat_sam
"""


def get_config():
  return dict(
      data=dict(name="uci_mfeat", modalities=("pix", "fou", "mor")),
      model=dict(fusion="concat", unimodal="probe"),
      method=dict(name="sam", sam=dict(rho=0.05)),
      train=dict(batch_size=64, num_epochs=20),
  )
