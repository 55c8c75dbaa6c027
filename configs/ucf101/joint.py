"""Joint training on UCF-101 (101 actions; RGB frames + optical flow), BalanceBenchmark's setting.

Data: the `ucf101` builder (TFDS name `mmbal_ucf101`), config `split1` (the official
trainlist01 / testlist01), 3 RGB frames and 3 flow frames (u, v) per clip as
BalanceBenchmark; validation the train videos of the lowest-numbered groups (a whole-group
carve from trainlist01, see `mmbal/data/ucf101.py`), test scored once at the end. Put the
files in `<data_dir>/downloads/manual/ucf101/` (README, "Data sets").

Encoders: a ResNet-18 per modality trained from scratch, as BalanceBenchmark
(`mmbal.models.resnet`, GroupNorm instead of BatchNorm), fed the 3 RGB frames as a clip
`[3, 224, 224, 3]` and the 3 flow frames as `[3, 224, 224, 2]`, each encoded frame by frame
and averaged over frames, as BalanceBenchmark does. `model.image_encoder=cnn` swaps in the small CNN for
quick runs.

Optimiser: SGD, lr 1e-3, momentum 0.9, weight decay 1e-4, batch 64, 100 epochs (the
OGM-GE-family settings BalanceBenchmark uses; mmbal's schedule is cosine).

  mmbal train --config configs/ucf101/joint.py --workdir runs/ucf101_joint \\
      data.data_dir=/path/to/tensorflow_datasets
"""


def get_config():
  return dict(
      data=dict(name="ucf101", builder_config="split1:num_frames=3",
                modalities=("visual", "flow"), in_memory=False),
      model=dict(fusion="concat", unimodal="probe", image_encoder="resnet18"),
      method=dict(name="joint"),
      optimizer=dict(name="sgd", learning_rate=1e-3, momentum=0.9, weight_decay=1e-4,
                     schedule="cosine"),
      train=dict(batch_size=64, num_epochs=100),
  )
