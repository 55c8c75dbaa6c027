"""One training run of the tiny VLM on prior-VQA, evaluated along the way.

A `Setting` says what differs between conditions (the data's visual knobs, the LM and vision
backbones, extra objectives, a balancing transform); a `Budget` says how big and how long
(`Budget()` = the pilot's CPU size, `Budget.tiny()` for tests). `run(setting, budget, seed)`
returns the run's history: one record per evaluation with

* ``id_accuracy`` / ``ood_accuracy``: the ordinary (prior-following) test split and the
  inverted-prior split (the prior answer is never right there);
* ``ood_prior_following``: how often the model answers the language prior on the inverted split;
* ``id_blind_accuracy`` / ``ood_blind_accuracy``: the same with the image removed — replaced by a
  constant image at the data's mean pixel value ("blank", `mmbal.diagnostics.diagnose_decoder`);
* ``ood_image_following``: answers that follow a swapped-in image of the same question;
* ``id_blind_kl``: KL(p(.|image, q) || p(.|blank, q)) over the answer vocabulary (nats; stored
  as ``id_vig`` by runs before the rename: it is not the literature's VIG);
* ``grad_ratio``: ||grad vision + projector|| / ||grad LM|| of the training loss (the answer
  loss plus any auxiliary objective), averaged over the steps since the previous evaluation;
* ``switching_point`` (the last record only, on noise-free images): the ambiguous-evidence
  probe (`ambiguous`), the blend weight at which the trained model stops answering the prior.
"""
from __future__ import annotations

import dataclasses
import functools
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from experiments.mllm_bias import ambiguous
from mmbal import transforms
from mmbal.data.prior_vqa import PriorVQAConfig, generate, shape_words, vocabulary
from mmbal.diagnostics.contrastive import contrastive_logits
from mmbal.diagnostics.decoder import answer_logits, diagnose_decoder
from mmbal.models.vlm import TinyVLM, lm_only_logits, load_pretrained, vlm_modality_labels
from mmbal.train.vlm import (alignment_objective, counterfactual_objective, make_vlm_trainer,
                             ogm_ge_confidence, visual_answer_objective)

LM_CHOICES = ("scratch", "pretrained", "frozen", "frozen_random")   # frozen = pretrained, then
#                                                     frozen; frozen_random = random, frozen
LM_TEXT_CHOICES = ("prior", "uniform")                     # what the LM was pretrained on
VISION_CHOICES = ("trainable", "frozen", "pretrained")    # frozen = random and frozen
OBJECTIVES = ("align", "align_question", "answer_head", "counterfactual")
# align_question: InfoNCE without the answer token; answer_head: its label-matched control
TRANSFORMS = (None, "ogm_ge", "ogm_ge_lm")   # ogm_ge_lm: damps the whole LM, not the embeddings


@dataclasses.dataclass(frozen=True)
class Setting:
  """One experimental condition (``name`` labels it in tables and figures)."""
  name: str
  data: tuple[tuple[str, Any], ...] = ()   # PriorVQAConfig overrides, e.g. (("noise", 0.5),)
  lm: str = "scratch"
  lm_text: str = "prior"
  vision: str = "trainable"
  objectives: tuple[str, ...] = ()
  transform: str | None = None

  def __post_init__(self):
    for field, value, choices in (("lm", self.lm, LM_CHOICES),
                                  ("lm_text", self.lm_text, LM_TEXT_CHOICES),
                                  ("vision", self.vision, VISION_CHOICES),
                                  ("transform", self.transform, TRANSFORMS)):
      if value not in choices:
        raise ValueError(f"Setting {self.name!r}: {field} must be one of {choices}, got {value!r}")
    unknown = set(self.objectives) - set(OBJECTIVES)
    if unknown:
      raise ValueError(f"Setting {self.name!r}: unknown objectives {sorted(unknown)}; "
                       f"expected some of {OBJECTIVES}")


