"""MNL (Gong et al., NeurIPS 2025): negative learning from the per-sample dominant modality, on UCI mfeat (pix, fou, mor).

Late fusion of unimodal heads (the paper's LF baseline: fused logits = mean of the
unimodal logits). After a one-epoch cross-entropy warm-up, each sample's robust
dominant modality guides the others on the non-target classes (weight 0.7).
method.mnl.released_code=True reproduces the released code's extra CE and 1/C scaling.

  mmbal train --config configs/mfeat/mnl.py --workdir /tmp/mfeat_mnl
"""


def get_config():
  return dict(
      data=dict(name="uci_mfeat", modalities=("pix", "fou", "mor")),
      model=dict(fusion="late", unimodal="heads"),
      method=dict(name="mnl", mnl=dict(weight=0.7, competitor="own", released_code=False, warmup_epochs=1)),
      train=dict(batch_size=64, num_epochs=20),
  )
