"""M-SAM (Nowdeh et al., NeurIPS 2025) on synthetic_imbalance two_modal.

Each batch, exact Shapley values of the modalities' contribution to accuracy (all 2^M
subsets in one vmapped forward) pick the dominant modality; the sharpness perturbation
is applied only to its share of the loss.

  mmbal train --config configs/synthetic/msam.py --workdir /tmp/synthetic_msam
"""


def get_config():
  return dict(
      data=dict(name="synthetic_imbalance", builder_config="two_modal", modalities=("audio", "video")),
      model=dict(fusion="concat", unimodal="probe"),
      method=dict(name="msam", msam=dict(rho=0.05, value="accuracy")),
      train=dict(batch_size=64, num_epochs=10),
  )
