"""mmbal's step against the PyTorch code it replaces, same model, shapes and method, side by side.

OGM-GE (``--method ogm_ge``): the official code (github.com/GeWu-Lab/OGM-GE_CVPR2022,
``main.py::train_epoch`` with its ``models.basic_model.AVClassifier``: a ResNet-18 per
modality, concat fusion, SGD with momentum) on CREMA-D shapes (a 257 x 188 spectrogram and one
224 x 224 frame, 6 classes, batch 16), modulation ``OGM_GE`` (alpha 0.8) against ``Normal``;
mmbal: the jitted steps of ``configs/crema_d/ogm_ge.py`` and ``configs/crema_d/joint.py`` on
the same shapes. ``train_epoch`` is read from the clone's ``main.py`` (that file's other
imports, tensorboard and the data sets, are not needed to time it).

MMPareto (``--method mmpareto``): the official code (github.com/GeWu-Lab/MMPareto_ICML2024,
``code/MMPareto.py::train_epoch``: three backward passes to read the fused, audio and visual
gradients, a min-norm solve per encoder where they conflict, a fourth backward of the summed
loss; its plain counterpart ``code/uniform_baseline.py::train_epoch``, one backward of
``L_fused + L_a + L_v``) with its ``models.models.AVClassifier`` (ResNet-18 x 2, concat head
and one head per modality) on the OGM-GE shapes above (its frames as ``[B, T=1, 3, H, W]``),
SGD with momentum, gamma 1.5 as the official; mmbal: ``configs/crema_d/mmpareto.py``
(``method.mmpareto.gamma=1.5``) against ``joint.py`` with ``model.unimodal=heads`` (the same
summed loss).

PCGrad (``--method pcgrad``): the popular PyTorch port (github.com/WeiChengTseng/Pytorch-PCGrad, ``pcgrad.py``:
``PCGrad(optimizer).pc_backward(losses)``, one backward pass per objective) on the port's
benchmark model (`projection_overhead`: three MLP encoders, inputs 512 / 256 / 128 -> 512 ->
512, a fused head on the summed features and a head per encoder, batch 256, objectives
[fused, a, b, c]), SGD. mmbal: `objective_grads` (structured backward) + `pcgrad` + SGD, one
jitted step with donated state. Both frameworks' plain steps (one backward of the summed
losses) are timed alongside, so each method's overhead is also a ratio to its own plain step.

The official code is read from YOUR clone (``--official-dir``); nothing of it is copied here.
torch is an optional benchmark dependency (``pip install torch``).

  git clone https://github.com/GeWu-Lab/OGM-GE_CVPR2022 /tmp/OGM-GE
  PYTHONPATH=. python benchmarks/vs_official.py --method ogm_ge --official-dir /tmp/OGM-GE
  git clone https://github.com/WeiChengTseng/Pytorch-PCGrad /tmp/Pytorch-PCGrad
  PYTHONPATH=. python benchmarks/vs_official.py --method pcgrad --official-dir /tmp/Pytorch-PCGrad
  git clone https://github.com/GeWu-Lab/MMPareto_ICML2024 /tmp/MMPareto
  PYTHONPATH=. python benchmarks/vs_official.py --method mmpareto --official-dir /tmp/MMPareto
  ... --quick                                                    # smoke test, tiny shapes
  ... --device gpu      # both on the first GPU (torch "cuda"; jax allocates as it goes)

Timed interleaved (rounds rotate the order; medians); samples/s and ratios reported per
variant; jax compile time separately; peak memory (max RSS) of each variant measured in its
own subprocess (on a GPU also its peak device memory). Writes
``benchmarks/results/vs_official_<method>_<device>[_quick].json`` and a table.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time


OFFICIAL = {"pcgrad": ("github.com/WeiChengTseng/Pytorch-PCGrad", "pcgrad.py"),
            "ogm_ge": ("github.com/GeWu-Lab/OGM-GE_CVPR2022", "main.py"),
            "mmpareto": ("github.com/GeWu-Lab/MMPareto_ICML2024", "code/MMPareto.py")}


def _parse_args(argv=None):
  p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  p.add_argument("--method", choices=tuple(OFFICIAL), default="pcgrad")
  p.add_argument("--official-dir", required=True, help="your clone of the official code")
  p.add_argument("--batch", type=int, default=None, help="batch size (ogm_ge, mmpareto: 16; pcgrad: 256)")
  p.add_argument("--quick", action="store_true", help="tiny sizes, 2 rounds (smoke test)")
  p.add_argument("--rounds", type=int, default=10)
  p.add_argument("--steps", type=int, default=5)
  p.add_argument("--out", default=None)
  p.add_argument("--no-write", action="store_true")
  p.add_argument("--no-memory", action="store_true", help="skip the per-variant memory runs")
  p.add_argument("--device", choices=("cpu", "gpu"), default="cpu",
                 help="gpu: both frameworks on the first GPU (torch 'cuda', jax's GPU backend)")
  p.add_argument("--child", default=None, help=argparse.SUPPRESS)   # one variant, for its RSS
  return p.parse_args(argv)


ARGS = _parse_args() if __name__ == "__main__" else None
ON_GPU = ARGS is not None and ARGS.device == "gpu"
TORCH_DEVICE = "cuda" if ON_GPU else "cpu"
if ON_GPU:   # both frameworks share the GPU: jax allocates as it goes, as torch does
  os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")
else:
  os.environ.setdefault("JAX_PLATFORMS", "cpu")

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

try:
  from _timing import (best_seconds, device_info, flops, loadavg, report,  # noqa: E402
                       time_interleaved)
  from projection_overhead import make_steps, port_model  # noqa: E402
except ImportError:
  from benchmarks._timing import (best_seconds, device_info, flops, loadavg,  # noqa: E402
                                  report, time_interleaved)
  from benchmarks.projection_overhead import make_steps, port_model  # noqa: E402

VARIANTS = ("official/plain", "official/method", "mmbal/plain", "mmbal/method")
WANTED = set(VARIANTS)   # a memory child builds only its own variant


def _build(builders: dict) -> dict:
  """``{variant: builder()}`` for the wanted variants."""
  return {v: build() for v, build in builders.items() if v in WANTED}
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _sync():
  """Waits for the GPU's queued PyTorch work (its steps return before it is done)."""
  if ON_GPU:
    __import__("torch").cuda.synchronize()


