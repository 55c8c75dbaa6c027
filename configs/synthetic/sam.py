"""SAM (Foret et al., ICLR 2021) on synthetic_imbalance two_modal: the joint model trained at the worst-case
point within an L2 ball of radius rho.

  mmbal train --config configs/synthetic/sam.py --workdir /tmp/synthetic_sam
"""


def get_config():
  return dict(
      data=dict(name="synthetic_imbalance", builder_config="two_modal", modalities=("audio", "video")),
      model=dict(fusion="concat", unimodal="probe"),
      method=dict(name="sam", sam=dict(rho=0.05)),
      train=dict(batch_size=64, num_epochs=10),
  )
