"""AGM (Li et al., ICCV 2023) on UCI mfeat (pix, fou, mor).

Every step evaluates the model on all 2^M modality subsets (one vmapped forward),
forms Shapley-style unimodal outputs and scales each modality's share of the gradient by
kappa_m = exp(alpha * (running-mean discrepancy - current discrepancy)).

  mmbal train --config configs/mfeat/agm.py --workdir /tmp/mfeat_agm
"""


def get_config():
  return dict(
      data=dict(name="uci_mfeat", modalities=("pix", "fou", "mor")),
      model=dict(fusion="concat", unimodal="split_head"),
      method=dict(name="agm", agm=dict(alpha=1.0)),
      train=dict(batch_size=64, num_epochs=20),
  )
