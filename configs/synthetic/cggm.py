"""CGGM (Guo et al., NeurIPS 2024) on synthetic_imbalance two_modal.

Linear classifiers on each encoder's detached features measure per-step accuracy gains;
encoder gradients are scaled by rho * B_m (guarded against the released code's sign
flips), and the direction term aligns the fused head's gradient with each classifier's.

  mmbal train --config configs/synthetic/cggm.py --workdir /tmp/synthetic_cggm
"""


def get_config():
  return dict(
      data=dict(name="synthetic_imbalance", builder_config="two_modal", modalities=("audio", "video")),
      model=dict(fusion="concat", unimodal="probe"),
      method=dict(name="cggm", cggm=dict(rho=1.3, lam=0.1, direction="gradient")),
      train=dict(batch_size=64, num_epochs=10),
  )
