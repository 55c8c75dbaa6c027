"""MMPareto (Wei & Hu, ICML 2024) on UCI mfeat (pix, fou, mor).

For each modality's encoder, the fused and unimodal gradients are combined by their sum
when they agree and by the min-norm (Pareto) direction, rescaled, when they conflict.

  mmbal train --config configs/mfeat/mmpareto.py --workdir /tmp/mfeat_mmpareto
"""


def get_config():
  return dict(
      data=dict(name="uci_mfeat", modalities=("pix", "fou", "mor")),
      model=dict(fusion="concat", unimodal="heads"),
      method=dict(name="mmpareto", mmpareto=dict(gamma=1.0, rescale="per_leaf")),
      train=dict(batch_size=64, num_epochs=20),
  )
