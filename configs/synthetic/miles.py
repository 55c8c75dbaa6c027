"""MILES (Guerra-Manzanares & Shamout, IJCNN 2025) on synthetic_imbalance two_modal.

After each epoch the conditional utilisation of every modality is measured on the
validation split (fused accuracy with that modality absent); when the gap exceeds tau the
dominant modality's encoder learning rate is multiplied by mu for the next epoch.

  mmbal train --config configs/synthetic/miles.py --workdir /tmp/synthetic_miles
"""


def get_config():
  return dict(
      data=dict(name="synthetic_imbalance", builder_config="two_modal", modalities=("audio", "video")),
      model=dict(fusion="concat", unimodal="probe"),
      method=dict(name="miles", miles=dict(tau=0.2, mu=0.5)),
      train=dict(batch_size=64, num_epochs=10),
  )