@dataclasses.dataclass(frozen=True)
class Budget:
  """Model size, data size and training length (defaults: the pilot's, ~1 min per run on CPU)."""
  steps: int = 600
  eval_every: int = 50
  batch: int = 128
  learning_rate: float = 1e-3
  dim: int = 64
  depth: int = 2
  heads: int = 4
  patch: int = 4
  num_train: int = 6000
  num_test: int = 500
  lm_pretrain_steps: int = 500
  vision_pretrain_steps: int = 300
  prior: float = 0.8               # P(answer = the question's prior answer) in train / test_id
  base_data: tuple[tuple[str, Any], ...] = ()   # overrides every setting shares

  @classmethod
  def tiny(cls) -> "Budget":
    """A few seconds per run: for tests and smoke runs (numbers are not meaningful)."""
    return cls(steps=20, eval_every=10, batch=32, dim=16, depth=1, heads=2, num_train=256,
               num_test=64, lm_pretrain_steps=10, vision_pretrain_steps=10)

  @classmethod
  def large(cls) -> "Budget":
    """For an accelerator: a 4-block d=128 LM, 4x the data, 2.5x the steps, batch 256."""
    return cls(steps=1500, eval_every=100, batch=256, dim=128, depth=4, heads=4,
               num_train=24000, num_test=2000, lm_pretrain_steps=1000,
               vision_pretrain_steps=600)

  def scaled(self, factor: float) -> "Budget":
    """This budget with ``factor`` times the steps (evaluations scale along)."""
    return dataclasses.replace(self, steps=int(self.steps * factor),
                               eval_every=max(1, int(self.eval_every * factor)))


def data_config(setting: Setting, budget: Budget, seed: int, **extra) -> PriorVQAConfig:
  fields = dict(question_types=("color",), prior=budget.prior, num_train=budget.num_train,
                num_test=budget.num_test, seed=seed)
  fields.update(dict(budget.base_data))
  fields.update(dict(setting.data))
  fields.update(extra)
  return PriorVQAConfig(**fields)


def _batches(data: dict, batch: int, seed: int):
  """Endless shuffled minibatches (a fresh permutation per epoch, seeded)."""
  rng = np.random.default_rng(seed)
  size = len(next(iter(data.values())))
  while True:
    order = rng.permutation(size)
    for start in range(0, size - batch + 1, batch):
      index = order[start:start + batch]
      yield {k: v[index] for k, v in data.items()}


def _eval_batches(data: dict, batch: int):
  """The split in fixed batches; the tail is padded and masked so every example counts once."""
  size = len(data["answer"])
  for start in range(0, size, batch):
    index = np.arange(start, start + batch)
    mask = index < size
    index = np.where(mask, index, 0)
    chunk = {k: v[index] for k, v in data.items()}
    chunk["mask"] = mask.astype(np.float32)
    yield chunk


def tiny_vlm(vocab_size: int, config: PriorVQAConfig, budget: Budget, seed: int) -> TinyVLM:
  """The budget's TinyVLM for the config's images (size after upsampling), seeded."""
  image_size = config.image_size * config.upsample
  return TinyVLM(vocab_size=vocab_size, image_size=image_size, patch_size=budget.patch,
                 dim=budget.dim, depth=budget.depth, heads=budget.heads,
                 max_text_len=16, rngs=nnx.Rngs(seed))


def pretrain_lm(config: PriorVQAConfig, train: dict, budget: Budget, seed: int,
                lm_text: str = "prior") -> TinyVLM:
  """A VLM whose LM was trained on question -> answer text alone (no image): the VLM's own
  training text, with the language prior (``lm_text="prior"``), or the same questions with
  uniform answers (``"uniform"``, the control; the same seed, so the same questions)."""
  vocab_size = vocabulary(config).size
  if lm_text == "uniform":   # every answer equally likely given the question
    config = dataclasses.replace(config, prior=1.0 / len(vocabulary(config).answer_ids_for("color")))
    train = generate(config, "train")
  model = tiny_vlm(vocab_size, config, budget, seed + 1000)
  text = {k: v for k, v in train.items() if k != "image"}
  trainer = _trainer(("lm", vocab_size, config.image_size * config.upsample, budget),
                     lambda: make_vlm_trainer(model, optax.adam(budget.learning_rate),
                                              text_only=True))
  state = trainer.init(seed, _params(model))
  for _, batch in zip(range(budget.lm_pretrain_steps), _batches(text, budget.batch, seed)):
    state, _ = trainer.step(state, batch)
  return trainer.model(state)


