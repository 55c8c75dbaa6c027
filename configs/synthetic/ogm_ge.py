"""OGM-GE (Peng et al., CVPR 2022) on synthetic_imbalance two_modal.

Concat fusion with OGM-GE's unimodal logits (the fused head split per modality); the
dominant modality's encoder gradients are damped by 1 - tanh(alpha * rho) and Gaussian
noise (generalisation enhancement) is added.

  mmbal train --config configs/synthetic/ogm_ge.py --workdir /tmp/synthetic_ogm_ge
"""


def get_config():
  return dict(
      data=dict(name="synthetic_imbalance", builder_config="two_modal", modalities=("audio", "video")),
      model=dict(fusion="concat", unimodal="split_head"),
      method=dict(name="ogm_ge", ogm_ge=dict(alpha=0.8, leaves="all", noise=True)),
      train=dict(batch_size=64, num_epochs=10),
  )
