"""`av_mnist` builder: fixtures in the exact upstream formats (FSDD WAVs, MNIST IDX / CSV,
MultiBench's npy folder), written here; hand-checkable audio, PCA and pairing properties."""
import gzip
import json

import numpy as np
import pytest
import scipy.io.wavfile

import mmbal.data
from mmbal.data import av_mnist, manual

SPEAKERS = ("jackson", "theo", "george")
TAKES = (0, 5, 10)            # FSDD takes: test, validation, train
RATE = 8000


def tone(digit: int, seconds: float = 0.5) -> np.ndarray:
  """A digit's clip: a sine at 500 + 250 * digit Hz, int16 as FSDD's."""
  t = np.arange(int(seconds * RATE)) / RATE
  return (8000 * np.sin(2 * np.pi * (500 + 250 * digit) * t)).astype(np.int16)


def peak_bin(digit: int) -> int:
  """The spectrogram bin of the digit's tone: f / (8000 / 128)."""
  return round((500 + 250 * digit) / (RATE / 128))


def write_idx(path, array: np.ndarray):
  header = bytes([0, 0, 0x08, array.ndim]) + b"".join(int(n).to_bytes(4, "big") for n in array.shape)
  with gzip.open(path, "wb") as f:
    f.write(header + array.astype(np.uint8).tobytes())


def digit_images(labels, rng) -> np.ndarray:
  images = rng.integers(0, 50, (len(labels), 28, 28))
  for i, y in enumerate(labels):   # a bright bar whose row says the digit
    images[i, 2 + 2 * y, 4:24] = 255
  return images.astype(np.uint8)


@pytest.fixture(scope="module")
def fsdd_mnist_dir(tmp_path_factory):
  root = tmp_path_factory.mktemp("manual") / "av_mnist"
  recordings = root / "fsdd" / "recordings"
  recordings.mkdir(parents=True)
  for digit in range(10):
    for speaker in SPEAKERS:
      for take in TAKES:
        scipy.io.wavfile.write(recordings / f"{digit}_{speaker}_{take}.wav", RATE, tone(digit))
  (root / "mnist").mkdir()
  rng = np.random.default_rng(0)
  test_labels = np.arange(30) % 10
  write_idx(root / "mnist" / "t10k-images-idx3-ubyte.gz", digit_images(test_labels, rng))
  write_idx(root / "mnist" / "t10k-labels-idx1-ubyte.gz", test_labels)
  train_labels = np.arange(60) % 10
  rows = np.concatenate([digit_images(train_labels, rng).reshape(60, -1), train_labels[:, None]], 1)
  with gzip.open(root / "mnist" / "mnist_5k.csv.gz", "wt") as f:
    np.savetxt(f, rows, fmt="%d", delimiter=",")
  return root


def _load(manual_dir, tmp_path, config="fsdd_mnist"):
  return mmbal.data.load("av_mnist", data_dir=str(tmp_path / "tfds"), config=config,
                         manual_dir=str(manual_dir), in_memory=True)


def _examples(split):
  return {k: np.concatenate([b[k][b["mask"]] for b in mmbal.data.eval_batches(split, 16)])
          for k in ("image", "audio", "label")}


def test_fsdd_mnist_pairs_each_image_with_a_clip_of_its_digit(fsdd_mnist_dir, tmp_path):
  data = _load(fsdd_mnist_dir, tmp_path)
  assert data.spec.modalities == {"image": (28, 28, 1), "audio": (64, 64, 1)}
  assert data.spec.split_sizes == {"train": 54, "validation": 6, "test": 30}
  for split in ("train", "validation", "test"):
    ex = _examples(data[split])
    peaks = ex["audio"][..., 0].mean(axis=1).argmax(axis=-1)    # mean over time frames
    np.testing.assert_array_equal(peaks, [peak_bin(y) for y in ex["label"]])
    bars = ex["image"][..., 0].mean(axis=-1).argmax(axis=-1)     # the bright row
    np.testing.assert_array_equal(bars, 2 + 2 * ex["label"])
    assert ex["image"].min() >= 0.0 and ex["image"].max() <= 1.0
  composition = data.builder.info.metadata["composition"]
  # FSDD's takes: 0-4 test, 5-9 validation, 10-49 train; each clip in one split only.
  assert {s: v["clips"] for s, v in composition["splits"].items()} == {
      "train": 30, "validation": 30, "test": 30}
  assert composition["noise"] == "none" and composition["pca_components_removed"] == 0


def test_fsdd_mnist_options_build_their_own_data(fsdd_mnist_dir, tmp_path):
  """Speaker-disjoint clips, 50% of the PCA energy removed, white noise at 0 dB: a build
  directory of its own; the tone still dominates its bin at 0 dB (one bin vs 64 of noise)."""
  options = "pca_energy=0.5,snr_db=0,split=speakers,test_speaker=theo,val_speaker=jackson"
  data = _load(fsdd_mnist_dir, tmp_path, f"fsdd_mnist:{options}")
  assert data.builder.builder_config.name == ("fsdd_mnist_pca_energy0.5_snr_db0.0_"
                                              "speakers-theo-jackson")
  composition = data.builder.info.metadata["composition"]
  assert composition["pca_components_removed"] >= 1
  assert {s: v["clips"] for s, v in composition["splits"].items()} == {
      "train": 30, "validation": 30, "test": 30}   # george / jackson / theo
  clean = _examples(_load(fsdd_mnist_dir, tmp_path / "clean")["test"])
  noisy = _examples(data["test"])
  assert not np.allclose(clean["audio"], noisy["audio"])
  assert not np.allclose(clean["image"], noisy["image"])
  peaks = noisy["audio"][..., 0].mean(axis=1).argmax(axis=-1)
  np.testing.assert_array_equal(peaks, [peak_bin(y) for y in noisy["label"]])


