"""PCGrad and MMPareto against the plain step on the PyTorch PCGrad port's benchmark model.

The model of the popular PyTorch PCGrad port's own benchmark (issue 20): three MLP encoders
(inputs 512 / 256 / 128 -> 512 -> 512, ReLU), a fused head on the SUM of the three features
and a unimodal head per encoder; batch 256; objectives [fused, a, b, c] (K = 4). Variants,
each a complete jitted step with donated state (forward, gradients, SGD update):

  plain                 ``jax.grad`` of the summed losses.
  pcgrad/<bw>           `mmbal.objective_grads` with labels (2 backward passes) + `pcgrad`.
  mmpareto/<bw>         the same + `mmpareto` with the modality labels.

``<bw>``: ``backward="vmap"`` or ``"unrolled"``. Timed interleaved (rounds rotate the order);
medians over rounds and ratios to ``plain`` of the same run. Target: <= 2x plain.

  PYTHONPATH=. python benchmarks/projection_overhead.py           # CPU, ~1 minute
  PYTHONPATH=. python benchmarks/projection_overhead.py --quick   # smoke test, tiny sizes

Writes ``benchmarks/results/projection_overhead_<device>[_quick].json`` and a table.
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import time


def _parse_args(argv=None):
  p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  p.add_argument("--device", choices=("cpu", "gpu"), default="cpu")
  p.add_argument("--quick", action="store_true", help="tiny sizes, 2 rounds (smoke test)")
  p.add_argument("--rounds", type=int, default=15)
  p.add_argument("--steps", type=int, default=10)
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

import mmbal  # noqa: E402
from mmbal import transforms  # noqa: E402

try:
  from _timing import device_info, loadavg, report, time_interleaved  # noqa: E402
except ImportError:
  from benchmarks._timing import device_info, loadavg, report, time_interleaved  # noqa: E402

TARGET = 2.0
VARIANTS = ("plain", "pcgrad/vmap", "pcgrad/unrolled", "mmpareto/vmap", "mmpareto/unrolled")


def port_model(inputs: dict, hidden: int, classes: int, key):
  """Params of the port's model: per modality a 2-layer MLP encoder and a head; a fused head."""
  keys = iter(jax.random.split(key, 4 * len(inputs) + 1))
  dense = lambda i, o: {"w": jax.random.normal(next(keys), (i, o)) / np.sqrt(i), "b": jnp.zeros(o)}
  params = {f"enc_{m}": {"l1": dense(d, hidden), "l2": dense(hidden, hidden)}
            for m, d in inputs.items()}
  params["head"] = dense(hidden, classes)
  params.update({f"head_{m}": dense(hidden, classes) for m in inputs})
  return params


def losses(params, batch, names):
  """``[L_fused, L_m...]``: the fused head reads the sum of the encoders' features."""
  dense = lambda q, h: h @ q["w"] + q["b"]
  features = {m: jax.nn.relu(dense(params[f"enc_{m}"]["l2"],
                                   jax.nn.relu(dense(params[f"enc_{m}"]["l1"], batch[m]))))
              for m in names}
  ce = lambda z: optax.softmax_cross_entropy_with_integer_labels(z, batch["label"]).mean()
  return jnp.stack([ce(dense(params["head"], sum(features.values())))]
                   + [ce(dense(params[f"head_{m}"], features[m])) for m in names])


def make_steps(params, names):
  labels = mmbal.labels_from_paths(params, {m: f"_{m}'" for m in names})
  objectives = ("fused",) + names
  steps = {}

  def plain(state, batch):
    params, opt_state = state
    grads = jax.grad(lambda p: losses(p, batch, names).sum())(params)
    updates, opt_state = tx_plain.update(grads, opt_state, params)
    return (optax.apply_updates(params, updates), opt_state), {}

  tx_plain = optax.sgd(1e-3)
  steps["plain"] = (plain, tx_plain)
  for method in ("pcgrad", "mmpareto"):
    head = (transforms.pcgrad(num_objectives=len(objectives), order="fixed") if method == "pcgrad"
            else transforms.mmpareto(names, labels))
    tx = optax.chain(head, optax.sgd(1e-3))
    for backward in ("vmap", "unrolled"):
      def step(state, batch, tx=tx, backward=backward):
        params, opt_state = state
        res = mmbal.objective_grads(lambda p, b: losses(p, b, names), params, batch,
                                    objectives=objectives, labels=labels, backward=backward)
        updates, opt_state = tx.update(res.grads, opt_state, params, objectives=objectives)
        return (optax.apply_updates(params, updates), opt_state), {}
      steps[f"{method}/{backward}"] = (step, tx)
  return steps


def main(args) -> dict:
  start, load_before = time.time(), loadavg()
  inputs = {"a": 32, "b": 16, "c": 8} if args.quick else {"a": 512, "b": 256, "c": 128}
  hidden, batch_size, classes = (32, 16, 10) if args.quick else (512, 256, 10)
  rounds, steps = (2, 2) if args.quick else (args.rounds, args.steps)
  names = tuple(inputs)
  params = port_model(inputs, hidden, classes, jax.random.key(0))
  rng = np.random.default_rng(0)
  batch = {m: jnp.asarray(rng.normal(size=(batch_size, d)), jnp.float32) for m, d in inputs.items()}
  batch["label"] = jnp.asarray(rng.integers(0, classes, batch_size), jnp.int32)
  entries, compile_s = {}, {}
  for name, (fn, tx) in make_steps(params, names).items():
    state = (jax.tree.map(jnp.copy, params), tx.init(params))
    t0 = time.perf_counter()
    compiled = jax.jit(fn, donate_argnums=0).lower(state, batch).compile()
    compile_s[name] = time.perf_counter() - t0
    entries[name] = {"fn": compiled, "state": state}
  wall, cpu = time_interleaved(entries, batch, list(VARIANTS), rounds=rounds, steps=steps)
  median = {v: statistics.median(wall[v]) for v in VARIANTS}
  paired = {v: statistics.median(w / p for w, p in zip(wall[v], wall["plain"])) for v in VARIANTS}
  cpu_ratio = {v: statistics.median(cpu[v]) / statistics.median(cpu["plain"]) for v in VARIANTS}
  rows = ["| variant | ms per step | vs plain (paired) | CPU time vs plain | compile (s) | target |",
          "|---|---|---|---|---|---|"]
  met = {}
  for v in VARIANTS:
    met[v] = v == "plain" or paired[v] <= TARGET
    rows.append(f"| `{v}` | {1e3 * median[v]:.2f} | {paired[v]:.2f}x | {cpu_ratio[v]:.2f}x | "
                f"{compile_s[v]:.1f} | {'—' if v == 'plain' else ('met' if met[v] else 'missed')} |")
  result = dict(benchmark="projection_overhead", device=device_info(), quick=args.quick,
                model=dict(inputs=inputs, hidden=hidden, batch=batch_size, classes=classes),
                rounds=rounds, steps=steps, ms_per_step={v: 1e3 * m for v, m in median.items()},
                paired_vs_plain=paired, cpu_vs_plain=cpu_ratio, compile_s=compile_s,
                target=TARGET, targets_met=met, all_targets_met=all(met.values()),
                wall_s=time.time() - start, loadavg_after=loadavg())
  return report(result, benchmark="projection_overhead", info=result["device"], args=args,
                load_before=load_before, markdown="\n".join(rows))


if __name__ == "__main__":
  main(ARGS)
  sys.exit(0)
