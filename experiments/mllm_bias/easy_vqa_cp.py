"""Visual contrastive decoding on easy-VQA-CP: does contrasting with the no-image pass recover
accuracy when the answer priors change between train and test?

Protocol (fixed before any result was seen):
* Data: every easy-VQA question (the package's train and test sets, `mmbal_easy_vqa`),
  re-split VQA-CP style by `easy_vqa.changing_priors_split` (skew 0.9, split seed 0: the same
  split for every run): per question, the answers frequent in train are rare in test.
* Model: a TinyVLM (64 x 64 images, 8 x 8 patches = 64 visual tokens, d = 64, 2 blocks,
  4 heads), next-token cross-entropy on the answer, adam 1e-3, ``--steps`` steps of 64; one run
  per seed (the model's initialisation and batch order; the split stays fixed).
* Scored on the CP test split, argmax over the 13 answer tokens: the full model, its LM alone
  (no image: the visual prefix removed), and VCD (`contrastive_logits` of the full logits
  against the no-image logits, alpha 1, beta 0.1: the VCD paper's defaults; not tuned, since
  VQA-CP has no out-of-distribution validation split). Also the question-only baseline of
  the re-split (each question's majority answer in train).
* Test: per-seed paired differences (VCD - full) of the number of correct test answers, a
  two-sided Wilcoxon signed-rank test with its exact null (all 2^n sign flips enumerated, so
  ties and zeros are handled), mean with a 95% t interval; the same for VCD - no-image.

  python -m experiments.mllm_bias.easy_vqa_cp --data-dir DIR --seeds 0 1 2 3 4 5 6 7 8 9
  python -m experiments.mllm_bias.easy_vqa_cp ... --report-only     # the saved runs only

Each finished seed is saved (``<out>/easy_vqa_cp/runs/seed<N>.json``) and skipped when run
again; the report is ``<out>/easy_vqa_cp/report.md`` with ``results.json``.
"""
from __future__ import annotations

import argparse
import json
import pathlib
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx
from scipy import stats

from experiments.mllm_bias.common import _batches, _eval_batches, _no_image_apply, _params
from mmbal.data import easy_vqa
from mmbal.diagnostics.contrastive import contrastive_logits
from mmbal.diagnostics.decoder import answer_logits
from mmbal.models.vlm import TinyVLM
from mmbal.train.vlm import make_vlm_trainer

SKEW, SPLIT_SEED = 0.9, 0
KEYS = ("image", "tokens", "answer", "answer_position", "question_type", "prior_answer")
READOUTS = ("full", "no_image", "vcd")


def load(data_dir: str, manual_dir: str | None = None):
  """``(train, test, answer_ids)``: the VQA-CP re-split of every easy-VQA question."""
  builder = easy_vqa.EasyVqa(data_dir=data_dir, manual_dir=manual_dir)
  builder.download_and_prepare()
  splits = [easy_vqa.arrays(builder, s) for s in ("train", "validation", "test")]
  data = {k: np.concatenate([s[k] for s in splits]) for k in splits[0]}
  if data["image"].dtype == np.uint8:
    data["image"] = data["image"].astype(np.float32) / 255.0
  train, test = easy_vqa.changing_priors_split(data, skew=SKEW, seed=SPLIT_SEED)
  return train, test, easy_vqa.vocabulary(builder)


