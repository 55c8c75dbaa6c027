"""Timing helpers shared by the benchmark scripts.

Import it after the script has chosen the JAX backend (``JAX_PLATFORMS``): it imports jax.
"""
from __future__ import annotations

import json
import os
import pathlib
import platform
import re
import time

import jax
import numpy as np

RESULTS_DIR = pathlib.Path(__file__).parent / "results"


def run_steps(entry, batch, steps: int) -> tuple[float, float]:
  """Wall and process-CPU seconds per step over ``steps`` back-to-back steps (dispatch
  pipelined, one sync at the end). ``entry`` holds the compiled step ``fn`` and its
  ``state``; the donated state is threaded through and stored back in ``entry``. An entry
  with its own ``run(steps) -> (wall, cpu)`` (another framework's step) is timed by it."""
  if "run" in entry:
    return entry["run"](steps)
  fn, state = entry["fn"], entry["state"]
  jax.block_until_ready(state)
  t0, c0 = time.perf_counter(), time.process_time()
  for _ in range(steps):
    state, metrics = fn(state, batch)
  jax.block_until_ready((state, metrics))
  wall, cpu = time.perf_counter() - t0, time.process_time() - c0
  entry["state"] = state
  return wall / steps, cpu / steps


def best_seconds(fn, repeats: int = 3) -> float:
  """The fastest of ``repeats`` calls of ``fn`` (which waits for its own result), seconds."""
  times = []
  for _ in range(repeats):
    start = time.perf_counter()
    fn()
    times.append(time.perf_counter() - start)
  return min(times)


def _iqr(xs) -> float:
  q = np.percentile(np.asarray(xs), [25, 75])
  return float(q[1] - q[0])


def flops(compiled) -> float:
  """XLA's FLOP count of a compiled executable (NaN where the backend has no cost analysis)."""
  try:
    cost = compiled.cost_analysis()
    cost = cost[0] if isinstance(cost, (list, tuple)) else cost
    return float(cost.get("flops", float("nan")))
  except Exception:  # cost analysis is best-effort and backend-dependent
    return float("nan")


# Dense peak TFLOP/s per chip from the vendors' data sheets: (bfloat16, float32 matmuls as
# XLA runs them by default: TF32 on NVIDIA tensor cores, bf16 passes on TPU).
PEAK_TFLOPS = (("H200", 989.4, 494.7), ("H100", 989.4, 494.7), ("A100", 312.0, 156.0),
               ("L4", 121.0, 60.0), ("TPU v6", 918.0, 918.0), ("TPU v5p", 459.0, 459.0),
               ("TPU v5 lite", 197.0, 197.0), ("TPU v5e", 197.0, 197.0), ("TPU v4", 275.0, 275.0))


def peak_tflops(info, dtype: str) -> float | None:
  """The device's dense peak for ``dtype`` ("bfloat16" / "float32"), None where unknown (CPUs)."""
  for kind, bf16, f32 in PEAK_TFLOPS:
    if kind.lower() in str(info.get("device_kind", "")).lower():
      return bf16 if dtype == "bfloat16" else f32
  return None


def device_info():
  dev = jax.devices()[0]
  try:
    import jaxlib
    jaxlib_version = jaxlib.__version__
  except Exception:
    jaxlib_version = None
  return dict(platform=dev.platform, device_kind=dev.device_kind, device=str(dev),
              device_count=jax.device_count(), host_cpu=_cpu_model(),
              jax_version=jax.__version__, jaxlib_version=jaxlib_version,
              cpu_count=os.cpu_count(), python=platform.python_version(),
              machine=platform.machine(), xla_flags=os.environ.get("XLA_FLAGS", ""))


def _cpu_model():
  try:
    for line in pathlib.Path("/proc/cpuinfo").read_text().splitlines():
      if line.startswith("model name"):
        return line.split(":", 1)[1].strip()
  except OSError:
    pass
  return platform.processor() or None


def device_name(info) -> str:
  """``cpu``, or the platform and device kind, e.g. ``gpu_nvidia_h100_80gb_hbm3``."""
  if info["platform"] == "cpu":
    return "cpu"
  return re.sub(r"[^a-z0-9]+", "_", f"{info['platform']}_{info['device_kind']}".lower()).strip("_")


def result_path(benchmark: str, info, quick: bool) -> pathlib.Path:
  """``benchmarks/results/<benchmark>_<device>[_quick].json``."""
  return RESULTS_DIR / f"{benchmark}_{device_name(info)}{'_quick' if quick else ''}.json"


def loadavg():
  try:
    return [round(x, 2) for x in os.getloadavg()]
  except OSError:
    return None


def report(result: dict, *, benchmark: str, info, args, load_before, markdown: str) -> dict:
  """Prints the table and the verdict; writes the JSON unless ``--no-write``."""
  print(markdown)
  print()
  verdict = (f"all targets met: {result['all_targets_met']} " if "all_targets_met" in result
             else "")
  print(f"{verdict}(wall {result['wall_s']:.0f}s, load average {load_before} -> "
        f"{result['loadavg_after']})")
  if not args.no_write:
    path = pathlib.Path(args.out) if args.out else result_path(benchmark, info, args.quick)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {path}")
  return result


def time_interleaved(entries: dict, batch, variants, *, rounds: int, steps: int):
  """Warms every variant up, then times them interleaved, rotating the order each round.

  Returns ``(wall, cpu)``: per variant, the seconds per step of every round.
  """
  for v in variants:
    run_steps(entries[v], batch, 3)  # warm-up: first-call allocations, thread pools
  wall = {v: [] for v in variants}
  cpu = {v: [] for v in variants}
  for r in range(rounds):
    for v in variants[r % len(variants):] + variants[:r % len(variants)]:
      w, c = run_steps(entries[v], batch, steps)
      wall[v].append(w)
      cpu[v].append(c)
  return wall, cpu
