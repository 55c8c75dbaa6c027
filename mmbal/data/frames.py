"""Stored records -> model inputs in the grain pipeline: frame sampling, decoding, augmentation.

Builders of audio-visual data sets store what is deterministic (spectrograms, the
extracted frames as their original JPEG bytes, any number per clip) and leave frame
sampling and augmentation to the input pipeline, so that they are drawn afresh every
epoch. Such a builder has a method `input_decoder()` returning a `Decoder`; then
`mmbal.data.load` reports the decoder's output shapes in its `DataSpec`, `Source.gather`
decodes (deterministically: evaluation) and `train_iterator` decodes with per-example
random draws.

Randomness: the draws for the example at global stream position `t` of a training
stream with seed `seed` (position `t` = the t-th example of the shuffled, repeated
stream, the same for every process count and batch size) come from
`np.random.default_rng((seed, t, i))`, `i` the position of the input in the decoder. They
are fresh each epoch (t grows), reproducible, independent of batching and sharding, and
survive checkpoint/restore of the iterator.

Frames (`FramesInput`), the OGM-GE family's recipe:
* sampling: the stored n frames are cut into K equal segments and frame
  `floor((i + u_i) * n / K)` is taken from segment i, with `u_i ~ U[0, 1)` in training and
  `u_i = 1/2` (the segment's centre) in evaluation; n < K repeats frames.
* training augmentation (`augment=True`): per frame, a random resized crop (area
  fraction in `crop_scale`, aspect ratio in [3/4, 4/3], 10 tries then a centre crop),
  resized (bilinear) to `image_size` x `image_size`, flipped left-right with
  probability 1/2: torchvision's `RandomResizedCrop` + `RandomHorizontalFlip`, as the
  OGM-GE, PMR, MMPareto and BalanceBenchmark loaders use (mmbal's own implementation;
  it draws from numpy, so the same crops are not produced);
* evaluation: the whole frame resized to `image_size` x `image_size` (`Resize((224, 224))`);
* values in [0, 1], then ImageNet normalisation (`normalize=True`).
"""

from __future__ import annotations

import dataclasses
import io
import math
import os
import re
from typing import Any, Mapping, Sequence

import numpy as np
from PIL import Image

IMAGENET_MEAN = np.array([0.485, 0.456, 0.406], np.float32)
IMAGENET_STD = np.array([0.229, 0.224, 0.225], np.float32)
IMAGE_SUFFIXES = (".jpg", ".jpeg")
_LAST_INT = re.compile(r"(\d+)(?!.*\d)")


# ----------------------------------------------------------------------------- files


def list_frames(directory: str | os.PathLike) -> list[str]:
  """The JPEG files of a frame directory, sorted by the last integer in their names.

  Names differ per preprocessing (`00030.jpg`, `frame_00002.jpg`, `img_1.jpg`), and
  plain string order puts `img_10` before `img_2`; names without digits come last,
  in string order.
  """
  names = [n for n in os.listdir(directory) if n.lower().endswith(IMAGE_SUFFIXES)]

  def key(name):
    match = _LAST_INT.search(name)
    return (0, int(match.group(1)), name) if match else (1, 0, name)

  return [os.path.join(directory, n) for n in sorted(names, key=key)]


def looks_like_jpeg(path: str | os.PathLike) -> bool:
  """Cheap check: the file starts with a JPEG start-of-image marker."""
  with open(path, "rb") as f:
    return f.read(3) == b"\xff\xd8\xff"


def check_image_bytes(data: bytes) -> tuple[int, int]:
  """Decodes encoded image bytes fully; returns (width, height) or raises ValueError."""
  try:
    with Image.open(io.BytesIO(data)) as img:
      img.load()
      return img.size
  except Exception as e:  # PIL raises OSError, SyntaxError, ValueError, ...
    raise ValueError(f"not a decodable image ({type(e).__name__}: {e})") from None


# ----------------------------------------------------------------------------- sampling