class _VisionClassifier(nnx.Module):
  """The VLM's vision encoder with linear colour and shape heads on its mean-pooled patches:
  image-only pretraining of a "strong" vision backbone (no text, no language prior)."""

  def __init__(self, vision, dim: int, num_colors: int, num_shapes: int, *, rngs: nnx.Rngs):
    self.vision = vision
    self.color = nnx.Linear(dim, num_colors, rngs=rngs)
    self.shape = nnx.Linear(dim, num_shapes, rngs=rngs)

  def __call__(self, image):
    pooled = self.vision(image).mean(1)
    return self.color(pooled), self.shape(pooled)


@nnx.jit   # module level: compiled once per architecture, reused by every seed and condition
def _vision_step(classifier, optimizer, image, color, shape):
  def loss_fn(classifier):
    color_logits, shape_logits = classifier(image)
    return (optax.softmax_cross_entropy_with_integer_labels(color_logits, color).mean()
            + optax.softmax_cross_entropy_with_integer_labels(shape_logits, shape).mean())
  loss, grads = nnx.value_and_grad(loss_fn)(classifier)
  optimizer.update(classifier, grads)
  return loss


def train_vision_classifier(config: PriorVQAConfig, data: dict, budget: Budget, seed: int,
                            steps: int) -> _VisionClassifier:
  """The VLM's vision encoder (seeded like the VLM's) with linear colour and shape heads,
  trained for ``steps`` to classify the object in the images of ``data`` (questions unused)."""
  vocab = vocabulary(config)
  colors = np.searchsorted(vocab.answer_ids_for("color"), data["answer"])
  shape_ids = np.asarray([vocab.id(w) for w in shape_words(config)])
  shape_token = data["tokens"][np.arange(len(colors)), data["answer_position"] - 1]
  shapes = np.searchsorted(shape_ids, shape_token)
  host = tiny_vlm(vocab.size, config, budget, seed + 2000)
  classifier = _VisionClassifier(host.vision, budget.dim, len(vocab.answer_ids_for("color")),
                                 len(shape_ids), rngs=nnx.Rngs(seed))
  optimizer = nnx.Optimizer(classifier, optax.adam(budget.learning_rate), wrt=nnx.Param)
  labelled = dict(image=data["image"], color=colors, shape=shapes)
  for _, batch in zip(range(steps), _batches(labelled, budget.batch, seed)):
    _vision_step(classifier, optimizer, batch["image"], batch["color"], batch["shape"])
  return classifier


def pretrain_vision(config: PriorVQAConfig, data: dict, budget: Budget, seed: int):
  """A vision encoder pretrained on the images of ``data`` (the VLM's training split)."""
  return train_vision_classifier(config, data, budget, seed, budget.vision_pretrain_steps).vision


def vision_ceiling(data: tuple, budget: Budget, seed: int) -> float:
  """How well the images alone answer at this difficulty: the inverted-prior (OOD) test
  accuracy of a vision-only colour classifier (the VLM's encoder, linear head) trained for the
  VLM's whole step budget on the same kind of images with prior-free answers (every colour
  equally likely per shape, so nothing but the image informs it). A VLM that stays on the
  prior where this ceiling is low follows the prior rationally, not out of bias."""
  k = len(vocabulary(data_config(Setting("x"), budget, seed)).answer_ids_for("color"))
  config = data_config(Setting("vision only", data=data + (("prior", 1.0 / k),)), budget, seed)
  classifier = train_vision_classifier(config, generate(config, "train"), budget, seed,
                                       budget.steps)
  test = generate(config, "test_ood")
  colors = np.searchsorted(vocabulary(config).answer_ids_for("color"), test["answer"])
  predicted = np.concatenate([np.asarray(_vision_colors(classifier, test["image"][i:i + 256]))
                              for i in range(0, len(colors), 256)])
  return float((predicted == colors).mean())


