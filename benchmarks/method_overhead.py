"""Per-step cost of each balancing method against the plain joint train step.

For a `MultimodalClassifier` with M = 2 and 3 vector modalities shaped like UCI mfeat's
views (pix 240, fou 76, mor 6; MLP encoders, hidden 128, features 64, concat fusion,
10 classes, batch 256) -- or, with ``--encoder resnet18``, the audio-visual model of the
papers (a ResNet-18 per modality on CREMA-D's spectrogram and frame; ``--dtype bfloat16`` for
mixed precision) -- this times the trainer's real step for every method: the method
spec from `mmbal.train.run.build_parts` with the default per-method settings of
`mmbal.train.config.default_config`, the optax chain assembled exactly as
the trainer does (the trainer's adamw with its cosine schedule,
the method's transform before it and its ``after_optimizer`` after it), and
`mmbal.train.step.make_train_step`, jitted with the state donated. Variants:

  plain              method joint, ``model.unimodal="probe"`` (the baseline; the probes'
                     gradients stop at the features, so they are cheap).
  plain_split_head   joint with ``unimodal="split_head"``: OGM-GE's and AGM's model.
  plain_heads        joint with ``unimodal="heads"``: G-Blending's model (summed loss).
  ogm_ge             OGM-GE (split_head; scaling + generalisation-enhancement noise).
  ogm_ge_no_noise    OGM-GE with ``noise=False`` (plain OGM): the cost of the GE noise.
  cggm_magnitude     CGGM with ``lam=0``: the magnitude modulation only (probe).
  cggm_direction     CGGM with its default ``lam > 0``: + the direction term in the loss.
  (any other)        every registered method without a variant here is added from the
                     registry, with its generated configs' model, against the matching plain.
  cggm_direction_weights  the same with ``direction="weights"`` (the released code's cosine).
  miles              MILES (per-encoder learning-rate scales after the optimizer).
  gradient_blending  G-Blending (heads): stacked fused + unimodal gradients, 2 backward
                     passes; reported, no target.
  agm_unmodulated    AGM's objectives and gradients (2^M - 1 subset forwards in one vmap,
                     M share backward passes) with the AGM transform replaced by a plain
                     sum, ``combine_objectives(ones)``: the passes AGM needs.
  agm                AGM as the trainer runs it.
  plain_late         joint with late fusion (mean) of unimodal heads: MNL's model.
  mnl                MNL (dominant modality + negative learning) against plain_late.
  pmr                PMR (prototype cross-entropy + prototype memory) against plain.
  mla                MLA's alternating step (M head updates in a scan, one encoder update,
                     shared head, entropy fusion) against plain_late; reported, no target.

Each variant's *counterpart* is the step it adds to: plain_split_head for ogm_ge, plain
for CGGM and MILES, plain_heads for gradient_blending, agm_unmodulated for agm (its
modulation), plain for agm_unmodulated (the cost of the passes AGM needs).

Method as in ``step_overhead.py``: the variants of one M are compiled first (compile time
recorded, excluded from timings), warmed up, then timed interleaved over several rounds,
rotating the order each round; a sample is ``--steps`` back-to-back steps closed by
``block_until_ready``. Reported: medians over rounds, ratios to plain and to the
counterpart measured in the same run, the median of the per-round ratios to the
counterpart (paired: steadier on a shared machine), process CPU time and XLA FLOPs.

Targets (from the issue): at most 1.05x the plain step for OGM-GE (against its plain
counterpart with the same split head, and against plain), AGM's modulation
(agm / agm_unmodulated), CGGM (both variants) and MILES; our own target of 1.05 for MNL (against
plain_late) and PMR, the loss-side methods of issue 5.

  PYTHONPATH=. python benchmarks/method_overhead.py            # CPU, ~2 minutes on 2 cores
  PYTHONPATH=. python benchmarks/method_overhead.py --quick    # CPU, ~1 minute
  PYTHONPATH=. python benchmarks/method_overhead.py --device gpu
  PYTHONPATH=. python benchmarks/method_overhead.py --device gpu --encoder resnet18 \
      --modalities 2 --batch 64 --dtype bfloat16      # one compile at a time on a GPU: its
                                                       # autotuners contend (--compile-threads)

Writes ``benchmarks/results/method_overhead[_resnet18_<dtype>]_<device>.json`` (``cpu``, or
the platform and device kind; ``_quick`` appended for ``--quick``) and prints markdown tables.
"""
from __future__ import annotations

