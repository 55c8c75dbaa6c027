"""PCGrad (Yu et al., NeurIPS 2020) over the fused and unimodal objectives on UCI mfeat (pix, fou, mor).

Unimodal heads train their encoders; the K = M + 1 per-objective gradients (2 backward
passes for any M) are projected off each other where they conflict, then summed.

  mmbal train --config configs/mfeat/pcgrad.py --workdir /tmp/mfeat_pcgrad
"""


def get_config():
  return dict(
      data=dict(name="uci_mfeat", modalities=("pix", "fou", "mor")),
      model=dict(fusion="concat", unimodal="heads"),
      method=dict(name="pcgrad", pcgrad=dict(reduction="sum", order="random", project="all")),
      train=dict(batch_size=64, num_epochs=20),
  )
