"""M-SAM (Nowdeh et al., NeurIPS 2025) on UCI mfeat (pix, fou, mor).

Each batch, exact Shapley values of the modalities' contribution to accuracy (all 2^M
subsets in one vmapped forward) pick the dominant modality; the sharpness perturbation
is applied only to its share of the loss.

  mmbal train --config configs/mfeat/msam.py --workdir /tmp/mfeat_msam
"""


def get_config():
  return dict(
      data=dict(name="uci_mfeat", modalities=("pix", "fou", "mor")),
      model=dict(fusion="concat", unimodal="probe"),
      method=dict(name="msam", msam=dict(rho=0.05, value="accuracy")),
      train=dict(batch_size=64, num_epochs=20),
  )