import argparse
import concurrent.futures
import dataclasses
import functools
import os
import re
import statistics
import sys
import time

DEFAULT_DIMS = (("pix", 240), ("fou", 76), ("mor", 6))   # UCI mfeat's views


def _parse_args(argv=None):
  p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  p.add_argument("--device", choices=("cpu", "gpu"), default="cpu",
                 help="cpu forces the CPU backend; gpu uses JAX's default backend")
  p.add_argument("--quick", action="store_true", help="fewer rounds and steps (~1 min on CPU)")
  p.add_argument("--modalities", type=int, nargs="+", default=[2, 3])
  p.add_argument("--dims", type=int, nargs="+", default=None,
                 help="modality sizes (default mfeat's 240 76 6; M uses the first M; one value "
                      "is used for every modality)")
  p.add_argument("--encoder", choices=("mlp", "cnn", "resnet18"), default="mlp",
                 help="cnn / resnet18: M = 2, CREMA-D's shapes (spectrogram [188, 257, 1], "
                      "frame [224, 224, 3], scaled by --image-size), that encoder per modality")
  p.add_argument("--image-size", type=int, default=224, help="cnn / resnet18: the frame's side")
  p.add_argument("--dtype", choices=("float32", "bfloat16"), default="float32",
                 help="the encoders' compute dtype (model.dtype)")
  p.add_argument("--compile-threads", type=int, default=1,
                 help="variants compiled concurrently (XLA compiles outside the GIL)")
  p.add_argument("--batch", type=int, default=256)
  p.add_argument("--hidden-dim", type=int, default=128, help="MLP encoder width (model default)")
  p.add_argument("--feature-dim", type=int, default=64, help="encoder output (model default)")
  p.add_argument("--classes", type=int, default=10)
  p.add_argument("--rounds", type=int, default=None, help="interleaved timing rounds")
  p.add_argument("--steps", type=int, default=None, help="steps per variant per round")
  p.add_argument("--variants", nargs="+", default=None,
                 help="subset of the variants to time (their counterparts are added)")
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

from mmbal import methods  # noqa: E402
from mmbal.train.config import default_config  # noqa: E402
from mmbal.train.run import assemble, build_parts  # noqa: E402
from mmbal.train.step import init_train_state  # noqa: E402
from mmbal.transforms import combine_objectives  # noqa: E402

try:  # run as a script (benchmarks/ is on sys.path) or imported as benchmarks.method_overhead
  from _timing import (_iqr, device_info, flops, loadavg, report,  # noqa: E402
                       time_interleaved)
except ImportError:
  from benchmarks._timing import (_iqr, device_info, flops, loadavg, report,  # noqa: E402
                                  time_interleaved)


@dataclasses.dataclass(frozen=True)
class Variant:
  method: str                  # method.name
  unimodal: str                # model.unimodal
  counterpart: str | None      # the step this variant adds to
  target: tuple = ()           # variants its ratio to must be <= TARGET
  overrides: tuple = ()        # (field, value) of method.<method>
  unmodulated: bool = False    # the method's transform replaced by a plain sum
  shapley_sink: bool = False   # M-SAM's transform replaced by one that only reads its scores
  limit: float | str = "default"  # target ratio: TARGET, "k_objectives", or a number
  note: str = ""
  fusion: str = "concat"       # model.fusion


