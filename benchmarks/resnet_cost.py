"""Where the CREMA-D step's time goes: mmbal's ResNet-18 forward and forward + backward.

One visual encoder at the OGM-GE CREMA-D shape (batch 16, 224 x 224 x 3; ``--side`` for other
inputs), jitted, best of 3: with its GroupNorm, with flax's (which XLA:CPU reduces slowly),
with the norms removed (the convolutions' share), with LayerNorm over channels (a
per-position norm, for scale), and with every convolution left to XLA (without
`mmbal.models.layers.small_map_conv`, which matters where the last stage's maps are smaller
than the kernel: inputs of 64 x 64 or less); and, with ``--official-dir`` (a clone of
github.com/GeWu-Lab/OGM-GE_CVPR2022) and torch installed, the official ``resnet18`` on the
same input in PyTorch.

``--layers``: one convolution of four of its layers, split into the forward pass, the input
gradient and the weight gradient, in XLA and (torch installed) in PyTorch, next to a plain
matmul with the weight gradient's FLOPs (``[C_in k k, B H W] x [B H W, C_out]``): how fast the
weight gradient could be as one GEMM on this CPU.

``--step``: the CREMA-D joint and OGM-GE training steps (ResNet-18 x 2, as `vs_official`
builds them) with mmbal's GroupNorm and with flax's, timed interleaved in one process.

  PYTHONPATH=. python benchmarks/resnet_cost.py [--official-dir /tmp/OGM-GE] [--batch 16] [--side 224]
  PYTHONPATH=. python benchmarks/resnet_cost.py --layers
  PYTHONPATH=. python benchmarks/resnet_cost.py --step    # GroupNorm: mmbal's vs flax's, paired

Prints a table; writes nothing (a diagnostic for `vs_official`'s OGM-GE gap).
"""
from __future__ import annotations

import argparse
import contextlib
import os
import sys

os.environ.setdefault("JAX_PLATFORMS", "cpu")

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
from flax import nnx  # noqa: E402

from mmbal.models import resnet  # noqa: E402

try:
  from _timing import best_seconds, time_interleaved  # noqa: E402
except ImportError:
  from benchmarks._timing import best_seconds, time_interleaved  # noqa: E402


class _Identity(nnx.Module):
  def __call__(self, x):
    return x


def _flax_group_norm(channels, dtype, rngs):
  """flax's GroupNorm with ResNet-18's groups (what mmbal's models used before their own)."""
  return nnx.GroupNorm(channels, num_groups=min(32, channels), dtype=dtype, rngs=rngs)


# name: (the norm layer's factory, None for mmbal's GroupNorm; the convolution function).
VARIANTS = {
    "GroupNorm (mmbal)": (None, None),
    "flax's nnx.GroupNorm (before mmbal.models.layers.GroupNorm)": (_flax_group_norm, None),
    "no norm (convolutions only)": (lambda channels, dtype, rngs: _Identity(), None),
    "LayerNorm over channels": (lambda channels, dtype, rngs: nnx.LayerNorm(channels, rngs=rngs),
                                None),
    "every convolution by XLA (no small_map_conv)": (None, jax.lax.conv_general_dilated)}
# (name, input side, channels in, channels out, kernel, stride): layers of the visual ResNet-18
# (the last at a 64 x 64 input: a map smaller than the kernel; timed, like the others, with
# XLA's own convolution, the slow path `small_map_conv` replaces in mmbal's models).
LAYERS = (("stem 7x7/2, 3->64 at 224", 224, 3, 64, 7, 2),
          ("stage 1 3x3, 64->64 at 56", 56, 64, 64, 3, 1),
          ("stage 3 3x3, 256->256 at 14", 14, 256, 256, 3, 1),
          ("stage 4 3x3, 512->512 at 2", 2, 512, 512, 3, 1))


@contextlib.contextmanager
def _resnet_norm(norm):
  """ResNet-18s built inside use the norm layer factory ``norm`` (None: mmbal's own)."""
  default = resnet._norm   # pylint: disable=protected-access
  resnet._norm = norm or default   # pylint: disable=protected-access
  try:
    yield
  finally:
    resnet._norm = default   # pylint: disable=protected-access


def mmbal_times(batch: int, side: int, norm, conv) -> tuple[float, float]:
  with _resnet_norm(norm):
    model = resnet.ResNet18(3, 512, rngs=nnx.Rngs(0))
  for _, module in nnx.iter_graph(model):
    if conv is not None and isinstance(module, nnx.Conv):
      module.conv_general_dilated = conv
  graphdef, params, rest = nnx.split(model, nnx.Param, ...)
  x = jnp.asarray(np.random.default_rng(0).normal(size=(batch, side, side, 3)), jnp.float32)
  loss = lambda p, x: jnp.sum(nnx.merge(graphdef, p, rest)(x) ** 2)
  forward = jax.jit(loss).lower(params, x).compile()
  backward = jax.jit(jax.grad(loss)).lower(params, x).compile()
  for f in (forward, backward):
    jax.block_until_ready(f(params, x))
  return (best_seconds(lambda: jax.block_until_ready(forward(params, x))),
          best_seconds(lambda: jax.block_until_ready(backward(params, x))))


def official_times(batch: int, side: int, official_dir: str) -> tuple[float, float]:
  import torch  # pylint: disable=import-outside-toplevel
  sys.path.insert(0, official_dir)
  from models.backbone import resnet18  # pylint: disable=import-outside-toplevel,import-error
  model, x = resnet18(modality="visual"), torch.randn(batch, 3, 1, side, side)
  step = lambda: model(x).pow(2).sum().backward()
  step()
  return best_seconds(lambda: model(x)), best_seconds(step)


