"""Joint training on Kinetics-Sounds (31 classes; audio fbank + 3 video frames), OGM-GE's setting.

Data: the `kinetics_sounds` builder, config `ks31` (OGM-GE's my_train.txt / my_test.txt,
the (1024, 128) fbanks, the extracted frames); 3 frames per clip as OGM-GE's `AVDataset`
and BalanceBenchmark; validation carved from my_train.txt by the builder's fixed rule (no
validation list exists upstream), test scored once at the end. `ks32` / `ks34` take the
same settings (`data.builder_config=ks34:...`). Put the files in
`<data_dir>/downloads/manual/kinetics_sounds/` (README, "Data sets").

Encoders: a ResNet-18 per modality trained from scratch, as OGM-GE, PMR, MMPareto and
BalanceBenchmark (`mmbal.models.resnet`, GroupNorm instead of BatchNorm), fed the fbank
as a `[1024, 128, 1]` image and the 3 frames as a clip `[3, 224, 224, 3]`,
encoded frame by frame and averaged over frames as OGM-GE does (pipeline option
`audio_layout=image`). `model.image_encoder=cnn` swaps in
the small CNN for quick runs.

Optimiser as OGM-GE: SGD, lr 1e-3, momentum 0.9, weight decay 1e-4, batch 64, 100 epochs
(OGM-GE divides the lr by 10 at epoch 70; mmbal's schedules are cosine or constant).

  mmbal train --config configs/kinetics_sounds/joint.py --workdir runs/ks_joint \\
      data.data_dir=/path/to/tensorflow_datasets
"""


def get_config():
  return dict(
      data=dict(name="kinetics_sounds",
                builder_config="ks31:num_frames=3,audio_layout=image",
                modalities=("audio", "visual"), in_memory=False),
      model=dict(fusion="concat", unimodal="probe", image_encoder="resnet18"),
      method=dict(name="joint"),
      optimizer=dict(name="sgd", learning_rate=1e-3, momentum=0.9, weight_decay=1e-4,
                     schedule="cosine"),
      train=dict(batch_size=64, num_epochs=100),
  )