VARIANTS = {
    "plain": Variant("joint", "probe", None, note="baseline: joint, probe heads"),
    "plain_split_head": Variant("joint", "split_head", "plain",
                                note="joint with OGM-GE's/AGM's split head"),
    "plain_heads": Variant("joint", "heads", "plain", note="joint with G-Blending's heads"),
    "ogm_ge": Variant("ogm_ge", "split_head", "plain_split_head",
                      target=("plain_split_head", "plain")),
    "ogm_ge_no_noise": Variant("ogm_ge", "split_head", "plain_split_head",
                               overrides=(("noise", False),),
                               note="noise=False (plain OGM): the scaling without the GE noise"),
    "cggm_magnitude": Variant("cggm", "probe", "plain", target=("plain",), overrides=(("lam", 0.0),),
                              note="lam=0: magnitude modulation only"),
    "cggm_direction": Variant("cggm", "probe", "plain", target=("plain",),
                              note="default lam: + direction term"),
    "cggm_direction_weights": Variant("cggm", "probe", "plain", overrides=(("direction", "weights"),),
                                      note="default lam, direction='weights' (released code)"),
    "miles": Variant("miles", "probe", "plain", target=("plain",)),
    "gradient_blending": Variant("gradient_blending", "heads", "plain_heads",
                                 note="stacked fused + unimodal gradients (2 backward passes)"),
    "agm_unmodulated": Variant("agm", "split_head", "plain", unmodulated=True,
                               note="AGM's 2^M-1 subset forwards + M share backward passes, "
                                    "plain sum instead of the AGM transform"),
    "agm": Variant("agm", "split_head", "agm_unmodulated", target=("agm_unmodulated",),
                   note="vs agm_unmodulated: the modulation itself"),
    "pcgrad": Variant("pcgrad", "heads", "plain", target=("plain",), limit="k_objectives",
                      note="K = M+1 stacked objectives (2 backward passes) + projection"),
    "mmpareto": Variant("mmpareto", "heads", "plain", target=("plain",), limit="k_objectives"),
    "balgrad": Variant("balgrad", "heads", "plain", target=("plain",), limit="k_objectives",
                       note="K = 2M+1 objectives [task, kl_m, uni_m] (2 backward passes)"),
    "sam": Variant("sam", "probe", "plain", target=("plain",), limit=2.1,
                   note="one extra forward+backward at the perturbed point"),
    "msam_scores": Variant("msam", "probe", "plain", shapley_sink=True,
                           note="M-SAM's 2^M subset forwards only (no sharpness)"),
    "msam": Variant("msam", "probe", "msam_scores", target=("msam_scores",), limit=2.1,
                    note="vs msam_scores: the sharpness step on top of the subset forwards"),
    "plain_late": Variant("joint", "heads", "plain", fusion="late",
                          note="joint, late fusion (mean) of unimodal heads: MNL's model"),
    "mnl": Variant("mnl", "heads", "plain_late", target=("plain_late",), fusion="late",
                   note="vs plain_late: dominance + negative-learning term"),
    "pmr": Variant("pmr", "probe", "plain", target=("plain",),
                   note="prototype distances + cross-entropy, prototype memory update"),
    "mla": Variant("mla", "shared_head", "plain_late", fusion="late_entropy",
                   note="M sequential head steps (scan + switch) + one encoder step; reported"),
}


def _plain_for(model: dict) -> str:
  """The plain joint variant with the model a method's generated configs use."""
  unimodal, fusion = model.get("unimodal", "probe"), model.get("fusion", "concat")
  if fusion != "concat" or unimodal == "shared_head":
    return "plain_late"
  return {"probe": "plain", "split_head": "plain_split_head", "heads": "plain_heads"}[unimodal]


# Every registered method on the MultimodalClassifier is timed: those without a hand-written
# variant above get one with its generated configs' model, against the matching plain step.
VARIANTS.update({
    name: Variant(name, m.model.get("unimodal", "probe"), _plain_for(m.model),
                  fusion=m.model.get("fusion", "concat"), note="from the method registry; no target")
    for name, m in methods.REGISTRY.items()
    if m.build_model is None and name != "joint"
    and not any(v.method == name for v in VARIANTS.values())})
