"""The README's headline figure: inverted-prior accuracy over training, one panel per factor.

    python -m experiments.mllm_bias.headline --out results/mllm_bias

Reads ``<out>/<experiment>/results.json`` (written by ``python -m experiments.mllm_bias``)
and writes ``<out>/headline.png``.
"""
from __future__ import annotations

import argparse
import json
import pathlib

from experiments.mllm_bias.report import curve

PANELS = (  # (experiment, title, conditions shown; missing ones are skipped)
    ("data", "1. data: thin or noisy visual evidence",
     ("clean (16 tokens)", "duplicated x4 tokens", "small object, 32x32 canvas",
      "low contrast (0.6)", "pixel noise 0.5")),
    ("backbones", "2. backbones: a frozen prior-laden LM",
     ("random LM + random vision", "random LM + pretrained frozen vision",
      "text-pretrained LM, frozen + random vision",
      "prior-free text LM, frozen + random vision")),
    ("objectives", "3. objectives: beyond next-token CE",
     ("next-token CE", "+ InfoNCE image-question alignment", "+ counterfactual-image hinge",
      "+ OGM-GE (mmbal.transforms.ogm_ge)")),
)


def headline(out: pathlib.Path) -> pathlib.Path:
  import matplotlib
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt

  fig, axes = plt.subplots(1, 3, figsize=(15, 3.9), sharey=True)
  for ax, (name, title, shown) in zip(axes, PANELS):
    path = out / name / "results.json"
    if not path.exists():
      ax.set_title(f"{title}\n(not run)", fontsize=10)
      continue
    results = json.loads(path.read_text())
    for condition in shown:
      histories = results["conditions"].get(condition)
      if not histories:
        continue
      steps, mean, std = curve(histories, "ood_accuracy")
      line, = ax.plot(steps, mean, label=f"{condition} (n={len(histories)})")
      ax.fill_between(steps, mean - std, mean + std, color=line.get_color(), alpha=0.15)
    ax.set_title(title, fontsize=10)
    ax.set_xlabel("training step")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="lower right")
  axes[0].set_ylabel("accuracy on the inverted-prior split")
  fig.suptitle("The tiny VLM answers from the language prior first; when it starts using the "
               "image depends on the data, the backbones and the objective (mean ± std over seeds)",
               fontsize=10)
  fig.tight_layout()
  target = out / "headline.png"
  fig.savefig(target, dpi=110)
  plt.close(fig)
  return target


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--out", default="results/mllm_bias")
  print(f"wrote {headline(pathlib.Path(parser.parse_args(argv).out))}")


if __name__ == "__main__":
  main()