def run(train, test, vocab, seed: int, steps: int, batch: int = 64, dim: int = 64,
        depth: int = 2) -> dict:
  """One seed: train, then the three read-outs' accuracy on the CP test split."""
  model = TinyVLM(vocab_size=vocab.size, image_size=train["image"].shape[1], patch_size=8,
                  dim=dim, depth=depth, heads=4 if dim % 4 == 0 else 1, max_text_len=16,
                  rngs=nnx.Rngs(seed))
  trainer = make_vlm_trainer(model, optax.adam(1e-3))
  state = trainer.init(seed, _params(model))
  batches = _batches({k: train[k] for k in KEYS}, batch, seed)
  for _ in range(steps):
    state, _ = trainer.step(state, next(batches))
  ids = jnp.asarray(vocab.answer_ids)
  no_image = _no_image_apply(model)

  @jax.jit
  def predict(params, image, tokens, position):
    full = answer_logits(trainer.apply(params, image, tokens), position, ids)
    blind = answer_logits(no_image(params, tokens), position, ids)
    return full.argmax(-1), blind.argmax(-1), contrastive_logits(full, blind).argmax(-1)

  chunks = [jax.device_get(predict(state.params, c["image"], c["tokens"], c["answer_position"]))
            for c in _eval_batches({k: test[k] for k in KEYS}, 256)]
  truth = np.searchsorted(vocab.answer_ids, test["answer"])
  correct = {r: np.concatenate([c[i] for c in chunks])[:len(truth)] == truth
             for i, r in enumerate(READOUTS)}
  kinds = test["question_type"]
  return dict(seed=seed, steps=steps, batch=batch, dim=dim, depth=depth, test_size=len(truth),
              correct={r: int(c.sum()) for r, c in correct.items()},
              accuracy={r: float(c.mean()) for r, c in correct.items()},
              per_type={easy_vqa.QUESTION_TYPES[t]: {r: float(c[kinds == t].mean())
                                                     for r, c in correct.items()}
                        for t in np.unique(kinds)})


def paired(a, b, size: int) -> dict:
  """``a - b`` (correct answers out of ``size``) over seeds: the mean accuracy difference, its
  95% t interval, and the two-sided Wilcoxon signed-rank p over every sign flip (exact)."""
  d = np.asarray(a, np.int64) - np.asarray(b, np.int64)
  mean = d.mean() / size
  half = (stats.t.ppf(0.975, len(d) - 1) * d.std(ddof=1) / np.sqrt(len(d)) / size
          if len(d) > 1 else np.nan)
  p = (stats.wilcoxon(d, method=stats.PermutationMethod(n_resamples=2 ** len(d))).pvalue
       if len(d) > 1 and np.any(d != 0) else 1.0)
  return dict(mean=float(mean), ci95=[float(mean - half), float(mean + half)],
              wilcoxon_p=float(p), seeds=len(d))


def report(runs: list[dict], baseline: dict | None, size: int) -> tuple[str, dict]:
  """The table and the paired tests; ``size``: the CP test split's examples (runs saved before
  the counts were kept give them as accuracy x size, exactly)."""
  acc = {r: [x["accuracy"][r] for x in runs] for r in READOUTS}
  hits = {r: [x.get("correct", {}).get(r, round(x["accuracy"][r] * size)) for x in runs]
          for r in READOUTS}
  tests = {"vcd - full": paired(hits["vcd"], hits["full"], size),
           "vcd - no_image": paired(hits["vcd"], hits["no_image"], size)}
  lines = ["# VCD on easy-VQA-CP", "",
           f"{len(runs)} seeds ({', '.join(str(r['seed']) for r in runs)}), "
           f"{runs[0]['steps']} steps of {runs[0]['batch']}, TinyVLM d={runs[0]['dim']} x "
           f"{runs[0]['depth']} blocks; the VQA-CP re-split of easy-VQA (skew {SKEW}, split seed "
           f"{SPLIT_SEED}). Regenerate: `python -m experiments.mllm_bias.easy_vqa_cp --data-dir DIR "
           f"--seeds ... --report-only`.", "",
           "| read-out | CP test accuracy (mean ± std) | yes/no | open |", "|---|---|---|---|"]
  for r in READOUTS:
    per = {t: [x["per_type"].get(t, {}).get(r, np.nan) for x in runs] for t in easy_vqa.QUESTION_TYPES}
    lines.append(f"| {r} | {np.mean(acc[r]):.3f} ± {np.std(acc[r], ddof=1) if len(runs) > 1 else 0:.3f} "
                 f"| {np.nanmean(per['yes/no']):.3f} | {np.nanmean(per['open']):.3f} |")
  if baseline:
    lines.append(f"| question-only baseline (train majority per question) | "
                 f"{baseline['accuracy']:.3f} | {baseline['per_type'].get('yes/no', np.nan):.3f} | "
                 f"{baseline['per_type'].get('open', np.nan):.3f} |")
  lines += ["", "| paired over seeds | mean accuracy difference | 95% t interval | "
            "Wilcoxon signed-rank p (exact) |",
            "|---|---|---|---|"]
  for name, t in tests.items():
    lines.append(f"| {name} | {t['mean']:+.4f} | [{t['ci95'][0]:+.4f}, {t['ci95'][1]:+.4f}] | "
                 f"{t['wilcoxon_p']:.3g} |")
  verdict = tests["vcd - full"]
  helps = verdict["wilcoxon_p"] < 0.05 and verdict["mean"] > 0
  hurts = verdict["wilcoxon_p"] < 0.05 and verdict["mean"] < 0
  lines += ["", "Reading: " + ("VCD raises CP test accuracy over the plain model (p < 0.05)."
                               if helps else "VCD lowers CP test accuracy (p < 0.05)." if hurts
                               else "no difference between VCD and the plain model is shown "
                                    "(p >= 0.05).")]
  return "\n".join(lines) + "\n", dict(runs=runs, tests=tests, question_only=baseline)