TARGET = 1.05
STEPS_PER_EPOCH = 7      # mfeat: ~1700 training examples / batch 256
TOTAL_STEPS = 10_000     # the learning-rate schedule stays away from its end while timing


def modality_dims(num: int, dims, args=None) -> dict[str, tuple[int, ...]]:
  if args is not None and args.encoder != "mlp":
    if num != 2:
      raise SystemExit(f"--encoder {args.encoder} is the audio-visual model: --modalities 2, "
                       f"got {num}")
    scale = args.image_size / 224
    return {"audio": (max(8, round(188 * scale)), max(8, round(257 * scale)), 1),
            "visual": (args.image_size, args.image_size, 3)}
  if dims is None:
    if num > len(DEFAULT_DIMS):
      raise SystemExit(f"--modalities {num}: mfeat has {len(DEFAULT_DIMS)} views; pass --dims")
    return {n: (d,) for n, d in DEFAULT_DIMS[:num]}
  dims = list(dims) * num if len(dims) == 1 else list(dims)
  if len(dims) < num:
    raise SystemExit(f"--dims gives {len(dims)} sizes, M={num} needs {num}")
  return {f"m{i}": (d,) for i, d in enumerate(dims[:num])}


def method_config(variant: Variant, args):
  c = default_config()
  c.method.name = variant.method
  c.model.update(unimodal=variant.unimodal, fusion=variant.fusion, hidden_dim=args.hidden_dim,
                 feature_dim=args.feature_dim, dtype=args.dtype,
                 image_encoder="cnn" if args.encoder == "mlp" else args.encoder)
  for field, value in variant.overrides:
    c.method[variant.method][field] = value
  return c


def build_step(variant: Variant, mods, args):
  """``(train_step, state, method, model)``, built as `mmbal.train.loop.train_and_evaluate`
  builds them (without mesh shardings: one device)."""
  c = method_config(variant, args)
  parts = build_parts(c, mods, args.classes, task="classification",
                      steps_per_epoch=STEPS_PER_EPOCH, total_steps=TOTAL_STEPS)
  method = parts.method
  if variant.unmodulated:
    if method.grad_mode != "stacked" or method.transform is None:
      raise ValueError(f"{variant.method}: 'unmodulated' needs a stacked method with a transform")
    num = len(method.objectives or ("fused",) + parts.model.names)
    method = dataclasses.replace(method, transform=combine_objectives(np.ones(num, np.float32)))
  if variant.shapley_sink:
    method = dataclasses.replace(method, transform=_shapley_sink())
  if method is not parts.method:   # the chain and step again, around the replaced transform
    parts = build_parts_with(parts, method, c)
  state = jax.jit(parts.init_state)(parts.params)
  return parts.step_fn, state, method, parts.model


def build_parts_with(parts, method, c):
  """``parts`` with the method's spec replaced (the chain and step rebuilt as the trainer does)."""
  tx, step_fn = assemble(method, parts.model, parts.apply_fn, parts.labels, c, TOTAL_STEPS,
                         "classification")
  init_state = functools.partial(init_train_state, tx=tx, seed=c.seed,
                                 num_objectives=len(method.weights))
  return parts._replace(method=method, tx=tx, step_fn=step_fn, init_state=init_state)


def make_batch(mods, args):
  rng = np.random.default_rng(0)
  batch = {n: jnp.asarray(rng.normal(size=(args.batch,) + shape), jnp.float32)
           for n, shape in mods.items()}
  batch["label"] = jnp.asarray(rng.integers(0, args.classes, args.batch), jnp.int32)
  return batch


