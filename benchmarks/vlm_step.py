"""Compiled train-step time of the pilot-sized `TinyVLM` (`mmbal.train.vlm.make_vlm_trainer`).

Pilot size (`../shared/reference/mllm_bias.md` §5.1): 16x16x3 images, 4x4 patches (16 visual
tokens), dim 64, depth 2, 4 heads, 8 text tokens (``BOS what color is the <shape> ? <answer>``),
a 32-word vocabulary, batch 128, adam. Variants (each a complete jitted step with donated
state: forward, gradients, per-group gradient norms, update):

  ce            answer cross-entropy only
  ce_frozen_lm  the same with the LM frozen
  align         + InfoNCE image-caption alignment (weight 1)
  cf            + counterfactual-image hinge (weight 1; a second forward/backward)
  align_cf      both objectives
  align_cf_total_norms  both objectives, ``answer_grad_norms=False`` (no second backward for the
                answer-only gradient norms)
  ogm_ge        ce with `mmbal.transforms.ogm_ge` (vision vs text-embedding labels, confidence
                from an extra blind forward)
  ce_bf16       ce with ``dtype=bfloat16``
  text_only     the LM alone on the text (pretraining path)

Compile time (lower + compile) is recorded; then the variants are timed interleaved over
``--rounds`` rounds of ``--steps`` back-to-back steps (medians reported).

  PYTHONPATH=. python benchmarks/vlm_step.py            # CPU, ~2-3 minutes on 2 cores
  PYTHONPATH=. python benchmarks/vlm_step.py --quick    # smoke test
  PYTHONPATH=. python benchmarks/vlm_step.py --device gpu
  PYTHONPATH=. python benchmarks/vlm_step.py --device gpu --large   # an accelerator-sized model

``--large``: 64x64 images, 8x8 patches (64 visual tokens), dim 512, depth 8, 8 heads, batch 256
(about 25 M parameters). Each variant's model FLOPs utilisation is XLA's FLOP count of the
compiled step (cost analysis) per second over the device's dense peak (`_timing.PEAK_TFLOPS`,
bf16 for ``ce_bf16``, float32-as-TF32 otherwise; none on CPUs).

Writes ``benchmarks/results/vlm_step_<device>[_quick].json``.
"""
from __future__ import annotations

import argparse
import json
import os
import pathlib
import statistics
import time


def _parse_args(argv=None):
  p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  p.add_argument("--device", choices=("cpu", "gpu"), default="cpu")
  p.add_argument("--quick", action="store_true", help="2 variants, 2 rounds of 3 steps")
  p.add_argument("--batch", type=int, default=128)
  p.add_argument("--image-size", type=int, default=16)
  p.add_argument("--patch-size", type=int, default=4)
  p.add_argument("--dim", type=int, default=64)
  p.add_argument("--depth", type=int, default=2)
  p.add_argument("--heads", type=int, default=4)
  p.add_argument("--large", action="store_true",
                 help="batch 256, 64x64 images, patch 8, dim 512, depth 8, 8 heads")
  p.add_argument("--variants", nargs="+", default=None)
  p.add_argument("--rounds", type=int, default=None)
  p.add_argument("--steps", type=int, default=None)
  p.add_argument("--out", default=None)
  p.add_argument("--no-write", action="store_true")
  return p.parse_args(argv)


ARGS = _parse_args() if __name__ == "__main__" else None
if ARGS is not None and ARGS.device == "cpu":
  os.environ["JAX_PLATFORMS"] = "cpu"

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import optax  # noqa: E402
from flax import nnx  # noqa: E402

from mmbal.models.vlm import TinyVLM, vlm_modality_labels  # noqa: E402
from mmbal.train.vlm import (alignment_objective, counterfactual_objective,  # noqa: E402
                             make_vlm_trainer, ogm_ge_confidence)
from mmbal.transforms import ogm_ge  # noqa: E402

try:
  from _timing import (_iqr, device_info, flops, loadavg, peak_tflops, result_path,  # noqa: E402
                       time_interleaved)
except ImportError:
  from benchmarks._timing import (_iqr, device_info, flops, loadavg, peak_tflops,  # noqa: E402
                                  result_path, time_interleaved)

VARIANTS = ("ce", "ce_frozen_lm", "align", "cf", "align_cf", "align_cf_total_norms", "ogm_ge",
            "ce_bf16", "text_only")
VOCAB, TEXT_LEN = 32, 8


def make_batch(args):
  rng = np.random.default_rng(0)
  tokens = rng.integers(2, VOCAB, (args.batch, TEXT_LEN)).astype(np.int32)
  tokens[:, 0] = 1
  return dict(image=rng.uniform(size=(args.batch, args.image_size, args.image_size, 3)).astype(np.float32),
              tokens=tokens, answer=tokens[:, 7].copy(),
              answer_position=np.full(args.batch, 6, np.int32),
              question_type=np.zeros(args.batch, np.int32))


