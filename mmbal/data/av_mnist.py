"""TFDS builder `av_mnist`: audio-visual digits, from real spoken and handwritten digits.

AV-MNIST (Vielzeuf et al. 2018; the data set of MultiBench, AGM and M-SAM) pairs each
MNIST image with a spoken recording of the same digit. Two configs:

* `multibench`: MultiBench's published `avmnist/` folder, the layout people who already
  have AV-MNIST hold: `image/{train,test}_data.npy` `[N, 28, 28]`, `audio/{train,test}_data.npy`
  `[N, 112, 112]` spectrograms, `{train,test}_labels.npy`. Validation is the LAST 5,000
  train examples, as MultiBench's loader takes them. Pixel values are scaled to [0, 1] when
  the images are stored as 0-255.
* `fsdd_mnist`: composed here from the Free Spoken Digit Dataset (`fsdd/recordings/
  {digit}_{speaker}_{take}.wav`, 8 kHz) and MNIST (`mnist/*-images-idx3-ubyte.gz` with their
  labels and/or the 784 + 1-column `mnist/*.csv[.gz]`; `t10k` files are the test images,
  everything else train). The composition, recorded in `info.metadata["composition"]`:

  - Clips are used in one split only. ``split=takes`` (default, FSDD's own convention):
    takes 0-4 test, 5-9 validation, 10-49 train; ``split=speakers``: speaker ``test_speaker``
    test, ``val_speaker`` validation, the others train.
  - Images: MNIST test images are the test split; validation is a stratified
    ``val_fraction`` (default 0.1, seed 0) of the train images.
  - Pairing (a fixed seeded rule): per split and digit, the images in file order are paired
    with that split's clips of the digit in a permutation drawn with ``seed`` (default 0),
    cycling when there are more images than clips (the reuse is recorded).
  - Audio: the first 1.0 s of the clip (zero-padded), the log-magnitude STFT
    ``log(|STFT| + 1e-6)`` with 128-sample Hann frames (16 ms) every 125 samples, the
    Nyquist bin dropped: ``[64, 64, 1]`` (time, frequency).
  - Degradations (the published AV-MNIST degrades both modalities): ``pca_energy`` removes
    that fraction of the images' PCA energy (the leading components, which carry most of
    it, are removed until the fraction is reached; PCA fitted on the train images only;
    MultiBench removes 0.75); ``snr_db`` adds seeded white Gaussian noise to every clip at
    that signal-to-noise ratio before the STFT (a documented substitute for the ESC-50
    environmental sounds of the published set, which are not available here). Defaults:
    ``pca_energy=0`` and no noise (clean).

  Options go after the config name: ``"fsdd_mnist:pca_energy=0.75,snr_db=0,split=speakers"``.

Images are stored as ``[28, 28, 1]`` float32 in [0, 1] (`image`), spectrograms as
``[T, F, 1]`` float32 (`audio`).
"""

from __future__ import annotations

import collections
import glob
import gzip
import os
import re
import zlib

import numpy as np
import tensorflow_datasets as tfds

from mmbal.data import _split
from mmbal.data import audio_features
from mmbal.data import manual

NUM_CLASSES = 10
CLIP_SAMPLES = 8003            # 1.0 s at 8 kHz plus the last frame's tail: 64 frames
FRAME, HOP = 128, 125
FSDD_RATE = 8000
MULTIBENCH_VAL = 5000
_WAV = re.compile(r"^(\d)_([A-Za-z]+)_(\d+)\.wav$")
FSDD_KEYS = ("split", "test_speaker", "val_speaker", "val_fraction", "seed", "pca_energy",
             "snr_db")