def lower_variant(name, mods, args, batch):
  """The variant's step, traced and lowered (compiled by `compile_lowered`)."""
  step_fn, state, method, model = build_step(VARIANTS[name], mods, args)
  t0 = time.perf_counter()
  lowered = jax.jit(step_fn, donate_argnums=0).lower(state, batch)
  return dict(lowered=lowered, state=state, trace_s=time.perf_counter() - t0,
              state_leaves=len(jax.tree.leaves(state)),
              param_count=int(sum(x.size for x in jax.tree.leaves(state.params))),
              grad_mode=method.grad_mode if method.grad_mode == "stacked" else "sum",
              objectives=list(method.objectives or ("fused",) + model.names))


def compile_lowered(entry):
  t0 = time.perf_counter()
  compiled = entry.pop("lowered").compile()
  entry.update(fn=compiled, compile_s=time.perf_counter() - t0, flops=flops(compiled),
               hlo_ops=hlo_ops(compiled))
  return entry


_NOT_EXECUTED = ("parameter", "constant", "get-tuple-element", "tuple", "bitcast")


def hlo_ops(compiled) -> int | None:
  """Instructions of the optimised entry computation that do work (fusions, dots, copies,
  loops, ...): on XLA CPU each one is a separately dispatched kernel, a fixed cost per op."""
  try:
    text = compiled.as_text()
  except Exception:  # best-effort, backend-dependent
    return None
  match = re.search(r"\nENTRY [^\n]*\{\n(.*?)\n\}", text, re.S)
  if match is None:
    return None
  ops = re.findall(r"^\s*(?:ROOT )?%\S+ = .*?\s([a-z][\w-]*)\(", match.group(1), re.M)
  return sum(op not in _NOT_EXECUTED for op in ops)


def bench_config(num_modalities: int, args, variants, rounds: int, steps: int, log):
  mods = modality_dims(num_modalities, args.dims, args)
  batch = make_batch(mods, args)
  entries = {v: lower_variant(v, mods, args, batch) for v in variants}
  # Compile times are per variant; with several threads they overlap (and each may be longer).
  with concurrent.futures.ThreadPoolExecutor(max(1, args.compile_threads)) as pool:
    list(pool.map(compile_lowered, entries.values()))
  wall, cpu = time_interleaved(entries, batch, variants, rounds=rounds, steps=steps)
  ms = {v: 1e3 * statistics.median(s) for v, s in wall.items()}
  cpu_ms = {v: 1e3 * statistics.median(s) for v, s in cpu.items()}
  out = dict(num_modalities=num_modalities, dims={n: s[0] if len(s) == 1 else list(s) for n, s in mods.items()},
             subsets=2 ** num_modalities - 1, variants={})
  for v in variants:
    e, ref = entries[v], VARIANTS[v].counterpart
    rec = dict(
        method=VARIANTS[v].method, unimodal=VARIANTS[v].unimodal, counterpart=ref,
        grad_mode=e["grad_mode"], objectives=e["objectives"],
        ms=ms[v], ms_min=1e3 * min(wall[v]), ms_iqr=1e3 * _iqr(wall[v]), cpu_ms=cpu_ms[v],
        ratio=ms[v] / ms["plain"], cpu_ratio=cpu_ms[v] / cpu_ms["plain"],
        paired_ratio=_paired(wall[v], wall["plain"]),
        flops=e["flops"], flops_ratio=e["flops"] / entries["plain"]["flops"],
        trace_s=e["trace_s"], compile_s=e["compile_s"], hlo_ops=e["hlo_ops"],
        state_leaves=e["state_leaves"],
        param_count=e["param_count"])
    if ref is not None:
      rec.update(ratio_counterpart=ms[v] / ms[ref], cpu_ratio_counterpart=cpu_ms[v] / cpu_ms[ref],
                 paired_ratio_counterpart=_paired(wall[v], wall[ref]),
                 flops_ratio_counterpart=e["flops"] / entries[ref]["flops"])
    out["variants"][v] = rec
  out["targets"] = _targets(out)
  log(f"  M={num_modalities}: " + ", ".join(f"{v} {ms[v]:.2f}ms ({ms[v] / ms['plain']:.2f}x)"
                                         for v in variants))
  return out


