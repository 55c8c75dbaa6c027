"""MLA (Zhang et al., CVPR 2024): alternating unimodal steps through a shared head, on synthetic_imbalance two_modal.

Each batch, every modality in turn takes an optimizer step through the shared head
(its kernel gradient OWM-projected), all inside one compiled step; at test time the
unimodal logits are fused with per-sample entropy weights.

  mmbal train --config configs/synthetic/mla.py --workdir /tmp/synthetic_mla
"""


def get_config():
  return dict(
      data=dict(name="synthetic_imbalance", builder_config="two_modal", modalities=("audio", "video")),
      model=dict(fusion="late_entropy", unimodal="shared_head"),
      method=dict(name="mla", mla=dict(projection="replace")),
      train=dict(batch_size=64, num_epochs=10),
  )