def _timed(step):
  """An entry timed by its own loop (a PyTorch step, synchronised at the end)."""
  def run(steps):
    t0, c0 = time.perf_counter(), time.process_time()
    for _ in range(steps):
      step()
    _sync()
    return (time.perf_counter() - t0) / steps, (time.process_time() - c0) / steps
  return {"run": run}


def _official_file(args) -> str:
  repo, name = OFFICIAL[args.method]
  path = os.path.join(args.official_dir, name)
  if not os.path.isfile(path):
    raise SystemExit(f"--official-dir: {path} not found (a clone of {repo})")
  return path


# ----------------------------------------------------------------------------- PCGrad


def pcgrad_shapes(args):
  inputs = {"a": 32, "b": 16, "c": 8} if args.quick else {"a": 512, "b": 256, "c": 128}
  hidden, classes = (32, 10) if args.quick else (512, 10)
  batch_size = args.batch or (16 if args.quick else 256)
  rng = np.random.default_rng(0)
  batch = {m: jnp.asarray(rng.normal(size=(batch_size, d)), jnp.float32) for m, d in inputs.items()}
  batch["label"] = jnp.asarray(rng.integers(0, classes, batch_size), jnp.int32)
  return dict(inputs=inputs, hidden=hidden, classes=classes, batch=batch_size), batch


def pcgrad_official(args, shapes, batch) -> dict:
  """The port's ``PCGrad`` (from the user's clone) on the same model in PyTorch."""
  import torch  # pylint: disable=import-outside-toplevel
  sys.path.insert(0, os.path.dirname(_official_file(args)))
  from pcgrad import PCGrad  # pylint: disable=import-outside-toplevel,import-error
  torch.manual_seed(0)
  inputs, hidden, classes = shapes["inputs"], shapes["hidden"], shapes["classes"]
  mlp = lambda d: torch.nn.Sequential(torch.nn.Linear(d, hidden), torch.nn.ReLU(),
                                      torch.nn.Linear(hidden, hidden), torch.nn.ReLU())
  x = {m: torch.as_tensor(np.array(batch[m])).to(TORCH_DEVICE) for m in inputs}
  y = torch.as_tensor(np.array(batch["label"]), dtype=torch.long).to(TORCH_DEVICE)

  def build():
    model = torch.nn.ModuleDict({"enc": torch.nn.ModuleDict({m: mlp(d) for m, d in inputs.items()}),
                                 "head": torch.nn.Linear(hidden, classes),
                                 "heads": torch.nn.ModuleDict({m: torch.nn.Linear(hidden, classes)
                                                               for m in inputs})})
    model.to(TORCH_DEVICE)
    return model, torch.optim.SGD(model.parameters(), lr=1e-3)

  def losses(model):
    features = {m: model["enc"][m](x[m]) for m in inputs}
    ce = torch.nn.functional.cross_entropy
    return [ce(model["head"](sum(features.values())), y)] + [
        ce(model["heads"][m](features[m]), y) for m in inputs]

  plain_model, plain_opt = build()
  def plain():
    plain_opt.zero_grad(set_to_none=True)
    sum(losses(plain_model)).backward()
    plain_opt.step()

  pc_model, pc_opt = build()
  pc = PCGrad(pc_opt)
  def method():
    pc.zero_grad()
    pc.pc_backward(losses(pc_model))
    pc.step()

  return {"official/plain": _timed(plain), "official/method": _timed(method)}


