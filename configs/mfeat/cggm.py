"""CGGM (Guo et al., NeurIPS 2024) on UCI mfeat (pix, fou, mor).

Linear classifiers on each encoder's detached features measure per-step accuracy gains;
encoder gradients are scaled by rho * B_m (guarded against the released code's sign
flips), and the direction term aligns the fused head's gradient with each classifier's.

  mmbal train --config configs/mfeat/cggm.py --workdir /tmp/mfeat_cggm
"""


def get_config():
  return dict(
      data=dict(name="uci_mfeat", modalities=("pix", "fou", "mor")),
      model=dict(fusion="concat", unimodal="probe"),
      method=dict(name="cggm", cggm=dict(rho=1.3, lam=0.1, direction="gradient")),
      train=dict(batch_size=64, num_epochs=20),
  )
