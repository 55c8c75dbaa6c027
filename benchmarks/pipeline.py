"""Input-pipeline throughput: frames decoded per second by mmbal's grain training iterator.

The audio-visual builders store each clip's frames as JPEG bytes and leave sampling,
decoding and augmentation to the input pipeline (`mmbal.data.frames`: K frames sampled per
clip, random resized crop to 224 x 224, flip, ImageNet normalisation). That work runs on the
host; with too few threads or worker processes it starves the accelerator. This times
`mmbal.data.train_iterator` over in-memory records of synthetic clips (``--stored`` JPEG frames
of ``--frame-size`` pixels each, CREMA-D's 1-fps extraction gives ~3 per clip) for each
setting in ``--threads`` (grain read threads, in-process) and ``--workers`` (grain worker
processes, `grain.MultiprocessingOptions`, each with 2 read threads), and reports decoded frames
and batches per second over ``--batches`` batches after the first (worker start-up excluded;
the read-ahead of 4 batches is included, so keep ``--batches`` well above it). Compare with the step rate the model needs:
frames/s >= batch x K / step time.

  PYTHONPATH=. python benchmarks/pipeline.py                    # ~1 minute on 2 CPU cores
  PYTHONPATH=. python benchmarks/pipeline.py --threads 1 2 4 8 16 --workers 2 4 8
  PYTHONPATH=. python benchmarks/pipeline.py --quick            # smoke test

Writes ``benchmarks/results/pipeline_<device>[_quick].json`` and a table.
"""
from __future__ import annotations

import argparse
import io
import os
import sys
import time


def _parse_args(argv=None):
  p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  p.add_argument("--quick", action="store_true", help="tiny frames, few batches (smoke test)")
  p.add_argument("--clips", type=int, default=256, help="synthetic clips held in memory")
  p.add_argument("--stored", type=int, default=3, help="JPEG frames stored per clip")
  p.add_argument("--frame-size", type=int, nargs=2, default=(640, 360), metavar=("W", "H"))
  p.add_argument("--num-frames", type=int, default=1, help="K frames sampled per clip")
  p.add_argument("--image-size", type=int, default=224)
  p.add_argument("--batch", type=int, default=64)
  p.add_argument("--batches", type=int, default=32, help="timed batches per setting")
  p.add_argument("--threads", type=int, nargs="*", default=[1, 2, 4],
                 help="grain read threads (in-process)")
  p.add_argument("--workers", type=int, nargs="*", default=[2],
                 help="grain worker processes (0 = none)")
  p.add_argument("--out", default=None)
  p.add_argument("--no-write", action="store_true")
  return p.parse_args(argv)


ARGS = _parse_args() if __name__ == "__main__" else None
os.environ.setdefault("JAX_PLATFORMS", "cpu")   # the pipeline is host work; jax is only imported

import grain  # noqa: E402
import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402

from mmbal.data import frames  # noqa: E402
from mmbal.data.pipeline import Source, train_iterator  # noqa: E402

try:
  from _timing import device_info, loadavg, report  # noqa: E402
except ImportError:
  from benchmarks._timing import device_info, loadavg, report  # noqa: E402


class _Records:
  """In-memory stored records with the random access `Source` reads."""

  def __init__(self, records):
    self.records = records

  def __len__(self):
    return len(self.records)

  def __getitems__(self, indices):
    return [self.records[i] for i in indices]


def synthetic_source(args) -> Source:
  """Clips of smooth random JPEG frames (compress like photographs, unlike white noise)."""
  rng = np.random.default_rng(0)
  w, h = args.frame_size
  coarse = rng.integers(0, 256, size=(args.stored, 9, 16, 3), dtype=np.uint8)
  encoded = []
  for c in coarse:
    buf = io.BytesIO()
    Image.fromarray(c).resize((w, h), Image.Resampling.BICUBIC).save(buf, format="JPEG", quality=90)
    encoded.append(buf.getvalue())
  records = [{"frames": [encoded[(i + j) % len(encoded)] for j in range(args.stored)],
              "label": i % 6} for i in range(args.clips)]
  options = frames.FrameOptions(num_frames=args.num_frames, image_size=args.image_size)
  decoder = frames.Decoder({"visual": frames.FramesInput("frames", options)})
  return Source(_Records(records), np.arange(args.clips), ("visual",), "synthetic",
                decoder=decoder).load_into_memory()


def time_setting(source, args, *, threads: int, workers: int) -> dict:
  """Batches per second after the first batch (worker start-up excluded)."""
  it = train_iterator(source, args.batch, seed=0,
                      read_options=grain.ReadOptions(num_threads=threads, prefetch_buffer_size=4),
                      num_workers=workers)
  batch = next(it)
  t0 = time.perf_counter()
  for _ in range(args.batches):
    batch = next(it)
  seconds = time.perf_counter() - t0
  if hasattr(it, "close"):   # stops this setting's worker processes before the next is timed
    it.close()
  frames_per_batch = args.batch * args.num_frames
  return dict(threads=threads, workers=workers, batches_per_s=args.batches / seconds,
              frames_per_s=args.batches * frames_per_batch / seconds,
              batch_shape=list(batch["visual"].shape))


def main(args) -> dict:
  start, load_before = time.time(), loadavg()
  source = synthetic_source(args)
  settings = [(t, 0) for t in args.threads] + [(2, w) for w in args.workers if w > 0]
  rows = [time_setting(source, args, threads=t, workers=w) for t, w in settings]
  for r in rows:
    print(f"  threads {r['threads']}, workers {r['workers']}: {r['frames_per_s']:.0f} frames/s",
          file=sys.stderr, flush=True)
  table = ["| read threads | worker processes | frames/s | batches/s |", "|---|---|---|---|"]
  table += [f"| {r['threads']} | {r['workers']} | {r['frames_per_s']:.0f} | "
            f"{r['batches_per_s']:.2f} |" for r in rows]
  result = dict(benchmark="pipeline", device=device_info(), quick=args.quick,
                setup=dict(clips=args.clips, stored_frames=args.stored,
                           frame_size=list(args.frame_size), num_frames=args.num_frames,
                           image_size=args.image_size, batch=args.batch, batches=args.batches,
                           augment="random resized crop + flip + ImageNet normalisation"),
                settings=rows, best_frames_per_s=max(r["frames_per_s"] for r in rows),
                wall_s=time.time() - start, loadavg_before=load_before, loadavg_after=loadavg())
  return report(result, benchmark="pipeline", info=result["device"], args=args,
                load_before=load_before, markdown="\n".join(table))


if __name__ == "__main__":
  if ARGS.quick:
    ARGS.clips, ARGS.frame_size, ARGS.image_size, ARGS.batch, ARGS.batches = 16, (64, 48), 32, 4, 12
  main(ARGS)
