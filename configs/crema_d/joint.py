"""Joint training on CREMA-D (audio spectrogram + one video frame), OGM-GE's CREMA-D setting.

Data: the `crema_d` builder, config `ogm_ge` (OGM-GE's spectrogram from the WAVs, the
1-fps frames, OGM-GE's label order), one frame per clip (OGM-GE's `--fps 1`), validation
on D&R's val.csv (or the documented carve from train.csv), test scored once at the end.
Put the files in `<data_dir>/downloads/manual/crema_d/` (README, "Data sets").

Encoders: a ResNet-18 per modality trained from scratch, as the papers (OGM-GE, PMR, AGM,
MMPareto) do (`mmbal.models.resnet`, GroupNorm instead of BatchNorm), fed the spectrogram
as a `[188, 257, 1]` image and the frame as `[224, 224, 3]` (pipeline options
`audio_layout=image`, `visual_layout=channels`). `model.image_encoder=cnn` swaps in the small
CNN for quick runs.

Optimiser as OGM-GE: SGD, lr 1e-3, momentum 0.9, weight decay 1e-4, batch 64, 100 epochs
(OGM-GE divides the lr by 10 at epoch 70; mmbal's schedules are cosine or constant).

  mmbal train --config configs/crema_d/joint.py --workdir runs/crema_d_joint \\
      data.data_dir=/path/to/tensorflow_datasets
"""


def get_config():
  return dict(
      data=dict(name="crema_d", builder_config="ogm_ge:visual_layout=channels,audio_layout=image",
                modalities=("audio", "visual"), in_memory=False),
      model=dict(fusion="concat", unimodal="probe", image_encoder="resnet18"),
      method=dict(name="joint"),
      optimizer=dict(name="sgd", learning_rate=1e-3, momentum=0.9, weight_decay=1e-4,
                     schedule="cosine"),
      train=dict(batch_size=64, num_epochs=100),
  )