def frame_indices(num_stored: int, num_frames: int, rng: np.random.Generator | None) -> np.ndarray:
  """Which of `num_stored` frames to use: one per segment, random (rng) or central (None)."""
  if num_stored < 1:
    raise ValueError("frame_indices: a clip has no frames")
  u = 0.5 if rng is None else rng.random(num_frames)
  idx = np.floor((np.arange(num_frames) + u) * num_stored / num_frames).astype(np.int64)
  return np.minimum(idx, num_stored - 1)


def random_resized_crop_box(width: int, height: int, rng: np.random.Generator,
                            scale=(0.08, 1.0), ratio=(3 / 4, 4 / 3)) -> tuple[int, int, int, int]:
  """A crop box (left, top, right, bottom) with random area fraction and aspect ratio."""
  area = width * height
  log_ratio = (math.log(ratio[0]), math.log(ratio[1]))
  for _ in range(10):
    target = area * rng.uniform(scale[0], scale[1])
    aspect = math.exp(rng.uniform(*log_ratio))
    w = int(round(math.sqrt(target * aspect)))
    h = int(round(math.sqrt(target / aspect)))
    if 0 < w <= width and 0 < h <= height:
      left = int(rng.integers(0, width - w + 1))
      top = int(rng.integers(0, height - h + 1))
      return left, top, left + w, top + h
  # Fallback: the largest centred crop with the aspect ratio clamped to `ratio`.
  aspect = width / height
  if aspect < ratio[0]:
    w, h = width, int(round(width / ratio[0]))
  elif aspect > ratio[1]:
    w, h = int(round(height * ratio[1])), height
  else:
    w, h = width, height
  left, top = (width - w) // 2, (height - h) // 2
  return left, top, left + w, top + h


@dataclasses.dataclass(frozen=True)
class FrameOptions:
  """How stored frames become the model's visual input.

  Attributes:
    num_frames: K, frames per example (OGM-GE CREMA-D: 1; MMPareto, BalanceBenchmark: 2;
      PMR and OGM-GE's Kinetics-Sounds / AVE loaders: 3).
    image_size: output height and width.
    layout: `"frames"`: `[K, H, W, 3]`; `"channels"`: the K frames stacked on the channel
      axis, `[H, W, 3K]` (an image for the 2-D CNN encoders; K = 1 gives `[H, W, 3]`).
    augment: random resized crop + horizontal flip in training (evaluation never augments).
    crop_scale: area fraction range of the random crop.
    normalize: subtract the ImageNet mean and divide by its std (else values in [0, 1]).
  """

  num_frames: int = 1
  image_size: int = 224
  layout: str = "frames"
  augment: bool = True
  crop_scale: tuple[float, float] = (0.08, 1.0)
  normalize: bool = True

  def __post_init__(self):
    if not (isinstance(self.num_frames, int) and self.num_frames >= 1):
      raise ValueError(f"num_frames: expected an int >= 1, got {self.num_frames!r}")
    if not (isinstance(self.image_size, int) and self.image_size >= 1):
      raise ValueError(f"image_size: expected an int >= 1, got {self.image_size!r}")
    if self.layout not in ("frames", "channels"):
      raise ValueError(f"visual_layout: expected 'frames' or 'channels', got {self.layout!r}")
    lo, hi = self.crop_scale
    if not 0 < lo <= hi <= 1:
      raise ValueError(f"crop_scale: expected 0 < lo <= hi <= 1, got {self.crop_scale!r}")

  @property
  def shape(self) -> tuple[int, ...]:
    s, k = self.image_size, self.num_frames
    return (k, s, s, 3) if self.layout == "frames" else (s, s, 3 * k)


def decode_frame(data: bytes, options: FrameOptions, rng: np.random.Generator | None) -> np.ndarray:
  """One encoded frame -> float32 `[S, S, 3]` (augmented when rng is given and options ask)."""
  size = (options.image_size, options.image_size)
  with Image.open(io.BytesIO(data)) as img:
    img = img.convert("RGB")
    if rng is not None and options.augment:
      box = random_resized_crop_box(img.width, img.height, rng, options.crop_scale)
      img = img.resize(size, Image.Resampling.BILINEAR, box=box)
      if rng.random() < 0.5:
        img = img.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    else:
      img = img.resize(size, Image.Resampling.BILINEAR)
    x = np.asarray(img, dtype=np.float32) / 255.0
  if options.normalize:
    x = (x - IMAGENET_MEAN) / IMAGENET_STD
  return x


