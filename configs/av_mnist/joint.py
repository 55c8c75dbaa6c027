"""Joint training on AV-MNIST (`av_mnist` builder): MNIST images and spoken digits.

Data: `fsdd_mnist`, composed from the Free Spoken Digit Dataset and MNIST in the manual dir
(`data.manual_dir`, or `<data_dir>/downloads/manual/av_mnist/`; README, "Data sets"); with
MultiBench's `avmnist/` folder use `data.builder_config=multibench`. Degradations are
builder options, e.g. `data.builder_config="fsdd_mnist:pca_energy=0.75,snr_db=0"`.
Validation is the builder's own split (its clips are disjoint from train's and test's).

Model: the papers' scale for AV-MNIST: a small CNN per modality (three strided 3x3
convolutions, 16/32/64 channels, flattened: `cnn_flat`) on the 28x28 image and the 64x64 log
spectrogram, concat fusion, linear probes (`joint_late.py`: late fusion of unimodal heads).

  mmbal train --config configs/av_mnist/joint.py --workdir runs/av_mnist_joint \\
      data.manual_dir=/path/to/av_mnist data.data_dir=/path/to/tensorflow_datasets
"""


def get_config():
  return dict(
      data=dict(name="av_mnist", builder_config="fsdd_mnist", modalities=("image", "audio"),
                in_memory=True),
      model=dict(feature_dim=64, hidden_dim=128, fusion="concat", unimodal="probe",
                 image_encoder="cnn_flat"),
      method=dict(name="joint"),
      optimizer=dict(name="adamw", learning_rate=1e-3, weight_decay=1e-4, schedule="cosine"),
      train=dict(batch_size=64, num_epochs=10),
  )
