"""BalGrad (Kwon et al., NAACL 2025; reconstruction, see mmbal.transforms.balgrad) on synthetic_imbalance two_modal.

KL terms pull each modality's prediction towards the others', reweighted by learning
status (the lagging modality pulls harder); the task gradient is projected off the
combined KL gradient where they conflict.

  mmbal train --config configs/synthetic/balgrad.py --workdir /tmp/synthetic_balgrad
"""


def get_config():
  return dict(
      data=dict(name="synthetic_imbalance", builder_config="two_modal", modalities=("audio", "video")),
      model=dict(fusion="concat", unimodal="heads"),
      method=dict(name="balgrad", balgrad=dict(reweight="loss_share", project=True)),
      train=dict(batch_size=64, num_epochs=10),
  )