def pcgrad_mmbal(args, shapes, batch) -> tuple[dict, dict]:
  names = tuple(shapes["inputs"])
  params = port_model(shapes["inputs"], shapes["hidden"], shapes["classes"], jax.random.key(0))
  steps = make_steps(params, names)
  return _compiled({"mmbal/plain": steps["plain"], "mmbal/method": steps["pcgrad/unrolled"]},
                   lambda tx: (jax.tree.map(jnp.copy, params), tx.init(params)), batch)


# ----------------------------------------------------------------------------- OGM-GE


def ogm_ge_shapes(args):
  spectrogram, frame = ((65, 47), 64) if args.quick else ((257, 188), 224)
  batch_size = args.batch or (4 if args.quick else 16)
  rng = np.random.default_rng(0)
  batch = {"audio": rng.normal(size=(batch_size, spectrogram[1], spectrogram[0], 1)),
           "visual": rng.normal(size=(batch_size, frame, frame, 3)),
           "label": rng.integers(0, 6, batch_size)}
  batch = {k: jnp.asarray(v, jnp.int32 if k == "label" else jnp.float32) for k, v in batch.items()}
  return dict(spectrogram=spectrogram, frame=frame, classes=6, batch=batch_size), batch


def _train_epoch(path: str, namespace: dict):
  """The official ``train_epoch`` read from a file of the clone, run in ``namespace`` (the
  file's other imports, tensorboard and the data sets, are not needed to time it)."""
  import ast  # pylint: disable=import-outside-toplevel
  tree = ast.parse(open(path, encoding="utf-8").read())
  found = [n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == "train_epoch"]
  if not found:
    raise SystemExit(f"{path} has no train_epoch")
  namespace = dict(namespace)
  exec(compile(ast.Module(body=found, type_ignores=[]), path, "exec"), namespace)  # pylint: disable=exec-used
  return namespace["train_epoch"]


def _epoch_entry(train_epoch, run_args, model, batches):
  """A timed entry: ``steps`` official steps as one ``train_epoch`` over repeated batches."""
  import contextlib  # pylint: disable=import-outside-toplevel
  import io  # pylint: disable=import-outside-toplevel
  import torch  # pylint: disable=import-outside-toplevel
  model.to(TORCH_DEVICE)
  optimizer = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9, weight_decay=1e-4)
  scheduler = torch.optim.lr_scheduler.StepLR(optimizer, 70, 0.1)

  def run(steps):
    t0, c0 = time.perf_counter(), time.process_time()
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
      train_epoch(run_args, 0, model, TORCH_DEVICE, [batches] * steps, optimizer, scheduler)
    _sync()                                                          # (it prints, tqdm)
    return (time.perf_counter() - t0) / steps, (time.process_time() - c0) / steps
  return {"run": run}


def _torch_batch(batch, frames_first: bool):
  """The official layouts: spectrogram [B, F, T] (OGM-GE unsqueezes it; MMPareto's data set
  gives [B, 1, F, T]); frames [B, 3, T, H, W] (OGM-GE) or [B, T, 3, H, W] (MMPareto)."""
  import torch  # pylint: disable=import-outside-toplevel
  spec = np.array(batch["audio"])[..., 0].transpose(0, 2, 1)
  image = np.array(batch["visual"]).transpose(0, 3, 1, 2)
  if frames_first:
    spec, image = spec[:, None], image[:, None]
  else:
    image = image[:, :, None]
  return (torch.as_tensor(spec).to(TORCH_DEVICE), torch.as_tensor(image).to(TORCH_DEVICE),
          torch.as_tensor(np.array(batch["label"]), dtype=torch.long).to(TORCH_DEVICE))