def main(argv=None):
  p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  p.add_argument("--data-dir", required=True, help="TFDS data dir (the builder is prepared there)")
  p.add_argument("--manual-dir", default=None, help="easy-VQA files (default: the pip package)")
  p.add_argument("--out", default="results/mllm_bias")
  p.add_argument("--seeds", type=int, nargs="+", default=list(range(10)))
  p.add_argument("--steps", type=int, default=2000)
  p.add_argument("--tiny", action="store_true", help="4 steps of 8, d=16, 1 block (tests)")
  p.add_argument("--report-only", action="store_true")
  args = p.parse_args(argv)
  out = pathlib.Path(args.out) / "easy_vqa_cp"
  (out / "runs").mkdir(parents=True, exist_ok=True)
  train, test, vocab = load(args.data_dir, args.manual_dir)
  size = dict(steps=4, batch=8, dim=16, depth=1) if args.tiny else dict(steps=args.steps)
  wanted = dict(dict(steps=args.steps, batch=64, dim=64, depth=2), **size)
  same = lambda path: all(json.loads(path.read_text()).get(k) == v for k, v in wanted.items())
  runs = []
  for seed in args.seeds:
    path = out / "runs" / f"seed{seed}.json"
    if path.exists() and not same(path):   # another size's run is neither reused nor lost
      if args.report_only:
        continue
      path.rename(path.with_suffix(f".{int(time.time())}.other-size.json"))
    if not path.exists() and not args.report_only:
      start = time.time()
      path.write_text(json.dumps(run(train, test, vocab, seed, **size), indent=1) + "\n")
      print(f"[easy_vqa_cp] seed {seed}: {json.loads(path.read_text())['accuracy']} "
            f"({time.time() - start:.0f} s)", flush=True)
    if path.exists() and same(path):
      runs.append(json.loads(path.read_text()))
  if not runs:
    raise SystemExit(f"no saved runs under {out / 'runs'}")
  baseline = easy_vqa.question_only_baseline(train, test, easy_vqa.QUESTION_TYPES)
  text, result = report(runs, dict(accuracy=float(baseline["accuracy"]),
                                   per_type={k: float(v) for k, v in baseline["per_type"].items()}),
                        len(test["answer"]))
  (out / "report.md").write_text(text)
  (out / "results.json").write_text(json.dumps(result, indent=1) + "\n")
  print(text)
  return result


if __name__ == "__main__":
  main()