def layer_times(batch: int) -> list[tuple]:
  """Per layer: (name, XLA fwd, dx, dw, the dw-sized GEMM; torch fwd, dx, dw or None), seconds."""
  rows, rng = [], np.random.default_rng(0)
  for name, side, cin, cout, k, stride in LAYERS:
    x = jnp.asarray(rng.normal(size=(batch, side, side, cin)), jnp.float32)
    w = jnp.asarray(rng.normal(size=(k, k, cin, cout)) * 0.05, jnp.float32)
    conv = lambda x, w, s=stride: jax.lax.conv_general_dilated(
        x, w, (s, s), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC"))
    g = jnp.ones(conv(x, w).shape, jnp.float32)
    fwd = jax.jit(conv)
    dx = jax.jit(lambda x, w, g: jax.vjp(lambda x: conv(x, w), x)[1](g)[0])
    dw = jax.jit(lambda x, w, g: jax.vjp(lambda w: conv(x, w), w)[1](g)[0])
    a = jnp.ones((k * k * cin, g.size // cout), jnp.float32)
    gemm = jax.jit(lambda a, g: a @ g.reshape(-1, g.shape[-1]))
    timed = [best_seconds(lambda f=f, args=args: jax.block_until_ready(f(*args)), 5)
             for f, args in ((fwd, (x, w)), (dx, (x, w, g)), (dw, (x, w, g)), (gemm, (a, g)))
             if jax.block_until_ready(f(*args)) is not None]
    rows.append((name, *timed, *_torch_layer(np.asarray(x), np.asarray(w), stride)))
  return rows


def _torch_layer(x, w, stride):
  try:
    import torch  # pylint: disable=import-outside-toplevel
  except ImportError:
    return None, None, None
  tx = torch.tensor(x.transpose(0, 3, 1, 2)).requires_grad_(True)
  tw = torch.tensor(w.transpose(3, 2, 0, 1)).requires_grad_(True)
  conv = lambda: torch.nn.functional.conv2d(tx, tw, stride=stride, padding=w.shape[0] // 2)
  with torch.no_grad():
    conv()
    forward = best_seconds(conv, 5)
  grad = lambda wrt: lambda: torch.autograd.grad(conv().sum(), wrt)
  for wrt in (tx, tw):
    grad(wrt)()
  return forward, best_seconds(grad(tx), 5) - forward, best_seconds(grad(tw), 5) - forward


def step_pair(batch: int, rounds: int = 6) -> dict:
  """The CREMA-D joint and OGM-GE steps (`vs_official`'s mmbal steps) built with mmbal's
  GroupNorm and with flax's, timed interleaved in one process: medians of ``rounds``."""
  import statistics  # pylint: disable=import-outside-toplevel
  try:
    import vs_official  # pylint: disable=import-outside-toplevel
  except ImportError:
    from benchmarks import vs_official  # pylint: disable=import-outside-toplevel
  shapes, data = vs_official.ogm_ge_shapes(argparse.Namespace(quick=False, batch=batch))
  label = {"mmbal/plain": "joint step", "mmbal/method": "OGM-GE step"}
  entries = {}
  for name, norm in (("mmbal GroupNorm", None), ("flax GroupNorm", _flax_group_norm)):
    with _resnet_norm(norm):
      steps, _ = vs_official.ogm_ge_mmbal(None, shapes, data)
    entries.update({f"{name}, {label[v]}": e for v, e in steps.items()})
  wall, _ = time_interleaved(entries, data, list(entries), rounds=rounds, steps=2)
  return {v: statistics.median(w) for v, w in wall.items()}


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--batch", type=int, default=16)
  parser.add_argument("--side", type=int, default=224, help="input side (frames: 224)")
  parser.add_argument("--official-dir", default=None)
  parser.add_argument("--layers", action="store_true", help="per-layer forward / dx / dw")
  parser.add_argument("--step", action="store_true",
                      help="the CREMA-D joint / OGM-GE steps with mmbal's and flax's GroupNorm")
  args = parser.parse_args(argv)
  if args.step:
    print(f"| CREMA-D step, batch {args.batch}, ResNet-18 x 2 | s per step (median of 6 "
          "interleaved rounds) |\n|---|---|")
    for name, seconds in step_pair(args.batch).items():
      print(f"| {name} | {seconds:.2f} |")
    return
  if args.layers:
    print(f"| layer, batch {args.batch} | XLA fwd | XLA dx | XLA dw | GEMM of dw's FLOPs | "
          f"PyTorch fwd | PyTorch dx | PyTorch dw | (ms) |")
    print("|---|---|---|---|---|---|---|---|---|")
    for name, *times in layer_times(args.batch):
      print(f"| {name} | " + " | ".join("—" if t is None else f"{1e3 * t:.1f}" for t in times)
            + " | |")
    return
  rows = [("mmbal, " + name, *mmbal_times(args.batch, args.side, norm, conv))
          for name, (norm, conv) in VARIANTS.items()]
  if args.official_dir:
    rows.append(("official (PyTorch, BatchNorm)",
                 *official_times(args.batch, args.side, args.official_dir)))
  print(f"| ResNet-18, batch {args.batch}, {args.side}x{args.side} | forward (s) | "
        f"forward + backward (s) |")
  print("|---|---|---|")
  for name, forward, both in rows:
    print(f"| {name} | {forward:.2f} | {both:.2f} |")


if __name__ == "__main__":
  main()
