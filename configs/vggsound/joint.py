"""Joint training on VGGSound (309 classes; audio spectrogram + 3 video frames), OGM-GE's setting.

Data: the `vggsound` builder (the official vggsound.csv, 16-kHz WAVs, extracted frames):
OGM-GE's `[626, 129]` log spectrogram of a 5-s crop (random in training, central in
evaluation), 3 frames per clip (OGM-GE's `use_video_frames`); validation a fixed twentieth
carved from the CSV's train rows (VGGSound has none), test scored once at the end. Put the
files in `<data_dir>/downloads/manual/vggsound/` (README, "Data sets").

Encoders: a ResNet-18 per modality trained from scratch, as OGM-GE
(`mmbal.models.resnet`, GroupNorm instead of BatchNorm), fed the spectrogram as a
`[626, 129, 1]` image and the 3 frames as a clip `[3, 224, 224, 3]`,
encoded frame by frame and averaged over frames as OGM-GE does (pipeline option
`audio_layout=image`). `model.image_encoder=cnn` swaps in
the small CNN for quick runs.

Optimiser as OGM-GE: SGD, lr 1e-3, momentum 0.9, weight decay 1e-4, batch 64, 100 epochs
(OGM-GE divides the lr by 10 at epoch 70; mmbal's schedules are cosine or constant).

  mmbal train --config configs/vggsound/joint.py --workdir runs/vggsound_joint \\
      data.data_dir=/path/to/tensorflow_datasets
"""


def get_config():
  return dict(
      data=dict(name="vggsound",
                builder_config="vggsound:num_frames=3,audio_layout=image",
                modalities=("audio", "visual"), in_memory=False),
      model=dict(fusion="concat", unimodal="probe", image_encoder="resnet18"),
      method=dict(name="joint"),
      optimizer=dict(name="sgd", learning_rate=1e-3, momentum=0.9, weight_decay=1e-4,
                     schedule="cosine"),
      train=dict(batch_size=64, num_epochs=100),
  )