@nnx.jit
def _vision_colors(classifier, image):
  return classifier(image)[0].argmax(-1)


def run(setting: Setting, budget: Budget, seed: int) -> list[dict]:
  """Trains one condition with one seed; returns its evaluation history (module docstring)."""
  config = data_config(setting, budget, seed)
  vocab = vocabulary(config)
  train = generate(config, "train")
  tests = {"id": generate(config, "test_id"), "ood": generate(config, "test_ood")}
  model = tiny_vlm(vocab.size, config, budget, seed)
  if setting.lm in ("pretrained", "frozen"):
    load_pretrained(model, lm=pretrain_lm(config, train, budget, seed, setting.lm_text).lm)
  if setting.vision == "pretrained":
    load_pretrained(model, vision=pretrain_vision(config, train, budget, seed))
  trainer = _condition_trainer(setting, budget, config, vocab, model)
  state = trainer.init(seed, _params(model))
  answer_ids = vocab.answer_ids_for("color")
  eval_batch = min(budget.batch, 256)
  evaluate = functools.partial(diagnose_decoder, trainer.apply, answer_ids=answer_ids,
                               blind="blank", seed=seed, blank_value=_blank(train))

  history, ratios = [], []
  batches = _batches(train, budget.batch, seed)
  for step in range(1, budget.steps + 1):
    state, metrics = trainer.step(state, next(batches))
    ratios.append(metrics["grad_norm_ratio"])
    if step % budget.eval_every == 0 or step == budget.steps:
      found = {name: evaluate(state.params, list(_eval_batches(split, eval_batch)))
               for name, split in tests.items()}
      history.append(dict(
          step=step,
          id_accuracy=found["id"].accuracy, ood_accuracy=found["ood"].accuracy,
          ood_prior_following=found["ood"].prior_following,
          id_blind_accuracy=found["id"].blind_accuracy,
          ood_blind_accuracy=found["ood"].blind_accuracy,
          ood_image_following=found["ood"].image_following_rate,
          id_blind_kl=found["id"].blind_kl,
          grad_ratio=float(np.mean(jax.device_get(ratios)))))
      ratios = []
  history[-1].update(_contrastive_decoding(trainer.apply, _no_image_apply(model), state.params,
                                           tests["ood"], answer_ids, eval_batch))
  if not config.noise:   # the ambiguous-evidence probe needs the object's exact pixels
    history[-1]["switching_point"] = ambiguous.probe(
        functools.partial(_predict, trainer.apply, state.params, answer_ids, eval_batch),
        config)["switching_point"]
  return history


def _condition_trainer(setting: Setting, budget: Budget, config: PriorVQAConfig, vocab, model):
  """The condition's VLM trainer (frozen groups, auxiliary objectives, transform), compiled
  once per architecture and recipe (`_trainer`)."""
  freeze = (("lm",) if setting.lm.startswith("frozen") else ()) + (
      ("vision",) if setting.vision != "trainable" else ())
  objectives = {}
  if "align" in setting.objectives:
    objectives["align"] = (alignment_objective(), 1.0)
  if "align_question" in setting.objectives:
    objectives["align"] = (alignment_objective(include_answer=False), 1.0)
  if "answer_head" in setting.objectives:
    objectives["answer_head"] = (visual_answer_objective(vocab.answer_ids_for("color")), 1.0)
  if "counterfactual" in setting.objectives:
    objectives["counterfactual"] = (counterfactual_objective(), 1.0)
  transform, extra_args = None, None
  if setting.transform in ("ogm_ge", "ogm_ge_lm"):
    text = "lm" if setting.transform == "ogm_ge_lm" else "embedding"
    transform = transforms.ogm_ge(vlm_modality_labels(model, text=text), alpha=0.5)
    extra_args = ogm_ge_confidence
  key = ("vlm", vocab.size, config.image_size * config.upsample, budget, freeze,
         setting.objectives, setting.transform)
  return _trainer(key, lambda: make_vlm_trainer(
      model, optax.adam(budget.learning_rate), freeze=freeze, objectives=objectives,
      transform=transform, extra_args=extra_args, answer_grad_norms=False))


