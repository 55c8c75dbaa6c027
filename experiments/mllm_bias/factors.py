"""The three factors of "MLLMs are Deeply Affected by Modality Bias" (Zheng et al., 2025,
arXiv:2505.18657) as experiments on the tiny VLM: their conditions and the claims checked.

Each `Experiment` lists its conditions (`Setting`s) and its *claims*: a claim compares two
conditions on one summary (``T_escape``, the first evaluated step with inverted-prior
accuracy >= 0.5, runs that never escape censored at the budget; or a metric at a step) with a
test over seeds (`judge`); a report calls it reproduced when the Holm-corrected p < 0.05 and
the difference points the claimed way.
"""
from __future__ import annotations

import dataclasses
import math
from typing import Callable, NamedTuple

import numpy as np
from scipy import stats

from experiments.mllm_bias import survival
from experiments.mllm_bias.common import Budget, Setting
from experiments.mllm_bias.report import at_step, escape_step


@dataclasses.dataclass(frozen=True)
class Claim:
  """``better`` beats ``worse`` on ``summary`` (lower T_escape, or higher value)."""
  text: str
  better: str
  worse: str
  summary: str = "escape"        # "escape" | "escape_compute" (T_escape in training FLOPs:
                                 # steps x the condition's step cost) | a metric name
  step: str = "end"              # "end" | "early" (the evaluation closest to a third of the run)


@dataclasses.dataclass(frozen=True)
class Experiment:
  name: str
  title: str
  question: str
  conditions: tuple[Setting, ...]
  claims: tuple[Claim, ...]
  groups: tuple[tuple[str, tuple[str, ...]], ...]   # figure panels: (title, condition names)
  base_data: tuple = ()                                # data overrides shared by all conditions


def early_step(budget: Budget) -> int:
  """The evaluated step closest to a third of the budget (the "early" comparisons)."""
  steps = [s for s in range(budget.eval_every, budget.steps + 1, budget.eval_every)]
  return min(steps, key=lambda s: abs(s - budget.steps / 3))


class Judgement(NamedTuple):
  better: str          # the claimed-better condition's summary (KM median T_escape, or mean)
  worse: str
  test: str            # "log-rank" (T_escape, censored runs kept) | "Mann-Whitney U" (a metric)
  p_value: float       # two-sided, before the correction over a report's claims
  as_claimed: bool     # the difference points the claimed way
  tested: bool = True  # False: too few runs for the test (p is then 1)


def judge(claim: Claim, results: dict, budget: Budget, costs: dict | None = None) -> Judgement:
  """Tests one claim over seeds. T_escape: runs that never escape are censored at the budget
  (`survival`); a log-rank test, and the claim points the right way when the better condition
  escapes more often than expected under no difference. A metric: a two-sided Mann-Whitney U
  test (exact over all splits of the seeds up to 10 + 10, ties included), the better
  condition ranking higher (its U above half the pairs). ``escape_compute``: the same
  log-rank test on T_escape in training TFLOPs (steps x ``costs[condition]``, XLA's FLOPs per
  step), each condition censored at its own budget's compute."""
  better, worse = results[claim.better], results[claim.worse]
  if claim.summary in ("escape", "escape_compute"):
    scale = ((lambda name: costs[name] / 1e12) if claim.summary == "escape_compute"
             else (lambda name: 1.0))
    ta, ea = escape_times(better, budget)
    tb, eb = escape_times(worse, budget)
    ta, tb = [t * scale(claim.better) for t in ta], [t * scale(claim.worse) for t in tb]
    test = survival.log_rank(ta, ea, tb, eb)
    unit = " TFLOP" if claim.summary == "escape_compute" else ""
    number = (lambda x: f"{x:.3g}") if unit else (lambda x: f"{x:.0f}")
    text = lambda m, s: (f"> {number(budget.steps * s)}" if m is None else number(m)) + unit
    return Judgement(f"median {text(survival.km_median(ta, ea), scale(claim.better))}",
                     f"median {text(survival.km_median(tb, eb), scale(claim.worse))}",
                     "log-rank", test.p_value, test.observed_a > test.expected_a)
  step = None if claim.step == "end" else early_step(budget)
  a, b = at_step(better, claim.summary, step), at_step(worse, claim.summary, step)
  if min(len(a), len(b)) < 2:   # no rank test on one run: counted as not shown (p = 1)
    return Judgement(f"mean {np.mean(a):.2f} ({len(a)} runs)", f"mean {np.mean(b):.2f} "
                     f"({len(b)} runs)", "Mann-Whitney U: too few runs", 1.0, False,
                     tested=False)
  splits = math.comb(len(a) + len(b), len(a))   # exact over every split when few (10 + 10)
  method = stats.PermutationMethod(n_resamples=splits) if splits <= 200_000 else "asymptotic"
  test = stats.mannwhitneyu(a, b, alternative="two-sided", method=method)
  # The direction from the ranks the test uses (U of the better condition above its null
  # mean), not from the means, which one outlying seed can flip.
  return Judgement(f"mean {np.mean(a):.2f}", f"mean {np.mean(b):.2f}", "Mann-Whitney U",
                   float(test.pvalue), float(test.statistic) > len(a) * len(b) / 2)


