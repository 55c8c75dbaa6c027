"""PMR (Fan et al., CVPR 2023): prototypical cross-entropy for the lagging modalities, on synthetic_imbalance two_modal.

Concat fusion; class prototypes per modality from the first 10% of each epoch's
training steps (EMA momentum 0.2); the modalities whose prototype score trails the
leader get the prototype cross-entropy with coefficient clip(rho - 1, 0, 1).

  mmbal train --config configs/synthetic/pmr.py --workdir /tmp/synthetic_pmr
"""


def get_config():
  return dict(
      data=dict(name="synthetic_imbalance", builder_config="two_modal", modalities=("audio", "video")),
      model=dict(fusion="concat", unimodal="probe"),
      method=dict(name="pmr", pmr=dict(alpha=1.0, coefficient="continuous", fraction=0.1, momentum=0.2)),
      train=dict(batch_size=64, num_epochs=10),
  )