@pytest.mark.parametrize("config, message", [
    ("fsdd_mnist:colour=red", "expected pipeline options key=value"),
    ("fsdd_mnist:pca_energy=2", r"pca_energy: expected a value in \[0.0, 0.99\]"),
    ("fsdd_mnist:snr_db=loud", "snr_db: expected a number of dB or none"),
    ("multibench:seed=1", "takes no options"),
    ("fsdd_mnist:split=speakers,test_speaker=nobody,val_speaker=jackson", None),
])
def test_fsdd_mnist_errors_name_the_option(fsdd_mnist_dir, tmp_path, config, message):
  if message is None:   # an unknown test speaker: the test split has no clips to pair
    with pytest.raises(manual.ManualDirError, match="no FSDD clip of digit 0"):
      _load(fsdd_mnist_dir, tmp_path, config)
    return
  with pytest.raises(ValueError, match=message):
    _load(fsdd_mnist_dir, tmp_path, config)


def test_audio_and_image_transforms_by_hand():
  # A 1000 Hz tone: bin 1000 / (8000 / 128) = 16 in every frame.
  t = np.arange(8000) / 8000
  spec = av_mnist.spectrogram(np.sin(2 * np.pi * 1000 * t))
  assert spec.shape == (64, 64, 1) and set(spec[..., 0].argmax(-1)) == {16}
  # Noise at 10 dB: noise power = signal power / 10.
  x = np.ones(200_000)
  noisy = av_mnist.add_noise(x, 10.0, np.random.default_rng(0))
  assert np.var(noisy - x) == pytest.approx(0.1, rel=0.02)
  # PCA: variances 9 and 1 along the axes; 50% of the energy is the first component alone.
  rng = np.random.default_rng(0)
  train = rng.normal(size=(4000, 2)) * [3.0, 1.0]
  (out,), k = av_mnist.remove_pca_energy(train, [train], 0.5)
  assert k == 1 and np.var(out[:, 0]) < 1e-3 and np.var(out[:, 1]) == pytest.approx(1.0, rel=0.1)


def test_idx_and_csv_readers(tmp_path):
  images = np.arange(2 * 28 * 28).reshape(2, 28, 28) % 256
  write_idx(tmp_path / "x-images-idx3-ubyte.gz", images)
  np.testing.assert_array_equal(av_mnist.read_idx(str(tmp_path / "x-images-idx3-ubyte.gz")), images)
  (tmp_path / "bad.gz").write_bytes(gzip.compress(b"\x08\x08\x08\x01\x00\x00\x00\x02"))
  with pytest.raises(manual.ManualDirError, match="not an IDX file"):
    av_mnist.read_idx(str(tmp_path / "bad.gz"))
  (tmp_path / "d.csv").write_text("1,2\n")
  with pytest.raises(manual.ManualDirError, match="expected 785 columns"):
    av_mnist.read_csv_digits(str(tmp_path / "d.csv"))


def test_multibench_folder(tmp_path, monkeypatch):
  """MultiBench's layout; validation is the LAST examples of train (5,000 there; 3 here)."""
  monkeypatch.setattr(av_mnist, "MULTIBENCH_VAL", 3)
  folder = tmp_path / "manual" / "avmnist"
  for sub in ("image", "audio"):
    (folder / sub).mkdir(parents=True)
  rng = np.random.default_rng(0)
  for split, n in (("train", 8), ("test", 4)):
    labels = np.arange(n) % 10
    np.save(folder / "image" / f"{split}_data.npy", rng.integers(0, 256, (n, 28, 28)).astype(np.float32))
    np.save(folder / "audio" / f"{split}_data.npy", rng.normal(size=(n, 112, 112)).astype(np.float32))
    np.save(folder / f"{split}_labels.npy", labels)
  data = _load(tmp_path / "manual", tmp_path, "multibench")
  assert data.spec.split_sizes == {"train": 5, "validation": 3, "test": 4}
  assert data.spec.modalities == {"image": (28, 28, 1), "audio": (112, 112, 1)}
  np.testing.assert_array_equal(sorted(_examples(data["validation"])["label"]), [5, 6, 7])
  assert _examples(data["train"])["image"].max() <= 1.0   # 0-255 pixels scaled


def test_av_mnist_config_trains_from_the_manual_dir(fsdd_mnist_dir, tmp_path):
  from mmbal.train import apply_overrides, load_config  # pylint: disable=import-outside-toplevel
  from mmbal.train.loop import train_and_evaluate  # pylint: disable=import-outside-toplevel
  config = apply_overrides(load_config("configs/av_mnist/joint.py"), [
      f"data.data_dir={tmp_path / 'tfds'}", f"data.manual_dir={fsdd_mnist_dir}",
      "log.progress=False", "train.batch_size=16", "train.num_steps=2", "eval.batch_size=16",
      "model.feature_dim=8", "model.hidden_dim=8", "eval.linear_probe=False"])
  run = train_and_evaluate(config, tmp_path / "run")
  results = json.loads((tmp_path / "run" / "results.json").read_text())
  assert set(results["test"]["unimodal"]) == {"image", "audio"}
  assert results["test"]["count"] == 30 and int(run.state.step) == 2
