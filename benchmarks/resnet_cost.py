"""Where the CREMA-D step's time goes: mmbal's ResNet-18 forward and forward + backward.

One visual encoder at the OGM-GE CREMA-D shape (batch 16, 224 x 224 x 3), jitted, best of 3:
with its GroupNorm, with the norms removed (the convolutions' share), and with LayerNorm over
channels (a per-position norm, for scale); and, with ``--official-dir`` (a clone of
github.com/GeWu-Lab/OGM-GE_CVPR2022) and torch installed, the official ``resnet18`` on the same
input in PyTorch.

  PYTHONPATH=. python benchmarks/resnet_cost.py [--official-dir /tmp/OGM-GE] [--batch 16]

Prints a table; writes nothing (a diagnostic for `vs_official`'s OGM-GE gap).
"""
from __future__ import annotations

import argparse
import os
import sys
import time

os.environ.setdefault("JAX_PLATFORMS", "cpu")

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
from flax import nnx  # noqa: E402

from mmbal.models import resnet  # noqa: E402


class _Identity(nnx.Module):
  def __call__(self, x):
    return x


NORMS = {"GroupNorm (mmbal)": None,
         "no norm (convolutions only)": lambda channels, rngs: _Identity(),
         "LayerNorm over channels": lambda channels, rngs: nnx.LayerNorm(channels, rngs=rngs)}


def _best(fn, repeats: int = 3) -> float:
  times = []
  for _ in range(repeats):
    start = time.perf_counter()
    fn()
    times.append(time.perf_counter() - start)
  return min(times)


def mmbal_times(batch: int, norm) -> tuple[float, float]:
  default = resnet._norm   # pylint: disable=protected-access
  if norm is not None:
    resnet._norm = norm   # pylint: disable=protected-access
  try:
    model = resnet.ResNet18(3, 512, rngs=nnx.Rngs(0))
  finally:
    resnet._norm = default   # pylint: disable=protected-access
  graphdef, params, rest = nnx.split(model, nnx.Param, ...)
  x = jnp.asarray(np.random.default_rng(0).normal(size=(batch, 224, 224, 3)), jnp.float32)
  loss = lambda p, x: jnp.sum(nnx.merge(graphdef, p, rest)(x) ** 2)
  forward = jax.jit(loss).lower(params, x).compile()
  backward = jax.jit(jax.grad(loss)).lower(params, x).compile()
  for f in (forward, backward):
    jax.block_until_ready(f(params, x))
  return (_best(lambda: jax.block_until_ready(forward(params, x))),
          _best(lambda: jax.block_until_ready(backward(params, x))))


def official_times(batch: int, official_dir: str) -> tuple[float, float]:
  import torch  # pylint: disable=import-outside-toplevel
  sys.path.insert(0, official_dir)
  from models.backbone import resnet18  # pylint: disable=import-outside-toplevel,import-error
  model, x = resnet18(modality="visual"), torch.randn(batch, 3, 1, 224, 224)
  step = lambda: model(x).pow(2).sum().backward()
  step()
  return _best(lambda: model(x)), _best(step)


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--batch", type=int, default=16)
  parser.add_argument("--official-dir", default=None)
  args = parser.parse_args(argv)
  rows = [("mmbal, " + name, *mmbal_times(args.batch, norm)) for name, norm in NORMS.items()]
  if args.official_dir:
    rows.append(("official (PyTorch, BatchNorm)", *official_times(args.batch, args.official_dir)))
  print(f"| ResNet-18, batch {args.batch}, 224x224 | forward (s) | forward + backward (s) |")
  print("|---|---|---|")
  for name, forward, both in rows:
    print(f"| {name} | {forward:.2f} | {both:.2f} |")


if __name__ == "__main__":
  main()