def escape_times(histories, budget: Budget) -> tuple[list[float], list[bool]]:
  """Per run: T_escape, or the budget's last step with ``escaped`` False (censored)."""
  steps = [escape_step(h) for h in histories]
  return [float(budget.steps if s is None else s) for s in steps], [s is not None for s in steps]


def data_experiment() -> Experiment:
  clean = Setting("clean (16 tokens)")
  conditions = (
      clean,
      Setting("duplicated x4 tokens", data=(("upsample", 2),)),
      Setting("small object, 32x32 canvas", data=(("image_size", 32),)),
      Setting("3 grey distractors", data=(("distractors", 3),)),
      Setting("low contrast (0.6)", data=(("color_similarity", 0.6),)),
      Setting("pixel noise 0.5", data=(("noise", 0.5),)),
      Setting("hard: noise 0.4 + distractors + contrast 0.5",
              data=(("noise", 0.4), ("distractors", 3), ("color_similarity", 0.5))),
  )
  escape = "escapes the language prior later than the clean images"
  claims = (
      Claim(f"thin evidence (small object on a large canvas) {escape}", clean.name, conditions[2].name),
      Claim(f"low colour contrast {escape}", clean.name, conditions[4].name),
      Claim(f"pixel noise {escape}", clean.name, conditions[5].name),
      Claim(f"noise + distractors + low contrast {escape}", clean.name, conditions[6].name),
      Claim("pure redundancy (the same image over 4x the tokens) escapes later than the clean "
            "images (the paper's 'redundant vision'; the pilot found the opposite)",
            clean.name, conditions[1].name),
      Claim("grey distractors alone (nuisance that does not touch the queried colour) delay "
            "the escape", clean.name, conditions[3].name),
  )
  groups = (("thin or noisy visual evidence",
             (clean.name, conditions[2].name, conditions[4].name, conditions[5].name,
              conditions[6].name)),
            ("pure redundancy and nuisance", (clean.name, conditions[1].name, conditions[3].name)))
  return Experiment(
      "data", "Factor 1 — data characteristics: compact text, costly vision",
      "Does visual evidence that is thin, noisy or spread over many tokens keep the model on "
      "the language prior for longer, with the text side unchanged?",
      conditions, claims, groups)


