"""Joint training on generated data where a dominant modality emerges on purpose.

The ``two_modal`` preset: ``audio`` is learned fast but capped at ~80% accuracy,
``video`` is learned slowly but is nearly fully informative.

  mmbal train --config configs/synthetic/joint.py --workdir /tmp/synthetic_joint
"""


def get_config():
  return dict(
      data=dict(name="synthetic_imbalance", builder_config="two_modal",
                modalities=("audio", "video")),
      model=dict(fusion="concat", unimodal="probe"),
      method=dict(name="joint"),
      train=dict(batch_size=64, num_epochs=10),
  )