def _paired(xs, ref) -> float:
  """Median over rounds of the per-round ratio (the two samples of a round are close in time)."""
  return float(statistics.median(x / r for x, r in zip(xs, ref)))


def _shapley_sink():
  """Passes gradients through, reading M-SAM's Shapley values so their forwards stay live."""
  def update_fn(updates, state, params=None, *, shapley_values, **extra_args):
    del params, extra_args
    total = sum(jax.tree.leaves(shapley_values))
    return jax.tree.map(lambda g: g + 0.0 * total.astype(g.dtype), updates), state
  return optax.GradientTransformationExtraArgs(lambda params: optax.EmptyState(), update_fn)


def _limit(variant: Variant, num_modalities: int) -> float:
  if variant.limit == "default":
    return TARGET
  if variant.limit == "k_objectives":   # 1.1 x (1 + 2K) / 3 (one forward, K backward passes)
    k = 2 * num_modalities + 1 if variant.method == "balgrad" else num_modalities + 1
    return 1.1 * (1 + 2 * k) / 3
  return float(variant.limit)


def _targets(cfg):
  """One entry per checked ratio (a variant's ``target`` references: plain or its counterpart)."""
  res = []
  for v, r in cfg["variants"].items():
    for ref in VARIANTS[v].target:
      assert ref in ("plain", VARIANTS[v].counterpart), (v, ref)
      ratio = r["ratio"] if ref == "plain" else r["ratio_counterpart"]
      paired = r["paired_ratio"] if ref == "plain" else r["paired_ratio_counterpart"]
      limit = _limit(VARIANTS[v], cfg["num_modalities"])
      res.append(dict(variant=v, reference=ref, limit=limit, ratio=ratio, paired_ratio=paired,
                      met=bool(ratio <= limit)))
  return res


def resolve_variants(requested):
  variants = list(requested or VARIANTS)
  unknown = set(variants) - set(VARIANTS)
  if unknown:
    raise SystemExit(f"unknown variants {sorted(unknown)}; choose from {tuple(VARIANTS)}")
  needed = set(variants) | {"plain"}
  for v in list(needed):
    while VARIANTS[v].counterpart is not None:
      v = VARIANTS[v].counterpart
      needed.add(v)
  return [v for v in VARIANTS if v in needed]


def markdown(result) -> str:
  configs = result["configs"]
  variants = [v for v in VARIANTS if any(v in c["variants"] for c in configs)]
  ms_heads = [f"M={c['num_modalities']}" for c in configs]

  def row(cells):
    return "| " + " | ".join(cells) + " |"

  lines = ["Wall clock per step (median), ratio to plain, ratio to the counterpart "
           "(paired median in brackets):", "",
           row(["variant", "counterpart"] + ms_heads), "|---|---|" + "---|" * len(configs)]
  for v in variants:
    cells = [v, VARIANTS[v].counterpart or "-"]
    for c in configs:
      r = c["variants"].get(v)
      if r is None:
        cells.append("-")
        continue
      cell = f"{r['ms']:.2f} ms, **{r['ratio']:.2f}x**"
      if "ratio_counterpart" in r and VARIANTS[v].counterpart != "plain":
        cell += f", {r['ratio_counterpart']:.3f}x cp ({r['paired_ratio_counterpart']:.3f}x)"
      elif "ratio_counterpart" in r:
        cell += f" ({r['paired_ratio_counterpart']:.3f}x)"
      cells.append(cell)
    lines.append(row(cells))
  lines += ["", "Process CPU time ratio / XLA FLOP ratio to the counterpart (plain for plain), "
                "executed HLO ops, compile seconds:", "",
            row(["variant"] + ms_heads), "|---|" + "---|" * len(configs)]
  for v in variants:
    cells = [v]
    for c in configs:
      r = c["variants"].get(v)
      if r is None:
        cells.append("-")
        continue
      cr = r.get("cpu_ratio_counterpart", r["cpu_ratio"])
      fr = r.get("flops_ratio_counterpart", r["flops_ratio"])
      cells.append(f"{cr:.2f}x / {fr:.2f}x, {r['hlo_ops']} ops, {r['compile_s']:.1f} s")
    lines.append(row(cells))
  lines += ["", f"Targets ({TARGET}x unless given; K-objective methods 1.1 x (1 + 2K) / 3; "
            f"SAM and M-SAM 2.1x):", "",
            row(["M", "variant", "reference", "limit", "ratio", "paired", "met"]),
            "|---|---|---|---|---|---|---|"]
  for c in configs:
    for t in c["targets"]:
      lines.append(row([str(c["num_modalities"]), t["variant"], t["reference"], f"{t['limit']:.2f}",
                        f"{t['ratio']:.3f}", f"{t['paired_ratio']:.3f}",
                        "ok" if t["met"] else "**MISS**"]))
  return "\n".join(lines)


