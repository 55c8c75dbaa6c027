"""Joint training on AVE (28 classes; audio spectrogram + 3 video frames), OGM-GE's / PMR's setting.

Data: the `ave` builder, config `all` (every annotated row of the official lists; `first`
and `last` keep one row per repeated video as PMR and OGM-GE do), PMR's `[257, 1004]`
spectrogram (from its `.pkl` files or computed from the WAVs), 3 frames per clip as
OGM-GE's `AVDataset`; model selection on the official valSet.txt, test scored once at the
end. Put the files in `<data_dir>/downloads/manual/ave/` (README, "Data sets").

Encoders: a ResNet-18 per modality trained from scratch, as OGM-GE and PMR
(`mmbal.models.resnet`, GroupNorm instead of BatchNorm), fed the spectrogram as a
`[1004, 257, 1]` image and the 3 frames as a clip `[3, 224, 224, 3]`,
encoded frame by frame and averaged over frames as OGM-GE does (pipeline option
`audio_layout=image`). `model.image_encoder=cnn` swaps in
the small CNN for quick runs.

Optimiser as OGM-GE: SGD, lr 1e-3, momentum 0.9, weight decay 1e-4, batch 64, 100 epochs
(OGM-GE divides the lr by 10 at epoch 70; mmbal's schedules are cosine or constant).

  mmbal train --config configs/ave/joint.py --workdir runs/ave_joint \\
      data.data_dir=/path/to/tensorflow_datasets
"""


def get_config():
  return dict(
      data=dict(name="ave",
                builder_config="all:num_frames=3,audio_layout=image",
                modalities=("audio", "visual"), in_memory=False),
      model=dict(fusion="concat", unimodal="probe", image_encoder="resnet18"),
      method=dict(name="joint"),
      optimizer=dict(name="sgd", learning_rate=1e-3, momentum=0.9, weight_decay=1e-4,
                     schedule="cosine"),
      train=dict(batch_size=64, num_epochs=100),
  )
