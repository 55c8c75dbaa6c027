"""ResNet-18 (He et al., CVPR 2016), the encoder the audio-visual balancing papers use for
spectrograms and frames (OGM-GE, PMR, AGM, MMPareto: one ResNet-18 per modality).

Differences from torchvision's, on purpose: GroupNorm instead of BatchNorm (no running
statistics to thread through the pure functional train step, and results independent of the
per-device batch size under data parallelism), and any number of input channels (1 for
spectrograms). ``[B, H, W, C]`` -> global average pool -> Linear to ``feature_dim``. Video
clips ``[B, K, H, W, C]`` are encoded frame by frame and averaged over K, as OGM-GE does.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from mmbal.models.layers import GroupNorm, small_map_conv


def _conv(in_channels: int, channels: int, kernel: int, stride: int, dtype, rngs) -> nnx.Conv:
  return nnx.Conv(in_channels, channels, (kernel, kernel), strides=stride, use_bias=False,
                  dtype=dtype, conv_general_dilated=small_map_conv, rngs=rngs)


def _norm(channels: int, dtype, rngs: nnx.Rngs) -> nnx.GroupNorm:
  return GroupNorm(channels, num_groups=min(32, channels), dtype=dtype, rngs=rngs)


class BasicBlock(nnx.Module):
  """Two 3x3 convolutions with a (projected when the shape changes) identity shortcut."""

  def __init__(self, in_channels: int, channels: int, stride: int, *, dtype, rngs: nnx.Rngs):
    self.conv1 = _conv(in_channels, channels, 3, stride, dtype, rngs)
    self.norm1 = _norm(channels, dtype, rngs)
    self.conv2 = _conv(channels, channels, 3, 1, dtype, rngs)
    self.norm2 = _norm(channels, dtype, rngs)
    self.project = stride != 1 or in_channels != channels
    if self.project:
      self.shortcut = _conv(in_channels, channels, 1, stride, dtype, rngs)
      self.shortcut_norm = _norm(channels, dtype, rngs)

  def __call__(self, x):
    y = jax.nn.relu(self.norm1(self.conv1(x)))
    y = self.norm2(self.conv2(y))
    skip = self.shortcut_norm(self.shortcut(x)) if self.project else x
    return jax.nn.relu(y + skip)


class ResNet18(nnx.Module):
  """ResNet-18: 7x7/2 stem, 3x3/2 max-pool, 4 stages of 2 basic blocks (64-128-256-512)."""

  def __init__(self, in_channels: int, feature_dim: int, *, widths=(64, 128, 256, 512),
               dtype=jnp.float32, rngs: nnx.Rngs):
    self.stem = _conv(in_channels, widths[0], 7, 2, dtype, rngs)
    self.stem_norm = _norm(widths[0], dtype, rngs)
    blocks, channels = [], widths[0]
    for stage, width in enumerate(widths):
      for block in range(2):
        stride = 2 if stage > 0 and block == 0 else 1
        blocks.append(BasicBlock(channels, width, stride, dtype=dtype, rngs=rngs))
        channels = width
    self.blocks = nnx.List(blocks)
    self.out = nnx.Linear(channels, feature_dim, dtype=dtype, rngs=rngs)

  def __call__(self, x):
    if x.ndim == 5:   # a clip: encode each frame, average over frames
      b, k = x.shape[:2]
      return self(x.reshape((b * k,) + x.shape[2:])).reshape(b, k, -1).mean(axis=1)
    x = jax.nn.relu(self.stem_norm(self.stem(x)))
    x = nnx.max_pool(x, (3, 3), strides=(2, 2), padding="SAME")
    for block in self.blocks:
      x = block(x)
    return self.out(jnp.mean(x, axis=(1, 2)))