def ogm_ge_official(args, shapes, batch) -> dict:
  """The official ``train_epoch`` (read from the clone's main.py) over a list of batches."""
  import types  # pylint: disable=import-outside-toplevel
  import torch  # pylint: disable=import-outside-toplevel
  main_py = _official_file(args)
  sys.path.insert(0, os.path.dirname(main_py))
  from models.basic_model import AVClassifier  # pylint: disable=import-outside-toplevel,import-error
  train_epoch = _train_epoch(main_py, {"torch": torch, "nn": torch.nn, "np": np})
  batches = _torch_batch(batch, frames_first=False)

  def entry(modulation):
    run_args = types.SimpleNamespace(fusion_method="concat", dataset="CREMAD",
                                     modulation=modulation, alpha=0.8, modulation_starts=0,
                                     modulation_ends=50, use_tensorboard=False)
    torch.manual_seed(0)
    model = torch.nn.DataParallel(AVClassifier(run_args))   # as main.py (model.module.*)
    return _epoch_entry(train_epoch, run_args, model, batches)

  return _build({"official/plain": lambda: entry("Normal"),
                 "official/method": lambda: entry("OGM_GE")})


def ogm_ge_mmbal(args, shapes, batch) -> tuple[dict, dict]:
  return _crema_d_steps(shapes, batch, {"mmbal/plain": ("joint", []),
                                        "mmbal/method": ("ogm_ge", [])})


# ----------------------------------------------------------------------------- MMPareto


def mmpareto_official(args, shapes, batch) -> dict:
  """The official ``MMPareto.py::train_epoch`` and ``uniform_baseline.py::train_epoch``."""
  import re  # pylint: disable=import-outside-toplevel
  import types  # pylint: disable=import-outside-toplevel
  import torch  # pylint: disable=import-outside-toplevel
  code = os.path.dirname(_official_file(args))
  sys.path.insert(0, code)
  from min_norm_solvers import MinNormSolver  # pylint: disable=import-outside-toplevel,import-error
  from models.models import AVClassifier  # pylint: disable=import-outside-toplevel,import-error
  namespace = {"torch": torch, "nn": torch.nn, "F": torch.nn.functional, "np": np, "re": re,
               "tqdm": lambda iterable, *a, **k: iterable, "MinNormSolver": MinNormSolver}
  batches = _torch_batch(batch, frames_first=True)
  run_args = types.SimpleNamespace(dataset="CREMAD", n_classes=6, use_tensorboard=False)

  def entry(file):
    torch.manual_seed(0)   # main() has no DataParallel on CPU: parameter names as in the file
    return _epoch_entry(_train_epoch(os.path.join(code, file), namespace), run_args,
                        AVClassifier(run_args), batches)

  return _build({"official/plain": lambda: entry("uniform_baseline.py"),
                 "official/method": lambda: entry("MMPareto.py")})


def mmpareto_mmbal(args, shapes, batch) -> tuple[dict, dict]:
  return _crema_d_steps(shapes, batch, {"mmbal/plain": ("joint", ["model.unimodal=heads"]),
                                        "mmbal/method": ("mmpareto", ["method.mmpareto.gamma=1.5"])})


# ----------------------------------------------------------------------------- shared


def _crema_d_steps(shapes, batch, configs: dict) -> tuple[dict, dict]:
  """The jitted steps of ``configs/crema_d/<name>.py`` (+ overrides) on the batch's shapes."""
  from mmbal.train.config import apply_overrides, load_config  # pylint: disable=import-outside-toplevel
  from mmbal.train.run import build_parts  # pylint: disable=import-outside-toplevel
  modalities = {"audio": tuple(batch["audio"].shape[1:]), "visual": tuple(batch["visual"].shape[1:])}
  steps, init = {}, {}
  for variant, (name, overrides) in configs.items():
    if variant not in WANTED:
      continue
    c = apply_overrides(load_config(os.path.join(ROOT, "configs", "crema_d", f"{name}.py")),
                        [f"train.batch_size={shapes['batch']}"] + overrides)
    parts = build_parts(c, modalities, 6, task="classification", steps_per_epoch=100,
                        total_steps=10_000)
    steps[variant] = (parts.step_fn, parts.tx)
    init[variant] = jax.jit(parts.init_state)(parts.params)
  return _compiled(steps, lambda tx: next(init[v] for v, (_, t) in steps.items() if t is tx), batch)


