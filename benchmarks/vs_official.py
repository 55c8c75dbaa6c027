"""mmbal's step against the PyTorch code it replaces, same model, shapes and method, side by side.

PCGrad: the popular PyTorch port (github.com/WeiChengTseng/Pytorch-PCGrad, ``pcgrad.py``:
``PCGrad(optimizer).pc_backward(losses)``, one backward pass per objective) on the port's
benchmark model (`projection_overhead`: three MLP encoders, inputs 512 / 256 / 128 -> 512 ->
512, a fused head on the summed features and a head per encoder, batch 256, objectives
[fused, a, b, c]), SGD. mmbal: `objective_grads` (structured backward) + `pcgrad` + SGD, one
jitted step with donated state. Both frameworks' plain steps (one backward of the summed
losses) are timed alongside, so each method's overhead is also a ratio to its own plain step.

The official code is read from YOUR clone (``--official-dir``); nothing of it is copied here.
torch is an optional benchmark dependency (``pip install torch``).

  git clone https://github.com/WeiChengTseng/Pytorch-PCGrad /tmp/Pytorch-PCGrad
  PYTHONPATH=. python benchmarks/vs_official.py --official-dir /tmp/Pytorch-PCGrad
  PYTHONPATH=. python benchmarks/vs_official.py --official-dir DIR --quick   # smoke test

Timed interleaved (rounds rotate the order; medians); samples/s and ratios reported per
variant; jax compile time separately; peak memory (max RSS) of each variant measured in its
own subprocess. Writes ``benchmarks/results/vs_official_<device>[_quick].json`` and a table.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time


def _parse_args(argv=None):
  p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  p.add_argument("--official-dir", required=True,
                 help="your clone of github.com/WeiChengTseng/Pytorch-PCGrad")
  p.add_argument("--quick", action="store_true", help="tiny sizes, 2 rounds (smoke test)")
  p.add_argument("--rounds", type=int, default=10)
  p.add_argument("--steps", type=int, default=5)
  p.add_argument("--out", default=None)
  p.add_argument("--no-write", action="store_true")
  p.add_argument("--no-memory", action="store_true", help="skip the per-variant memory runs")
  p.add_argument("--child", default=None, help=argparse.SUPPRESS)   # one variant, for its RSS
  return p.parse_args(argv)


ARGS = _parse_args() if __name__ == "__main__" else None
os.environ.setdefault("JAX_PLATFORMS", "cpu")

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

try:
  from _timing import device_info, loadavg, report, time_interleaved  # noqa: E402
  from projection_overhead import make_steps, port_model  # noqa: E402
except ImportError:
  from benchmarks._timing import device_info, loadavg, report, time_interleaved  # noqa: E402
  from benchmarks.projection_overhead import make_steps, port_model  # noqa: E402

VARIANTS = ("official/plain", "official/pcgrad", "mmbal/plain", "mmbal/pcgrad")


def _sizes(quick: bool):
  inputs = {"a": 32, "b": 16, "c": 8} if quick else {"a": 512, "b": 256, "c": 128}
  return inputs, (32, 16, 10) if quick else (512, 256, 10)


def _official_pcgrad(official_dir: str):
  """The port's ``PCGrad`` class, imported from the user's clone."""
  path = os.path.join(official_dir, "pcgrad.py")
  if not os.path.isfile(path):
    raise SystemExit(f"--official-dir: {path} not found (a clone of "
                     "github.com/WeiChengTseng/Pytorch-PCGrad)")
  sys.path.insert(0, official_dir)
  from pcgrad import PCGrad  # pylint: disable=import-outside-toplevel,import-error
  return PCGrad


def torch_entries(inputs, hidden, classes, batch, PCGrad) -> dict:
  """``{variant: {"run": run(steps) -> (wall, cpu) per step}}`` for the PyTorch model."""
  import torch  # pylint: disable=import-outside-toplevel
  torch.manual_seed(0)
  mlp = lambda d: torch.nn.Sequential(torch.nn.Linear(d, hidden), torch.nn.ReLU(),
                                      torch.nn.Linear(hidden, hidden), torch.nn.ReLU())
  x = {m: torch.as_tensor(np.array(batch[m])) for m in inputs}
  y = torch.as_tensor(np.array(batch["label"]), dtype=torch.long)

  def build():
    model = torch.nn.ModuleDict({"enc": torch.nn.ModuleDict({m: mlp(d) for m, d in inputs.items()}),
                                 "head": torch.nn.Linear(hidden, classes),
                                 "heads": torch.nn.ModuleDict({m: torch.nn.Linear(hidden, classes)
                                                               for m in inputs})})
    return model, torch.optim.SGD(model.parameters(), lr=1e-3)

  def losses(model):
    features = {m: model["enc"][m](x[m]) for m in inputs}
    ce = torch.nn.functional.cross_entropy
    return [ce(model["head"](sum(features.values())), y)] + [
        ce(model["heads"][m](features[m]), y) for m in inputs]

  def timed(step):
    def run(steps):
      t0, c0 = time.perf_counter(), time.process_time()
      for _ in range(steps):
        step()
      return (time.perf_counter() - t0) / steps, (time.process_time() - c0) / steps
    return {"run": run}

  plain_model, plain_opt = build()
  def plain():
    plain_opt.zero_grad(set_to_none=True)
    sum(losses(plain_model)).backward()
    plain_opt.step()

  pc_model, pc_opt = build()
  pc = PCGrad(pc_opt)
  def pcgrad():
    pc.zero_grad()
    pc.pc_backward(losses(pc_model))
    pc.step()

  return {"official/plain": timed(plain), "official/pcgrad": timed(pcgrad)}


def mmbal_entries(inputs, hidden, classes, batch) -> tuple[dict, dict]:
  names = tuple(inputs)
  params = port_model(inputs, hidden, classes, jax.random.key(0))
  steps = make_steps(params, names)
  entries, compile_s = {}, {}
  for variant, key in (("mmbal/plain", "plain"), ("mmbal/pcgrad", "pcgrad/unrolled")):
    fn, tx = steps[key]
    state = (jax.tree.map(jnp.copy, params), tx.init(params))
    t0 = time.perf_counter()
    compiled = jax.jit(fn, donate_argnums=0).lower(state, batch).compile()
    compile_s[variant] = time.perf_counter() - t0
    entries[variant] = {"fn": compiled, "state": state}
  return entries, compile_s


def _batch(inputs, batch_size, classes):
  rng = np.random.default_rng(0)
  batch = {m: jnp.asarray(rng.normal(size=(batch_size, d)), jnp.float32) for m, d in inputs.items()}
  batch["label"] = jnp.asarray(rng.integers(0, classes, batch_size), jnp.int32)
  return batch


def _entries(args, frameworks=("official", "mmbal")):
  inputs, (hidden, batch_size, classes) = _sizes(args.quick)
  batch = _batch(inputs, batch_size, classes)
  entries, compile_s = {}, {}
  if "official" in frameworks:
    entries.update(torch_entries(inputs, hidden, classes, batch,
                                 _official_pcgrad(args.official_dir)))
  if "mmbal" in frameworks:
    ours, compile_s = mmbal_entries(inputs, hidden, classes, batch)
    entries.update(ours)
  return entries, batch, compile_s, (inputs, hidden, batch_size, classes)


def _child(args):
  """Builds and runs one variant only (20 steps) and prints its process's peak RSS (MiB);
  every child imports both jax and torch, so the baselines match."""
  import torch  # noqa: F401  pylint: disable=import-outside-toplevel,unused-import
  entries, batch, _, _ = _entries(args, (args.child.split("/")[0],))
  before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
  time_interleaved({args.child: entries[args.child]}, batch, [args.child], rounds=1, steps=20)
  print(json.dumps(dict(peak_rss_mib=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                        rss_before_steps_mib=before / 1024)))


def _memory(args) -> dict:
  out = {}
  for variant in VARIANTS:
    command = [sys.executable, __file__, "--official-dir", args.official_dir, "--child", variant,
               "--no-write"] + (["--quick"] if args.quick else [])
    done = subprocess.run(command, capture_output=True, text=True, check=True)
    out[variant] = json.loads(done.stdout.strip().splitlines()[-1])
  return out


def _rss(measured) -> str:
  if not measured:
    return "—"
  growth = measured["peak_rss_mib"] - measured["rss_before_steps_mib"]
  return f"{measured['peak_rss_mib']:.0f} (+{growth:.0f})"


def main(args) -> dict:
  start, load_before = time.time(), loadavg()
  rounds, steps = (2, 2) if args.quick else (args.rounds, args.steps)
  entries, batch, compile_s, (inputs, hidden, batch_size, classes) = _entries(args)
  wall, cpu = time_interleaved(entries, batch, list(VARIANTS), rounds=rounds, steps=steps)
  median = {v: statistics.median(wall[v]) for v in VARIANTS}
  samples = {v: batch_size / median[v] for v in VARIANTS}
  memory = {} if args.no_memory else _memory(args)
  own_plain = lambda v: median[v.split("/")[0] + "/plain"]
  speedup = {m: samples[f"mmbal/{m}"] / samples[f"official/{m}"] for m in ("plain", "pcgrad")}
  rows = ["| variant | ms per step | samples/s | vs its own plain step | CPU s per step | "
          "compile (s) | peak RSS, MiB (growth in the steps) |", "|---|---|---|---|---|---|---|"]
  for v in VARIANTS:
    rss = memory.get(v)
    rows.append(f"| `{v}` | {1e3 * median[v]:.1f} | {samples[v]:.0f} | "
                f"{median[v] / own_plain(v):.2f}x | {statistics.median(cpu[v]):.3f} | "
                f"{compile_s.get(v, 0.0):.1f} | {_rss(rss)} |")
  rows += ["", f"mmbal / official samples per second: plain {speedup['plain']:.2f}x, "
           f"PCGrad {speedup['pcgrad']:.2f}x"]
  result = dict(benchmark="vs_official", method="pcgrad", device=device_info(), quick=args.quick,
                official="github.com/WeiChengTseng/Pytorch-PCGrad pcgrad.py (user's clone)",
                torch_version=__import__("torch").__version__,
                torch_threads=__import__("torch").get_num_threads(),
                model=dict(inputs=inputs, hidden=hidden, batch=batch_size, classes=classes),
                rounds=rounds, steps=steps, ms_per_step={v: 1e3 * m for v, m in median.items()},
                samples_per_s=samples, mmbal_over_official=speedup, compile_s=compile_s,
                peak_rss=memory, all_targets_met=speedup["pcgrad"] >= 1.0,
                wall_s=time.time() - start, loadavg_after=loadavg())
  return report(result, benchmark="vs_official", info=result["device"], args=args,
                load_before=load_before, markdown="\n".join(rows))


if __name__ == "__main__":
  if ARGS.child:
    _child(ARGS)
  else:
    main(ARGS)
  sys.exit(0)