def main(args):
  variants = resolve_variants(args.variants)
  rounds = args.rounds or (7 if args.quick else 31)
  steps = args.steps or (10 if args.quick else 20)
  info = device_info()
  log = lambda s: print(s, file=sys.stderr, flush=True)
  log(f"method_overhead on {info['platform']} ({info['device_kind']}), jax {info['jax_version']}, "
      f"{info['cpu_count']} CPUs; {rounds} rounds x {steps} steps per variant")
  load_before = loadavg()
  t0 = time.perf_counter()
  configs = [bench_config(m, args, variants, rounds, steps, log) for m in args.modalities]
  cfg = default_config()
  result = dict(
      benchmark="method_overhead", created=time.strftime("%Y-%m-%dT%H:%M:%S%z"), quick=args.quick,
      command=" ".join(["python", "benchmarks/method_overhead.py"] + sys.argv[1:]),
      device=info, loadavg_before=load_before, loadavg_after=loadavg(),
      setup=dict(batch=args.batch, hidden_dim=args.hidden_dim, feature_dim=args.feature_dim,
                 classes=args.classes, dtype=args.dtype,
                 encoder={"resnet18": "ResNet-18 per modality (GroupNorm), CREMA-D shapes",
                          "cnn": "the small CNN per modality, CREMA-D shapes",
                          "mlp": "MLP: LayerNorm -> Linear -> GELU -> Linear"}[args.encoder],
                 shapes={n: list(s) for n, s in modality_dims(args.modalities[0], args.dims,
                                                              args).items()},
                 fusion="concat", optimizer=cfg.optimizer.to_dict(),
                 method_settings={m: cfg.method[m].to_dict() for m in methods.REGISTRY
                                  if m in cfg.method},
                 steps_per_epoch=STEPS_PER_EPOCH, total_steps=TOTAL_STEPS,
                 rounds=rounds, steps_per_sample=steps,
                 statistic="median over rounds of the mean step time of a sample; paired = "
                           "median over rounds of the per-round ratio"),
      variants={v: dict(method=VARIANTS[v].method, unimodal=VARIANTS[v].unimodal,
                        counterpart=VARIANTS[v].counterpart, target=list(VARIANTS[v].target),
                        overrides=dict(VARIANTS[v].overrides), note=VARIANTS[v].note)
                for v in variants},
      targets=dict(limit=TARGET, rule="ratio of medians to each variant in its 'target' <= limit",
                   checked={v: list(VARIANTS[v].target) for v in variants if VARIANTS[v].target}),
      configs=configs, wall_s=time.perf_counter() - t0)
  checks = [(c["num_modalities"], t) for c in configs for t in c["targets"]]
  result["all_targets_met"] = all(t["met"] for _, t in checks)
  name = "method_overhead" + ("" if args.encoder == "mlp" and args.dtype == "float32" else
                              f"_{args.encoder}_{args.dtype}")
  return report(result, benchmark=name, info=info, args=args,
                load_before=load_before, markdown=markdown(result))

if __name__ == "__main__":
  main(ARGS)