def _compiled(steps: dict, make_state, batch) -> tuple[dict, dict]:
  """``({variant: {"fn", "state"}}, {variant: compile seconds})``: jitted, state donated."""
  entries, compile_s = {}, {}
  for variant, (fn, tx) in steps.items():
    if variant not in WANTED:
      continue
    state = make_state(tx)
    t0 = time.perf_counter()
    compiled = jax.jit(fn, donate_argnums=0).lower(state, batch).compile()
    compile_s[variant] = time.perf_counter() - t0
    entries[variant] = {"fn": compiled, "state": state, "flops": flops(compiled)}
  return entries, compile_s


def gemm_gflops(size: int | None = None, repeats: int = 5) -> dict:
  """The device's dense float32 GEMM rate (GFLOP/s, best of ``repeats`` square products of
  ``size``, 8192 on a GPU, 2048 on a CPU) in jax and in torch: the roofline the steps'
  convolutions and matmuls run against. On NVIDIA GPUs jax's float32 products run as TF32
  by default and torch's as full float32, so the two rates differ there by design."""
  import torch  # pylint: disable=import-outside-toplevel
  size = size or (8192 if ON_GPU else 2048)
  rng = np.random.default_rng(0)
  a, b = (jnp.asarray(rng.normal(size=(size, size)), jnp.float32) for _ in range(2))
  ta, tb = (torch.as_tensor(np.asarray(x)).to(TORCH_DEVICE) for x in (a, b))
  matmul = jax.jit(jnp.matmul)
  runs = {"jax": lambda: jax.block_until_ready(matmul(a, b)),
          "torch": lambda: (torch.matmul(ta, tb), _sync())}
  for run in runs.values():
    run()   # warm-up
  return {name: 2 * size ** 3 / best_seconds(run, repeats) / 1e9 for name, run in runs.items()}


def roofline(entries, median: dict) -> dict:
  """Each variant's achieved GFLOP/s against the dense GEMM rate, and the best ratio to the
  official step that mmbal's FLOPs would allow if every one ran at that rate. The official
  step is credited with its mmbal counterpart's XLA FLOP count (the same architecture and
  objectives; its norm layers differ)."""
  step_flops = {v: entries[v.replace("official", "mmbal")]["flops"] for v in VARIANTS}
  gemm = gemm_gflops()
  best = max(gemm.values())
  return dict(gemm_gflops=gemm, xla_gflop_per_step={v: f / 1e9 for v, f in step_flops.items()},
              achieved_gflops={v: step_flops[v] / median[v] / 1e9 for v in VARIANTS},
              best_mmbal_over_official={m: median[f"official/{m}"] * best * 1e9
                                        / step_flops[f"mmbal/{m}"] for m in ("plain", "method")})


METHODS = {"pcgrad": (pcgrad_shapes, pcgrad_official, pcgrad_mmbal),
           "ogm_ge": (ogm_ge_shapes, ogm_ge_official, ogm_ge_mmbal),
           "mmpareto": (ogm_ge_shapes, mmpareto_official, mmpareto_mmbal)}


def _entries(args, frameworks=("official", "mmbal")):
  shapes_fn, official_fn, mmbal_fn = METHODS[args.method]
  _official_file(args)   # before any work: the clone is needed
  shapes, batch = shapes_fn(args)
  entries, compile_s = {}, {}
  if "official" in frameworks:
    entries.update(official_fn(args, shapes, batch))
  if "mmbal" in frameworks:
    ours, compile_s = mmbal_fn(args, shapes, batch)
    entries.update(ours)
  return entries, batch, compile_s, shapes


def _child(args):
  """Builds and runs one variant only and prints its process's peak RSS (MiB), and on a GPU
  its peak device memory; every child imports both jax and torch, so the baselines match."""
  import torch  # noqa: F401  pylint: disable=import-outside-toplevel,unused-import
  WANTED.intersection_update({args.child})
  entries, batch, _, _ = _entries(args, (args.child.split("/")[0],))
  before = _peak_rss_mib()
  time_interleaved({args.child: entries[args.child]}, batch, [args.child], rounds=1,
                   steps=2 if args.quick else 5)
  measured = dict(peak_rss_mib=_peak_rss_mib(), rss_before_steps_mib=before)
  if ON_GPU:
    measured["peak_device_mib"] = (torch.cuda.max_memory_allocated() if args.child.startswith(
        "official") else jax.local_devices()[0].memory_stats()["peak_bytes_in_use"]) / 2**20
  print(json.dumps(measured))


