"""Step overhead of per-objective gradients against the plain joint train step.

For a `MultimodalClassifier` with M = 2, 3 and 6 vector modalities (MLP encoders, concat
fusion, ``unimodal="heads"``; K = M + 1 objectives ``[L_fused, L_1, ..., L_M]``) this times
complete jitted train steps with donated state (forward, gradients, adam update):

  plain                one ``value_and_grad`` of the weighted summed loss + update, i.e.
                       ``make_train_step(grad_mode="sum")``.
  structured/<bw>      `mmbal.objective_grads` with parameter labels: the M unimodal
                       objectives share one backward pass, so 2 passes for any M;
                       + ``combine_objectives`` + update (``grad_mode="stacked"``).
  overlap/<bw>         `mmbal.objective_grads` without labels: all K objectives are treated
                       as touching every parameter, K one-hot VJPs; + combine + update.
  separate             K ``jax.value_and_grad`` calls in one jit (K forward + backward
                       passes as written; XLA's CSE merges the identical forwards);
                       + combine + update.

``<bw>`` is ``backward="vmap"`` or ``backward="unrolled"``. The variants of one M are
compiled first (compile time recorded, excluded from timings), then timed interleaved over
several rounds, rotating the order each round; each sample is ``--steps`` back-to-back
steps closed by ``block_until_ready``; reported figures are medians over rounds and ratios
to the plain step of the same run. Process CPU time per step and XLA's FLOP count are
recorded too: on a shared machine the CPU-time ratio is steadier than the wall-clock one.

Targets: structured <= 1.6x plain for every M; overlap <= 1.1 * (1 + 2K) / 3 (one forward
plus K backward passes, a backward costing about two forwards), both backward modes.

  PYTHONPATH=. python benchmarks/step_overhead.py            # CPU, ~1.5 minutes
  PYTHONPATH=. python benchmarks/step_overhead.py --quick    # CPU, ~1 minute
  PYTHONPATH=. python benchmarks/step_overhead.py --device gpu

Writes ``benchmarks/results/step_overhead_<device>.json`` (``cpu``, or the platform and
device kind, e.g. ``gpu_nvidia_h100_80gb_hbm3``; ``_quick`` appended for ``--quick``,
which is for smoke tests) and prints markdown tables.
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import time


def _parse_args(argv=None):
  p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  p.add_argument("--device", choices=("cpu", "gpu"), default="cpu",
                 help="cpu forces the CPU backend; gpu uses JAX's default backend")
  p.add_argument("--quick", action="store_true", help="fewer rounds and steps (~1 min on CPU)")
  p.add_argument("--modalities", type=int, nargs="+", default=[2, 3, 6])
  p.add_argument("--batch", type=int, default=256)
  p.add_argument("--in-dim", type=int, default=128, help="size of every vector modality")
  p.add_argument("--hidden-dim", type=int, default=128, help="MLP encoder width (model default)")
  p.add_argument("--feature-dim", type=int, default=64, help="encoder output (model default)")
  p.add_argument("--classes", type=int, default=10)
  p.add_argument("--rounds", type=int, default=None, help="interleaved timing rounds")
  p.add_argument("--steps", type=int, default=None, help="steps per variant per round")
  p.add_argument("--variants", nargs="+", default=None, help="subset of the variants to time")
  p.add_argument("--out", default=None, help="JSON path (default: benchmarks/results/...)")
  p.add_argument("--no-write", action="store_true", help="print only")
  return p.parse_args(argv)


ARGS = _parse_args() if __name__ == "__main__" else None
if ARGS is not None and ARGS.device == "cpu":
  os.environ["JAX_PLATFORMS"] = "cpu"  # before jax initialises its backends

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import optax  # noqa: E402
from flax import nnx  # noqa: E402

import mmbal  # noqa: E402
from mmbal.grads import default_supports  # noqa: E402
from mmbal.models import MultimodalClassifier, labels_for, split  # noqa: E402
from mmbal.train.step import (TrainState, classification_objectives, init_train_state,  # noqa: E402
                              make_apply, make_train_step)
from mmbal.transforms import combine_objectives  # noqa: E402

try:  # run as a script (benchmarks/ is on sys.path) or imported as benchmarks.step_overhead
  from _timing import (_iqr, device_info, flops, loadavg, report,  # noqa: E402
                       time_interleaved)
except ImportError:
  from benchmarks._timing import (_iqr, device_info, flops, loadavg, report,  # noqa: E402
                                  time_interleaved)

VARIANTS = ("plain", "structured/vmap", "structured/unrolled", "overlap/vmap",
            "overlap/unrolled", "separate")
STRUCTURED_TARGET = 1.6


def overlap_target(k: int) -> float:
  return 1.1 * (1 + 2 * k) / 3


def build(num_modalities: int, args):
  """Model, params, objective function, labels and one device batch for M modalities."""
  mods = {f"m{i}": (args.in_dim,) for i in range(num_modalities)}
  model = MultimodalClassifier(mods, args.classes, feature_dim=args.feature_dim,
                               hidden_dim=args.hidden_dim, fusion="concat", unimodal="heads",
                               rngs=nnx.Rngs(0))
  graphdef, params, rest = split(model)
  losses_fn = classification_objectives(make_apply(graphdef, rest), model.names)
  rng = np.random.default_rng(0)
  batch = {n: jnp.asarray(rng.normal(size=(args.batch, args.in_dim)), jnp.float32)
           for n in model.names}
  batch["label"] = jnp.asarray(rng.integers(0, args.classes, args.batch), jnp.int32)
  return model, params, losses_fn, labels_for(model, params), batch


def make_step(variant: str, losses_fn, weights, objectives, labels):
  """``(tx, train_step)`` from `mmbal.train.step.make_train_step`, its gradient computation
  chosen by ``variant``."""
  base = optax.adam(1e-3)
  if variant == "plain":
    return base, make_train_step(losses_fn, base, weights)
  tx = optax.chain(combine_objectives(weights), base)
  if variant == "separate":
    def grads_fn(params, batch):
      per = [jax.value_and_grad(lambda p, k=k: _single(losses_fn, p, batch, k), has_aux=True)(params)
             for k in range(len(objectives))]
      values, aux = per[0][0][1]
      return values, jax.tree.map(lambda *g: jnp.stack(g), *[g for _, g in per]), aux
    return tx, make_train_step(losses_fn, tx, weights, grad_mode="stacked", grads_fn=grads_fn)
  kind, backward = variant.split("/")
  if kind not in ("structured", "overlap"):
    raise ValueError(f"unknown variant {variant!r}")
  return tx, make_train_step(losses_fn, tx, weights, grad_mode="stacked", objectives=objectives,
                             labels=labels if kind == "structured" else None, backward=backward)


def _single(losses_fn, params, batch, k):
  values, aux = losses_fn(params, batch, None)
  return values[k], (values, aux)


def init_state(tx, params, num_objectives) -> TrainState:
  copy = lambda t: jax.tree.map(jnp.array, t)  # fresh buffers: every variant donates its own
  state = init_train_state(copy(params), tx, seed=0, num_objectives=num_objectives)
  return state.replace(best_params=copy(params))


def compile_variant(variant, losses_fn, params, weights, objectives, labels, batch):
  tx, step = make_step(variant, losses_fn, weights, objectives, labels)
  state = init_state(tx, params, len(weights))
  t0 = time.perf_counter()
  lowered = jax.jit(step, donate_argnums=0).lower(state, batch)
  t1 = time.perf_counter()
  compiled = lowered.compile()
  t2 = time.perf_counter()
  return dict(fn=compiled, state=state, trace_s=t1 - t0, compile_s=t2 - t1, flops=flops(compiled))


def bench_config(num_modalities: int, args, variants, rounds: int, steps: int, log):
  model, params, losses_fn, labels, batch = build(num_modalities, args)
  objectives = ("fused",) + model.names
  num = len(objectives)
  weights = np.ones(num, np.float32)
  entries = {}
  for v in variants:
    entries[v] = compile_variant(v, losses_fn, params, weights, objectives, labels, batch)
  wall, cpu = time_interleaved(entries, batch, variants, rounds=rounds, steps=steps)
  ms = {v: 1e3 * statistics.median(s) for v, s in wall.items()}
  cpu_ms = {v: 1e3 * statistics.median(s) for v, s in cpu.items()}
  passes = len(mmbal.plan_backward_passes(default_supports(objectives, labels)))
  out = dict(num_modalities=num_modalities, num_objectives=num,
             param_count=int(sum(x.size for x in jax.tree.leaves(params))),
             backward_passes=dict(plain=1, structured=passes, overlap=num, separate=num),
             variants={})
  for v in variants:
    e = entries[v]
    out["variants"][v] = dict(
        ms=ms[v], ratio=ms[v] / ms["plain"], ms_min=1e3 * min(wall[v]),
        ms_iqr=1e3 * _iqr(wall[v]), cpu_ms=cpu_ms[v], cpu_ratio=cpu_ms[v] / cpu_ms["plain"],
        trace_s=e["trace_s"], compile_s=e["compile_s"], flops=e["flops"],
        flops_ratio=e["flops"] / entries["plain"]["flops"])
  out["targets"] = _targets(out)
  log(f"  M={num_modalities}: " + ", ".join(f"{v} {ms[v]:.2f}ms ({ms[v] / ms['plain']:.2f}x)"
                                         for v in variants))
  return out


def _targets(cfg):
  k, res = cfg["num_objectives"], {}
  for v, r in cfg["variants"].items():
    limit = STRUCTURED_TARGET if v.startswith("structured/") else \
        overlap_target(k) if v.startswith("overlap/") else None
    if limit is not None:
      res[v] = dict(limit=limit, ratio=r["ratio"], met=bool(r["ratio"] <= limit))
  return res


def _table(result, variants, cell, first=("M", "K")):
  lines = ["| " + " | ".join(first + tuple(variants)) + " |",
           "|" + "---|" * (len(first) + len(variants))]
  for c in result["configs"]:
    head = [str(c["num_modalities"]), str(c["num_objectives"])][:len(first)]
    lines.append("| " + " | ".join(head + [cell(c, v) if v in c["variants"] else "-"
                                           for v in variants]) + " |")
  return lines


def markdown(result) -> str:
  variants = [v for v in VARIANTS if any(v in c["variants"] for c in result["configs"])]

  def timing(c, v):
    r, t = c["variants"][v], c["targets"].get(v)
    mark = "" if t is None else (f" <= {t['limit']:.2f} ok" if t["met"] else
                                 f" > {t['limit']:.2f} MISS")
    return f"{r['ms']:.2f} ms, **{r['ratio']:.2f}x**{mark}"

  lines = ["Wall-clock per step (median), ratio to plain, target:", ""]
  lines += _table(result, variants, timing)
  lines += ["", "Process CPU time ratio / XLA FLOP ratio to plain:", ""]
  lines += _table(result, variants,
                  lambda c, v: f"{c['variants'][v]['cpu_ratio']:.2f}x / "
                               f"{c['variants'][v]['flops_ratio']:.2f}x")
  lines += ["", "Compile time (s):", ""]
  lines += _table(result, variants, lambda c, v: f"{c['variants'][v]['compile_s']:.2f}")
  return "\n".join(lines)


def main(args):
  variants = list(args.variants or VARIANTS)
  if "plain" not in variants:
    variants.insert(0, "plain")
  unknown = set(variants) - set(VARIANTS)
  if unknown:
    raise SystemExit(f"unknown variants {sorted(unknown)}; choose from {VARIANTS}")
  rounds = args.rounds or (5 if args.quick else 15)
  steps = args.steps or (10 if args.quick else 20)
  info = device_info()
  log = lambda s: print(s, file=sys.stderr, flush=True)
  log(f"step_overhead on {info['platform']} ({info['device_kind']}), jax {info['jax_version']}, "
      f"{info['cpu_count']} CPUs; {rounds} rounds x {steps} steps per variant")
  load_before = loadavg()
  t0 = time.perf_counter()
  configs = [bench_config(m, args, variants, rounds, steps, log) for m in args.modalities]
  result = dict(
      benchmark="step_overhead", created=time.strftime("%Y-%m-%dT%H:%M:%S%z"), quick=args.quick,
      command=" ".join(["python", "benchmarks/step_overhead.py"] + sys.argv[1:]),
      device=info, loadavg_before=load_before, loadavg_after=loadavg(),
      setup=dict(batch=args.batch, in_dim=args.in_dim, hidden_dim=args.hidden_dim,
                 feature_dim=args.feature_dim, classes=args.classes,
                 encoder="MLP: LayerNorm -> Linear -> GELU -> Linear", fusion="concat",
                 unimodal="heads", optimizer="adam", objective_weights="ones",
                 rounds=rounds, steps_per_sample=steps,
                 statistic="median over rounds of the mean step time of a sample"),
      targets=dict(structured=f"ratio <= {STRUCTURED_TARGET} for every M",
                   overlap="ratio <= 1.1 * (1 + 2K) / 3"),
      configs=configs, wall_s=time.perf_counter() - t0)
  met = [(c["num_modalities"], v, t) for c in configs for v, t in c["targets"].items()]
  result["all_targets_met"] = all(t["met"] for _, _, t in met)
  for m, v, t in met:
    print(f"M={m} {v}: {t['ratio']:.2f}x <= {t['limit']:.2f}x ? {'met' if t['met'] else 'MISSED'}")
  return report(result, benchmark="step_overhead", info=info, args=args,
                load_before=load_before, markdown=markdown(result))

if __name__ == "__main__":
  main(ARGS)
