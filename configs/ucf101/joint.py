"""Joint training on UCF-101 (101 actions; RGB frames + optical flow), BalanceBenchmark's setting.

Data: the `ucf101` builder (TFDS name `mmbal_ucf101`), config `split1` (the official
trainlist01 / testlist01), 3 RGB frames and 3 flow frames (u, v) per clip as
BalanceBenchmark; validation the train videos of the lowest-numbered groups (a whole-group
carve from trainlist01, see `mmbal/data/ucf101.py`), test scored once at the end. Put the
files in `<data_dir>/downloads/manual/ucf101/` (README, "Data sets").

Encoders: a ResNet-18 per modality trained from scratch, as BalanceBenchmark
(`mmbal.models.resnet`, GroupNorm instead of BatchNorm), fed the 3 RGB frames stacked on
the channel axis, `[224, 224, 9]`, and the 3 flow frames likewise, `[224, 224, 6]`
(pipeline option `visual_layout=channels`: the trainer's modalities are vectors, sequences
or images, so a `[K, H, W, C]` clip, which BalanceBenchmark encodes per frame and pools, is
given to the ResNet as one image). `model.image_encoder=cnn` swaps in the small CNN for
quick runs.

Optimiser: SGD, lr 1e-3, momentum 0.9, weight decay 1e-4, batch 64, 100 epochs (the
OGM-GE-family settings BalanceBenchmark uses; mmbal's schedule is cosine).

  mmbal train --config configs/ucf101/joint.py --workdir runs/ucf101_joint \\
      data.data_dir=/path/to/tensorflow_datasets
"""


def get_config():
  return dict(
      data=dict(name="ucf101", builder_config="split1:num_frames=3,visual_layout=channels",
                modalities=("visual", "flow"), in_memory=False),
      model=dict(fusion="concat", unimodal="probe", image_encoder="resnet18"),
      method=dict(name="joint"),
      optimizer=dict(name="sgd", learning_rate=1e-3, momentum=0.9, weight_decay=1e-4,
                     schedule="cosine"),
      train=dict(batch_size=64, num_epochs=100),
  )