def make_trainer(variant: str, args):
  model = TinyVLM(vocab_size=VOCAB, image_size=args.image_size, patch_size=args.patch_size,
                  dim=args.dim, depth=args.depth, heads=args.heads, max_text_len=16,
                  dtype=jnp.bfloat16 if variant == "ce_bf16" else jnp.float32, rngs=nnx.Rngs(0))
  objectives = {}
  if variant in ("align", "align_cf", "align_cf_total_norms"):
    objectives["align"] = (alignment_objective(), 1.0)
  if variant in ("cf", "align_cf", "align_cf_total_norms"):
    objectives["cf"] = (counterfactual_objective(), 1.0)
  kw = dict(objectives=objectives, freeze=("lm",) if variant == "ce_frozen_lm" else (),
            text_only=variant == "text_only", answer_grad_norms=variant != "align_cf_total_norms")
  if variant == "ogm_ge":
    kw.update(transform=ogm_ge(vlm_modality_labels(model), alpha=0.5), extra_args=ogm_ge_confidence)
  mesh = jax.make_mesh((1, 1), ("data", "model"), devices=jax.devices()[:1],
                       axis_types=(jax.sharding.AxisType.Auto,) * 2)
  return make_vlm_trainer(model, optax.adam(1e-3), mesh=mesh, **kw)


def main(args):
  variants = tuple(args.variants or (("ce", "align_cf") if args.quick else VARIANTS))
  rounds = args.rounds or (2 if args.quick else 7)
  steps = args.steps or (3 if args.quick else 20)
  info, load_before, start = device_info(), loadavg(), time.perf_counter()
  host_batch = make_batch(args)
  entries, records = {}, {}
  for v in variants:
    trainer = make_trainer(v, args)
    batch = trainer.shard_batch({k: x for k, x in host_batch.items() if not (v == "text_only" and k == "image")})
    state = trainer.init(0)
    t0 = time.perf_counter()
    compiled = trainer.jitted.lower(state, batch).compile()
    records[v] = dict(compile_s=time.perf_counter() - t0, flops=flops(compiled))
    entries[v] = dict(fn=compiled, state=state)
    entries[v]["batch"] = batch
    print(f"compiled {v} in {records[v]['compile_s']:.1f}s", flush=True)
  # time_interleaved takes one batch; text_only ignores the image, so every variant gets its own
  # (already device-resident) batch through a closure.
  for v in variants:
    fn, batch = entries[v]["fn"], entries[v].pop("batch")
    entries[v]["fn"] = lambda state, _, fn=fn, batch=batch: fn(state, batch)
  wall, cpu = time_interleaved(entries, None, list(variants), rounds=rounds, steps=steps)
  for v in variants:
    seconds = statistics.median(wall[v])
    peak = peak_tflops(info, "bfloat16" if v == "ce_bf16" else "float32")
    achieved = records[v]["flops"] / seconds / 1e12
    records[v].update(ms=1e3 * seconds, ms_min=1e3 * min(wall[v]),
                      ms_iqr=1e3 * _iqr(wall[v]), cpu_ms=1e3 * statistics.median(cpu[v]),
                      ratio_to_ce=seconds / statistics.median(wall[variants[0]]),
                      tflops_per_s=achieved, peak_tflops=peak,
                      mfu=achieved / peak if peak else None)
  setup = dict(batch=args.batch, image_size=args.image_size, patch_size=args.patch_size,
               dim=args.dim, depth=args.depth, heads=args.heads, text_len=TEXT_LEN, vocab=VOCAB,
               large=args.large,
               visual_tokens=(args.image_size // args.patch_size) ** 2, optimizer="adam(1e-3)",
               rounds=rounds, steps=steps)
  result = dict(benchmark="vlm_step", device=info, setup=setup, variants=records,
                loadavg_before=load_before, loadavg_after=loadavg(),
                wall_s=time.perf_counter() - start)
  lines = ["| variant | ms/step (median) | min | IQR | CPU ms | x ce | compile s | TFLOP/s | MFU |",
           "|---|---|---|---|---|---|---|---|---|"]
  for v in variants:
    r = records[v]
    mfu = "—" if r["mfu"] is None else f"{100 * r['mfu']:.1f}%"
    lines.append(f"| {v} | {r['ms']:.2f} | {r['ms_min']:.2f} | {r['ms_iqr']:.2f} | {r['cpu_ms']:.2f} "
                 f"| {r['ratio_to_ce']:.2f} | {r['compile_s']:.1f} | {r['tflops_per_s']:.3f} | {mfu} |")
  print("\n".join(lines))
  print(f"load average {load_before} -> {result['loadavg_after']}")
  if not args.no_write:
    name = "vlm_step_large" if args.large else "vlm_step"
    path = pathlib.Path(args.out) if args.out else result_path(name, info, args.quick)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {path}")
  return result


if __name__ == "__main__":
  if ARGS.large:
    ARGS.batch, ARGS.image_size, ARGS.patch_size, ARGS.dim, ARGS.depth, ARGS.heads = (
        256, 64, 8, 512, 8, 8)
  main(ARGS)
