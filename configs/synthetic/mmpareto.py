"""MMPareto (Wei & Hu, ICML 2024) on synthetic_imbalance two_modal.

For each modality's encoder, the fused and unimodal gradients are combined by their sum
when they agree and by the min-norm (Pareto) direction, rescaled, when they conflict.

  mmbal train --config configs/synthetic/mmpareto.py --workdir /tmp/synthetic_mmpareto
"""


def get_config():
  return dict(
      data=dict(name="synthetic_imbalance", builder_config="two_modal", modalities=("audio", "video")),
      model=dict(fusion="concat", unimodal="heads"),
      method=dict(name="mmpareto", mmpareto=dict(gamma=1.0, rescale="per_leaf")),
      train=dict(batch_size=64, num_epochs=10),
  )
