"""OGM-GE (Peng et al., CVPR 2022) on CREMA-D (audio spectrogram + one video frame).

Data, encoders (a ResNet-18 per modality) and optimiser as `configs/crema_d/joint.py`. Concat fusion with
OGM-GE's unimodal logits (the fused head split per modality); alpha 0.8 (the official
README's value for CREMA-D); as the official code, only the 4-D convolution kernels of
the dominant modality's encoder are damped and noised (`leaves="conv"`), in epochs 0 to 50
(inclusive: `end_epoch=51`).

  mmbal train --config configs/crema_d/ogm_ge.py --workdir runs/crema_d_ogm_ge \\
      data.data_dir=/path/to/tensorflow_datasets
"""


def get_config():
  return dict(
      data=dict(name="crema_d", builder_config="ogm_ge:visual_layout=channels,audio_layout=image",
                modalities=("audio", "visual"), in_memory=False),
      model=dict(fusion="concat", unimodal="split_head", image_encoder="resnet18"),
      method=dict(name="ogm_ge", ogm_ge=dict(alpha=0.8, leaves="conv", noise=True,
                                             start_epoch=0, end_epoch=51)),
      optimizer=dict(name="sgd", learning_rate=1e-3, momentum=0.9, weight_decay=1e-4,
                     schedule="cosine"),
      train=dict(batch_size=64, num_epochs=100),
  )