def _peak_rss_mib() -> float:
  """This process's peak resident set (VmHWM; getrusage's maxrss would carry the parent's
  peak over the fork and exec)."""
  for line in open("/proc/self/status", encoding="ascii"):
    if line.startswith("VmHWM:"):
      return int(line.split()[1]) / 1024
  return float("nan")


def _memory(args) -> dict:
  out = {}
  for variant in VARIANTS:
    command = [sys.executable, __file__, "--method", args.method, "--official-dir",
               args.official_dir, "--child", variant, "--no-write", "--device", args.device] + (
                   ["--quick"] if args.quick else []) + (
                   ["--batch", str(args.batch)] if args.batch else [])
    done = subprocess.run(command, capture_output=True, text=True, check=True)
    out[variant] = json.loads(done.stdout.strip().splitlines()[-1])
  return out


def _rss(measured) -> str:
  if not measured:
    return "—"
  growth = measured["peak_rss_mib"] - measured["rss_before_steps_mib"]
  device = (f"; device {measured['peak_device_mib']:.0f}" if "peak_device_mib" in measured
            else "")
  return f"{measured['peak_rss_mib']:.0f} (+{growth:.0f}){device}"


def main(args) -> dict:
  start, load_before = time.time(), loadavg()
  rounds, steps = (2, 2) if args.quick else (args.rounds, args.steps)
  entries, batch, compile_s, shapes = _entries(args)
  wall, cpu = time_interleaved(entries, batch, list(VARIANTS), rounds=rounds, steps=steps)
  median = {v: statistics.median(wall[v]) for v in VARIANTS}
  samples = {v: shapes["batch"] / median[v] for v in VARIANTS}
  memory = {} if args.no_memory else _memory(args)
  own_plain = lambda v: median[v.split("/")[0] + "/plain"]
  speedup = {m: samples[f"mmbal/{m}"] / samples[f"official/{m}"] for m in ("plain", "method")}
  rows = [f"{args.method}: official = {OFFICIAL[args.method][0]}", "",
          "| variant | ms per step | samples/s | vs its own plain step | CPU s per step | "
          "compile (s) | peak RSS, MiB, its own process (growth in the steps) |", "|---|---|---|---|---|---|---|"]
  for v in VARIANTS:
    rows.append(f"| `{v}` | {1e3 * median[v]:.1f} | {samples[v]:.1f} | "
                f"{median[v] / own_plain(v):.2f}x | {statistics.median(cpu[v]):.3f} | "
                f"{compile_s.get(v, 0.0):.1f} | {_rss(memory.get(v))} |")
  rows += ["", f"mmbal / official samples per second: plain {speedup['plain']:.2f}x, "
           f"{args.method} {speedup['method']:.2f}x"]
  bound = roofline(entries, median)
  rows += ["", "achieved GFLOP/s (XLA's FLOP count of mmbal's step, the official credited "
           "with the same): " + ", ".join(f"{v} {r:.0f}" for v, r in bound["achieved_gflops"].items()),
           "dense float32 GEMM on this device, GFLOP/s: " + ", ".join(
               f"{k} {r:.0f}" for k, r in bound["gemm_gflops"].items()),
           "mmbal / official samples per second if every FLOP ran at the GEMM rate (the "
           "roofline): " + ", ".join(f"{m} {r:.2f}x" for m, r in bound["best_mmbal_over_official"].items())]
  torch = __import__("torch")
  result = dict(benchmark="vs_official", method=args.method, device=device_info(),
                quick=args.quick, official=f"{OFFICIAL[args.method][0]} (the user's clone)",
                torch_version=torch.__version__, torch_threads=torch.get_num_threads(),
                torch_device=torch.cuda.get_device_name(0) if ON_GPU else "cpu",
                shapes=shapes, rounds=rounds, steps=steps,
                ms_per_step={v: 1e3 * m for v, m in median.items()}, samples_per_s=samples,
                mmbal_over_official=speedup, roofline=bound, compile_s=compile_s,
                peak_rss=memory,
                all_targets_met=speedup["method"] >= 1.0, wall_s=time.time() - start,
                loadavg_before=load_before, loadavg_after=loadavg())
  return report(result, benchmark=f"vs_official_{args.method}", info=result["device"], args=args,
                load_before=load_before, markdown="\n".join(rows))


if __name__ == "__main__":
  if ARGS.child:
    _child(ARGS)
  else:
    main(ARGS)
  sys.exit(0)