# ----------------------------------------------------------------------------- inputs


@dataclasses.dataclass(frozen=True)
class ArrayInput:
  """A stored float array used as it is, optionally transposed and given a channel axis.

  Attributes:
    feature: the stored feature's name.
    stored_shape: its shape.
    transpose: axis order applied to it (e.g. `(1, 0)`: `[F, T]` -> `[T, F]`), or None.
    add_channel: append an axis of size 1 (`[T, F]` -> `[T, F, 1]`, an image for the CNNs).
  """

  feature: str
  stored_shape: tuple[int, ...]
  transpose: tuple[int, ...] | None = None
  add_channel: bool = False
  random = False

  @property
  def shape(self) -> tuple[int, ...]:
    shape = tuple(self.stored_shape)
    if self.transpose is not None:
      shape = tuple(shape[a] for a in self.transpose)
    return shape + (1,) if self.add_channel else shape

  def __call__(self, record: Mapping[str, Any], rng: np.random.Generator | None) -> np.ndarray:
    del rng
    x = np.asarray(record[self.feature], dtype=np.float32)
    if self.transpose is not None:
      x = x.transpose(self.transpose)
    return x[..., None] if self.add_channel else x


@dataclasses.dataclass(frozen=True)
class FramesInput:
  """A stored sequence of encoded frames -> K sampled, decoded frames (see the module doc)."""

  feature: str
  options: FrameOptions = FrameOptions()

  @property
  def random(self) -> bool:
    return True  # The training frames are sampled at random even without augmentation.

  @property
  def shape(self) -> tuple[int, ...]:
    return self.options.shape

  def __call__(self, record: Mapping[str, Any], rng: np.random.Generator | None) -> np.ndarray:
    stored = record[self.feature]
    idx = frame_indices(len(stored), self.options.num_frames, rng)
    x = np.stack([decode_frame(stored[i], self.options, rng) for i in idx])
    if self.options.layout == "channels":
      x = x.transpose(1, 2, 0, 3).reshape(self.shape)
    return x


class Decoder:
  """Builds model inputs `{modality: float32 [B, ...]}` from stored records.

  Args:
    inputs: modality name -> an input (`ArrayInput`, `FramesInput`, or any object with
      `shape`, `random` and `__call__(record, rng)`), in the data set's modality order.
  """

  def __init__(self, inputs: Mapping[str, Any]):
    self.inputs = dict(inputs)
    self._index = {name: i for i, name in enumerate(self.inputs)}

  def __repr__(self):
    return f"Decoder({self.inputs!r})"

  @property
  def shapes(self) -> dict[str, tuple[int, ...]]:
    return {name: tuple(op.shape) for name, op in self.inputs.items()}

  @property
  def random(self) -> bool:
    """Whether training draws anything at random (then `train_iterator` passes keys)."""
    return any(op.random for op in self.inputs.values())

  def __call__(self, records: Sequence[Mapping[str, Any]], modalities: Sequence[str],
               keys: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """Decodes a batch; `keys` `[B, 2]` (seed, stream position) for training, None for eval."""
    out = {}
    for name in modalities:
      op, i = self.inputs[name], self._index[name]
      rngs = ([None] * len(records) if keys is None or not op.random else
              [np.random.default_rng((int(s), int(t), i)) for s, t in keys])
      out[name] = np.stack([op(r, g) for r, g in zip(records, rngs)]).astype(np.float32,
                                                                              copy=False)
    return out


def example_keys(seed: int, positions) -> np.ndarray:
  """`[B, 2]` keys (seed, stream position) for `Decoder`; the seed is taken modulo 2**63."""
  positions = np.asarray(positions, dtype=np.int64)
  return np.stack([np.full_like(positions, int(seed) % 2**63), positions], axis=-1)


def input_decoder(builder) -> Decoder | None:
  """The builder's `Decoder`, or None for builders whose stored features are the inputs."""
  make = getattr(builder, "input_decoder", None)
  return make() if callable(make) else None