def backbone_experiment() -> Experiment:
  lms = (("scratch", "random LM"), ("pretrained", "text-pretrained LM, fine-tuned"),
         ("frozen", "text-pretrained LM, frozen"))
  visions = (("trainable", "random vision"), ("frozen", "random frozen vision"),
             ("pretrained", "pretrained frozen vision"))
  # The grid, less the fine-tuned LM with frozen vision encoders (the pilot found the
  # fine-tuned LM indistinguishable from the random one at this scale).
  conditions = tuple(Setting(f"{lm_text} + {v_text}", lm=lm, vision=v)
                     for lm, lm_text in lms for v, v_text in visions
                     if not (lm == "pretrained" and v != "trainable"))
  control = Setting("prior-free text LM, frozen + random vision", lm="frozen", lm_text="uniform")
  random_frozen = Setting("random LM, frozen + random vision", lm="frozen_random")
  conditions = conditions + (control, random_frozen)
  name = {(c.lm, c.vision): c.name for c in conditions[:-2]}
  claims = (
      Claim("a frozen text-pretrained LM stays on the prior longer than a random LM "
            "(random trainable vision)", name["scratch", "trainable"], name["frozen", "trainable"]),
      Claim("... and reaches a lower inverted-prior accuracy by the end of the budget",
            name["scratch", "trainable"], name["frozen", "trainable"], "ood_accuracy"),
      Claim("a frozen prior-laden LM delays the escape even with a pretrained vision encoder",
            name["scratch", "pretrained"], name["frozen", "pretrained"]),
      Claim("a strong (pretrained) vision encoder with a random LM escapes earlier than a random "
            "vision encoder", name["scratch", "pretrained"], name["scratch", "trainable"]),
      Claim("control: a frozen LM pretrained on prior-FREE text escapes earlier than one "
            "pretrained on text with the prior (the lock-in comes from the stored prior)",
            control.name, name["frozen", "trainable"]),
      Claim("initialising from the text-pretrained LM and fine-tuning it delays the escape "
            "(the pilot found no effect at this scale)", name["scratch", "trainable"],
            name["pretrained", "trainable"]),
      Claim("control: a frozen RANDOM LM escapes earlier than a frozen prior-laden one (freezing "
            "alone does not hold the prior)", random_frozen.name, name["frozen", "trainable"]),
  )
  groups = (("LM: random vs text-pretrained (fine-tuned / frozen); random trainable vision",
             (name["scratch", "trainable"], name["pretrained", "trainable"],
              name["frozen", "trainable"], control.name, random_frozen.name)),
            ("vision: random / frozen / pretrained; random vs frozen LM",
             (name["scratch", "trainable"], name["scratch", "pretrained"],
              name["frozen", "trainable"], name["frozen", "pretrained"])))
  return Experiment(
      "backbones", "Factor 2 — imbalanced backbones: a strong language model, a weak vision side",
      "Does a language model pretrained on text that carries the prior keep the VLM on that "
      "prior (frozen or fine-tuned), and does a stronger vision side counter it?",
      conditions, claims, groups, base_data=(("color_similarity", 0.3),))


def objective_experiment() -> Experiment:
  base = Setting("next-token CE")
  conditions = (base,
                Setting("+ InfoNCE image-question alignment", objectives=("align",)),
                Setting("+ InfoNCE alignment, question only (no answer token)",
                        objectives=("align_question",)),
                Setting("+ visual answer head (label-matched control)", objectives=("answer_head",)),
                Setting("+ counterfactual-image hinge", objectives=("counterfactual",)),
                Setting("+ OGM-GE (mmbal.transforms.ogm_ge)", transform="ogm_ge"),
                Setting("+ OGM-GE on the whole LM (where the prior is stored)",
                        transform="ogm_ge_lm"))
  claims = tuple(
      Claim(f"{c.name.lstrip('+ ')} makes the model leave the prior earlier than CE alone",
            c.name, base.name) for c in conditions[1:]) + tuple(
      Claim(f"{c.name.lstrip('+ ')}: earlier than CE alone at equal training compute",
            c.name, base.name, "escape_compute") for c in conditions[1:]) + tuple(
      Claim(f"{c.name.lstrip('+ ')}: higher inverted-prior accuracy early in training",
            c.name, base.name, "ood_accuracy", "early") for c in conditions[1:])
  groups = (("objectives", tuple(c.name for c in conditions)),)
  return Experiment(
      "objectives", "Factor 3 — training objectives: next-token prediction alone",
      "Does adding a cross-modal term (alignment, counterfactual image) or one of mmbal's "
      "balancing transforms to next-token CE shorten the language-shortcut phase?",
      conditions, claims, groups, base_data=(("color_similarity", 0.3),))


EXPERIMENTS: dict[str, Callable[[], Experiment]] = {
    "data": data_experiment, "backbones": backbone_experiment, "objectives": objective_experiment}