def spectrogram(samples: np.ndarray) -> np.ndarray:
  """``[64, 64, 1]`` log-magnitude STFT of the first second of an 8 kHz clip (see above)."""
  x = np.zeros(CLIP_SAMPLES, np.float64)
  x[:min(len(samples), CLIP_SAMPLES)] = samples[:CLIP_SAMPLES]
  frames = np.lib.stride_tricks.sliding_window_view(x, FRAME)[::HOP]
  power = np.abs(np.fft.rfft(frames * np.hanning(FRAME), axis=-1))[:, :FRAME // 2]
  return np.log(power + 1e-6).astype(np.float32)[..., None]


def add_noise(samples: np.ndarray, snr_db: float, rng: np.random.Generator) -> np.ndarray:
  """``samples`` plus white Gaussian noise at ``snr_db`` (power of the clip over the noise)."""
  power = float(np.mean(np.square(samples))) or 1e-12
  return samples + rng.normal(0.0, np.sqrt(power / 10 ** (snr_db / 10)), samples.shape)


def remove_pca_energy(train: np.ndarray, images: list[np.ndarray], fraction: float):
  """Removes the leading principal components of ``train`` (``[N, D]``) carrying ``fraction``
  of its variance from every array in ``images``; returns them and the count removed."""
  if fraction <= 0:
    return images, 0
  mean = train.mean(0)
  _, s, vt = np.linalg.svd(train - mean, full_matrices=False)
  energy = np.cumsum(s ** 2) / np.sum(s ** 2)
  k = int(np.searchsorted(energy, fraction) + 1)
  basis = vt[:k]
  return [x - ((x - mean) @ basis.T) @ basis for x in images], k


# ----------------------------------------------------------------------------- reading


def read_idx(path: str) -> np.ndarray:
  """An IDX file (optionally gzipped): ``uint8`` images ``[N, 28, 28]`` or labels ``[N]``."""
  opener = gzip.open if path.endswith(".gz") else open
  with opener(path, "rb") as f:
    data = f.read()
  if len(data) < 8 or data[0] != 0 or data[1] != 0 or data[2] != 0x08:
    raise manual.ManualDirError(f"{path}: not an IDX file of unsigned bytes")
  dims = data[3]
  shape = tuple(int.from_bytes(data[4 + 4 * i:8 + 4 * i], "big") for i in range(dims))
  body = np.frombuffer(data, np.uint8, offset=4 + 4 * dims)
  if body.size != int(np.prod(shape)):
    raise manual.ManualDirError(f"{path}: the header says {shape}, the file holds {body.size} "
                                f"bytes")
  return body.reshape(shape)


def read_csv_digits(path: str) -> tuple[np.ndarray, np.ndarray]:
  """A 784 + 1-column CSV (pixels, then the label; no header): ``(uint8 [N, 28, 28], [N])``."""
  opener = gzip.open if path.endswith(".gz") else open
  with opener(path, "rt") as f:
    rows = np.loadtxt(f, delimiter=",", dtype=np.int64, ndmin=2)
  if rows.shape[1] != 785:
    raise manual.ManualDirError(f"{path}: expected 785 columns (784 pixels, then the label), "
                                f"got {rows.shape[1]}")
  return rows[:, :784].reshape(-1, 28, 28).astype(np.uint8), rows[:, 784]


def read_mnist(root: str) -> dict[str, tuple[np.ndarray, np.ndarray]]:
  """``{"train": (images, labels), "test": ...}`` from every IDX pair and CSV under
  ``root/mnist``; files whose name starts with ``t10k`` are test images."""
  found = collections.defaultdict(lambda: ([], []))
  folder = os.path.join(root, "mnist")
  for path in sorted(glob.glob(os.path.join(folder, "*-images-idx3-ubyte*"))):
    labels = path.replace("-images-idx3-ubyte", "-labels-idx1-ubyte")
    if not os.path.exists(labels):
      raise manual.ManualDirError(f"{path}: no label file {os.path.basename(labels)} beside it")
    images, y = read_idx(path), read_idx(labels)
    if len(images) != len(y):
      raise manual.ManualDirError(f"{path}: {len(images)} images but {len(y)} labels")
    split = "test" if os.path.basename(path).startswith("t10k") else "train"
    found[split][0].append(images)
    found[split][1].append(y)
  for path in sorted(glob.glob(os.path.join(folder, "*.csv")) + glob.glob(os.path.join(folder, "*.csv.gz"))):
    images, y = read_csv_digits(path)
    split = "test" if os.path.basename(path).startswith("t10k") else "train"
    found[split][0].append(images)
    found[split][1].append(y)
  for split in ("train", "test"):
    if not found[split][0]:
      raise manual.ManualDirError(f"{folder}: no MNIST {split} images (IDX "
                                  f"'{'t10k' if split == 'test' else 'train'}-images-idx3-ubyte.gz' "
                                  f"with its labels, or a 785-column CSV)")
  return {s: (np.concatenate(found[s][0]), np.concatenate(found[s][1]).astype(np.int64))
          for s in ("train", "test")}


def fsdd_clips(root: str) -> list[tuple[int, str, int, str]]:
  """``(digit, speaker, take, path)`` of every ``fsdd/recordings/*.wav``."""
  folder = os.path.join(root, "fsdd", "recordings")
  clips = []
  for path in sorted(glob.glob(os.path.join(folder, "*.wav"))):
    match = _WAV.match(os.path.basename(path))
    if match:
      clips.append((int(match[1]), match[2], int(match[3]), path))
  if not clips:
    raise manual.ManualDirError(f"{folder}: no FSDD recordings named "
                                f"<digit>_<speaker>_<take>.wav")
  return clips


def clip_split(speaker: str, take: int, options: dict) -> str:
  """Which split a clip belongs to (clips are used in one split only)."""
  if options["split"] == "speakers":
    return {options["test_speaker"]: "test", options["val_speaker"]: "validation"}.get(
        speaker, "train")
  return "test" if take < 5 else "validation" if take < 10 else "train"


def pair(labels: np.ndarray, clips_by_digit: dict, rng: np.random.Generator) -> list[int]:
  """Per image, the index (into its digit's clip list) of its clip: a seeded permutation of
  the digit's clips, cycled over the digit's images in order."""
  out, seen = [], collections.Counter()
  orders = {d: rng.permutation(len(c)) for d, c in sorted(clips_by_digit.items())}
  for y in labels:
    order = orders.get(int(y))
    if order is None or not len(order):
      raise manual.ManualDirError(f"no FSDD clip of digit {int(y)} for this split")
    out.append(int(order[seen[int(y)] % len(order)]))
    seen[int(y)] += 1
  return out


# ----------------------------------------------------------------------------- options


def fsdd_options(options: dict[str, str]) -> dict:
  """The ``fsdd_mnist`` options, typed and checked (errors name the option)."""
  out = dict(split=manual.as_choice("split", options.get("split", "takes"), ("takes", "speakers")),
             test_speaker=options.get("test_speaker", "theo"),
             val_speaker=options.get("val_speaker", "george"),
             seed=manual.as_int("seed", options.get("seed", "0")))
  for key, default, low, high in (("val_fraction", "0.1", 0.0, 1.0), ("pca_energy", "0", 0.0, 0.99)):
    try:
      value = float(options.get(key, default))
    except ValueError:
      raise ValueError(f"{key}: expected a number, got {options[key]!r}") from None
    if not (low < value < high if key == "val_fraction" else low <= value <= high):
      raise ValueError(f"{key}: expected a value in {'(' if key == 'val_fraction' else '['}"
                       f"{low}, {high}{')' if key == 'val_fraction' else ']'}, got {value}")
    out[key] = value
  snr = options.get("snr_db", "none")
  try:
    out["snr_db"] = None if snr.lower() in ("none", "inf", "") else float(snr)
  except ValueError:
    raise ValueError(f"snr_db: expected a number of dB or none, got {snr!r}") from None
  if out["split"] == "speakers" and out["test_speaker"] == out["val_speaker"]:
    raise ValueError("test_speaker and val_speaker must differ")
  return out


def config_name(options: dict) -> str:
  """A build directory name per composition, so different options never share data."""
  defaults = fsdd_options({})
  parts = ["fsdd_mnist"] + [f"{k}{options[k]}" for k in ("pca_energy", "snr_db", "val_fraction", "seed")
                            if options[k] != defaults[k]]
  if options["split"] == "speakers":
    parts.append(f"speakers-{options['test_speaker']}-{options['val_speaker']}")
  return "_".join(parts)


# ----------------------------------------------------------------------------- builder


class AvMnist(manual.ManualBuilder):
  """AV-MNIST: MNIST images paired with spoken digits (`multibench` or `fsdd_mnist`)."""

  VERSION = tfds.core.Version("1.0.0")
  RELEASE_NOTES = {"1.0.0": "multibench folder; fsdd_mnist composed from FSDD + MNIST."}
  BUILDER_CONFIGS = [
      tfds.core.BuilderConfig(name="fsdd_mnist", description="composed from FSDD + MNIST"),
      tfds.core.BuilderConfig(name="multibench", description="MultiBench's avmnist/ folder"),
  ]
  DEFAULT_CONFIG_NAME = "fsdd_mnist"
  MANUAL_NAME = "av_mnist"
  MANUAL_MARKER = ""
  MANUAL_EXAMPLE = "fsdd/recordings/0_jackson_0.wav and mnist/t10k-images-idx3-ubyte.gz"
  PIPELINE_KEYS = FSDD_KEYS
  MANUAL_DOWNLOAD_INSTRUCTIONS = """\
  fsdd_mnist: <manual_dir>/av_mnist/ (or <manual_dir>/) holding
    fsdd/recordings/<digit>_<speaker>_<take>.wav   (Free Spoken Digit Dataset, 8 kHz)
    mnist/t10k-images-idx3-ubyte.gz + t10k-labels-idx1-ubyte.gz   (test images)
    mnist/train-images-idx3-ubyte.gz + train-labels-idx1-ubyte.gz and/or mnist/*.csv[.gz]
      (train images; CSV: 784 pixel columns then the label, no header)
  multibench: MultiBench's avmnist/ folder: image/{train,test}_data.npy,
    audio/{train,test}_data.npy, {train,test}_labels.npy
  """

  def __init__(self, *, config=None, **kwargs):
    name, options = manual.parse_config(config, FSDD_KEYS)
    if options and (name or self.DEFAULT_CONFIG_NAME) != "fsdd_mnist":
      raise ValueError(f"config {name!r} takes no options (they are fsdd_mnist's: {FSDD_KEYS})")
    self.options = fsdd_options(options)
    if options:   # a composition of its own: its own build directory
      config = tfds.core.BuilderConfig(name=config_name(self.options),
                                       description=f"fsdd_mnist with {options}")
    super().__init__(config=config, **kwargs)

  @property
  def composed(self) -> bool:
    return self.builder_config.name.startswith("fsdd_mnist")

  def _info(self) -> tfds.core.DatasetInfo:
    audio = (64, 64, 1) if self.composed else (112, 112, 1)
    features = tfds.features.FeaturesDict({
        "image": tfds.features.Tensor(shape=(28, 28, 1), dtype=np.float32),
        "audio": tfds.features.Tensor(shape=audio, dtype=np.float32),
        "label": tfds.features.ClassLabel(num_classes=NUM_CLASSES)})
    return tfds.core.DatasetInfo(
        builder=self, description=__doc__, features=features,
        homepage="https://github.com/Jakobovski/free-spoken-digit-dataset",
        metadata=tfds.core.MetadataDict(modalities=["image", "audio"]),
        license="FSDD: CC BY-SA 4.0; MNIST: CC BY-SA 3.0")

  def _split_generators(self, dl_manager):
    root = self._root(dl_manager)
    self._start_metadata(root)
    data = self._fsdd_mnist(root) if self.composed else self._multibench(root)
    return {split: self._generate_examples(*arrays) for split, arrays in data.items()}

  def _generate_examples(self, images, audio, labels):
    for i, (x, a, y) in enumerate(zip(images, audio, labels)):
      yield i, {"image": x, "audio": a, "label": int(y)}

  def _multibench(self, root: str) -> dict:
    folder = root if os.path.isdir(os.path.join(root, "image")) else os.path.join(root, "avmnist")
    load = lambda *parts: manual.read_array(os.path.join(folder, *parts))
    out = {}
    for split in ("train", "test"):
      images, audio = load("image", f"{split}_data.npy"), load("audio", f"{split}_data.npy")
      labels = load(f"{split}_labels.npy").reshape(-1).astype(np.int64)
      if not len(images) == len(audio) == len(labels):
        raise manual.ManualDirError(f"{folder} {split}: {len(images)} images, {len(audio)} "
                                    f"spectrograms, {len(labels)} labels")
      images = images.reshape(len(images), 28, 28, 1).astype(np.float32)
      if images.max() > 1.0:
        images = images / 255.0
      out[split] = (images, audio.reshape(len(audio), 112, 112, 1).astype(np.float32), labels)
    images, audio, labels = out["train"]
    if len(labels) <= MULTIBENCH_VAL:
      raise manual.ManualDirError(f"{folder}: {len(labels)} train examples; MultiBench's "
                                  f"validation takes the last {MULTIBENCH_VAL}")
    cut = len(labels) - MULTIBENCH_VAL   # MultiBench: the last 5,000 train examples validate
    out["train"], out["validation"] = ((images[:cut], audio[:cut], labels[:cut]),
                                       (images[cut:], audio[cut:], labels[cut:]))
    self.info.metadata["composition"] = dict(config="multibench", validation="last 5000 of train")
    return out

  def _fsdd_mnist(self, root: str) -> dict:
    o = self.options
    mnist = read_mnist(root)
    clips = collections.defaultdict(lambda: collections.defaultdict(list))
    for digit, speaker, take, path in fsdd_clips(root):
      clips[clip_split(speaker, take, o)][digit].append(path)
    x, y = mnist["train"]
    val_idx, train_idx = _split.stratified_split(y, int(round(o["val_fraction"] * len(y))), o["seed"])
    images = {"train": (x[train_idx], y[train_idx]), "validation": (x[val_idx], y[val_idx]),
              "test": mnist["test"]}
    flat = {s: v[0].reshape(len(v[0]), -1).astype(np.float64) / 255.0 for s, v in images.items()}
    degraded, removed = remove_pca_energy(flat["train"], list(flat.values()), o["pca_energy"])
    rng = np.random.default_rng([o["seed"], 1])
    out, reuse = {}, {}
    for (split, (_, labels)), pixels in zip(images.items(), degraded):
      picks = pair(labels, clips[split], rng)
      paths = [clips[split][int(d)][i] for d, i in zip(labels, picks)]
      audio = np.stack([self._spectrogram(path) for path in paths])
      out[split] = (pixels.reshape(-1, 28, 28, 1).astype(np.float32), audio, labels)
      reuse[split] = dict(images=len(labels), clips=sum(len(c) for c in clips[split].values()),
                          max_images_per_clip=max(collections.Counter(paths).values()))
    self.info.metadata["composition"] = dict(
        config="fsdd_mnist", options=o, pca_components_removed=removed,
        clip_split="takes 0-4 test, 5-9 validation, 10-49 train" if o["split"] == "takes"
        else f"speaker {o['test_speaker']} test, {o['val_speaker']} validation, others train",
        images="MNIST t10k -> test; the rest -> train, a stratified val_fraction -> validation",
        pairing="per split and digit, a seeded permutation of the clips, cycled over the images",
        audio="first 1.0 s, log |STFT| (128-sample Hann frames, hop 125), [64, 64, 1]",
        noise=("none" if o["snr_db"] is None else
               f"white Gaussian at {o['snr_db']} dB SNR (substitute for ESC-50), seeded per clip"),
        splits=reuse)
    return out

  def _spectrogram(self, path: str) -> np.ndarray:
    """The clip's spectrogram (cached: a clip serves several images), with its noise."""
    cache = self.__dict__.setdefault("_spectrograms", {})
    if path not in cache:
      try:
        samples, rate = manual.read_wav(path)
      except ValueError as err:
        raise manual.ManualDirError(f"{path}: {err}") from None
      if rate != FSDD_RATE:
        samples = audio_features.resample(samples, rate, FSDD_RATE)
      if self.options["snr_db"] is not None:
        rng = np.random.default_rng([self.options["seed"], zlib.crc32(os.path.basename(path).encode())])
        samples = add_noise(np.asarray(samples, np.float64), self.options["snr_db"], rng)
      cache[path] = spectrogram(samples)
    return cache[path]