def step_flops(setting: Setting, budget: Budget) -> float:
  """XLA's FLOP count of one training step of the condition (cost analysis of the compiled
  step; the compute-matched comparisons scale T_escape by it)."""
  config = data_config(setting, budget, 0)
  vocab = vocabulary(config)
  train = generate(dataclasses.replace(config, num_train=budget.batch), "train")
  model = tiny_vlm(vocab.size, config, budget, 0)
  trainer = _condition_trainer(setting, budget, config, vocab, model)
  batch = trainer.shard_batch(next(_batches(train, budget.batch, 0)))
  cost = trainer.jitted.lower(trainer.init(0, _params(model)), batch).compile().cost_analysis()
  return float((cost[0] if isinstance(cost, (list, tuple)) else cost)["flops"])


@functools.partial(jax.jit, static_argnums=0)
def _answers(apply, params, image, tokens, position, answer_ids):
  logits = answer_logits(apply(params, image, tokens), position, answer_ids)
  return answer_ids[logits.argmax(-1)]


def _predict(apply, params, answer_ids, batch: int, images, data) -> np.ndarray:
  """The model's answer token for every example of ``data`` shown ``images``."""
  chunks = _eval_batches({**data, "image": images}, batch)
  out = [np.asarray(_answers(apply, params, c["image"], c["tokens"], c["answer_position"],
                             jnp.asarray(answer_ids))) for c in chunks]
  return np.concatenate(out)[:len(data["answer"])]


def _no_image_apply(model: TinyVLM):
  """``(params, tokens) -> logits``: the trained VLM's LM alone, without the visual prefix."""
  graphdef, _, rest = nnx.split(model, nnx.Param, ...)
  return lambda params, tokens: lm_only_logits(nnx.merge(graphdef, params, rest), tokens)


def _contrastive_decoding(apply, no_image, params, data, answer_ids, batch: int) -> dict:
  """OOD accuracy of the model without its image, and with visual contrastive decoding
  (`contrastive_logits`, alpha 1, beta 0.1) against that no-image pass, at the end of a run."""
  ids = jnp.asarray(answer_ids)

  @jax.jit
  def answers(params, image, tokens, position):
    full = answer_logits(apply(params, image, tokens), position, ids)
    reference = answer_logits(no_image(params, tokens), position, ids)
    return reference.argmax(-1), contrastive_logits(full, reference).argmax(-1)

  none, vcd = zip(*[jax.device_get(answers(params, c["image"], c["tokens"], c["answer_position"]))
                    for c in _eval_batches(data, batch)])
  truth = np.searchsorted(np.asarray(answer_ids), data["answer"])
  size = len(truth)
  return dict(ood_no_image_accuracy=float((np.concatenate(none)[:size] == truth).mean()),
              ood_vcd_accuracy=float((np.concatenate(vcd)[:size] == truth).mean()))


_TRAINERS: dict = {}


def _trainer(key, build):
  """One compiled trainer per architecture and training recipe, reused by every seed (and
  condition) that shares them: compiling dominates a CPU-sized run otherwise."""
  if key not in _TRAINERS:
    _TRAINERS[key] = build()
  return _TRAINERS[key]


def _params(model) -> dict:
  return nnx.to_pure_dict(nnx.state(model, nnx.Param))


def _blank(train: dict):
  """The blank image's value: the training images' mean pixel per channel (fixed per run, so
  every evaluation removes the image the same way)."""
  return train["image"].reshape(-1, train["image"].shape[-1]).mean(0)
