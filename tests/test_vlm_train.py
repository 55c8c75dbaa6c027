"""The VLM train step: losses, gradient norms, freezing, transforms, sharding, text-only path."""
import math

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

from mmbal.models.vlm import (TinyVLM, lm_only_logits, load_pretrained, make_vlm_apply, vlm_groups,
                              vlm_modality_labels)
from mmbal.objectives import counterfactual_hinge, infonce_alignment, same_rows_targets
from mmbal.train.vlm import (alignment_objective, answer_cross_entropy, answer_log_prob,
                             counterfactual_objective, make_vlm_trainer, ogm_ge_confidence,
                             visual_answer_objective)
from mmbal.transforms import ogm_ge

KW = dict(vocab_size=12, image_size=8, patch_size=4, dim=16, depth=1, heads=2, max_text_len=6)
B = 8


def _batch(seed=0):
  rng = np.random.default_rng(seed)
  tokens = rng.integers(2, 12, (B, 5)).astype(np.int32)
  tokens[:, 4] = rng.integers(8, 12, B)           # the answer follows the "?" at position 3
  return dict(image=rng.uniform(size=(B, 8, 8, 3)).astype(np.float32), tokens=tokens,
              answer=tokens[:, 4].copy(), answer_position=np.full(B, 3, np.int32),
              question_type=np.zeros(B, np.int32))


def test_answer_cross_entropy_hand_computed():
  # Example 0 reads position 1: logits (0, 0, 0), answer 2 -> -log(1/3) = log 3.
  # Example 1 reads position 0: logits (log 2, 0, 0), answer 0 -> -log(2/4) = log 2.
  logits = jnp.array([[[9.0, 9.0, 9.0], [0.0, 0.0, 0.0]],
                      [[math.log(2), 0.0, 0.0], [5.0, -5.0, 0.0]]])
  batch = dict(answer=jnp.array([2, 0]), answer_position=jnp.array([1, 0]))
  np.testing.assert_allclose(answer_cross_entropy(logits, batch), (math.log(3) + math.log(2)) / 2,
                             rtol=1e-6)


def _group_norms(grads, labels):
  sums = {}
  for g, label in zip(jax.tree.leaves(grads), jax.tree.leaves(labels)):
    sums[label] = sums.get(label, 0.0) + float(np.sum(np.square(np.asarray(g, np.float64))))
  return {k: math.sqrt(v) for k, v in sums.items()}


@pytest.fixture(scope="module")
def run(devices):
  """One step of a frozen-LM trainer with both objectives and OGM-GE, plus references."""
  model = TinyVLM(**KW, rngs=nnx.Rngs(0))
  apply, params = make_vlm_apply(model)
  params = jax.tree.map(np.asarray, params)       # host copy of the initial weights
  trainer = make_vlm_trainer(
      model, optax.adam(1e-2), freeze=("lm",),
      objectives={"align": (alignment_objective(), 0.5), "cf": (counterfactual_objective(), 2.0)},
      transform=ogm_ge(vlm_modality_labels(model), alpha=0.5, noise=False),
      extra_args=ogm_ge_confidence)
  state0 = trainer.init(seed=0)
  batch = _batch()
  state1, metrics = trainer.step(state0, batch)
  return dict(model=model, apply=apply, params=params, trainer=trainer, state0=state0,
              state1=state1, metrics=jax.device_get(metrics), batch=batch)


def test_step_losses_and_grad_norms_match_direct_gradients(run):
  model, params, batch, metrics = (run[k] for k in ("model", "params", "batch", "metrics"))
  graphdef, _, rest = nnx.split(model, nnx.Param, ...)
  image, tokens, y = (jnp.asarray(batch[k]) for k in ("image", "tokens", "answer"))

  def terms(p):
    # Written out from the definitions, not with the trainer's objective wrappers.
    m = nnx.merge(graphdef, p, rest)
    logits = m(image, tokens)
    keep = (tokens != 0) & (tokens != 1)                     # captions skip PAD and BOS
    caption = (m.lm.embed.embedding[...][tokens] * keep[..., None]).sum(1)
    visual = m.projector(m.vision(image)).mean(1)
    align = infonce_alignment(visual, caption, targets=same_rows_targets(jnp.where(keep, tokens, -1)))
    rolled = m(jnp.roll(image, 1, axis=0), tokens)            # each question with the previous image
    cf = counterfactual_hinge(answer_log_prob(logits, batch), answer_log_prob(rolled, batch),
                              y != jnp.roll(y, 1))
    return answer_cross_entropy(logits, batch), align, cf

  weights = jnp.array([1.0, 0.5, 2.0])
  # One Jacobian of the three terms (reverse mode, independent of the step's VJP).
  stacked = lambda p: jnp.stack(terms(p))
  values, jacobian = jax.jit(lambda p: (stacked(p), jax.jacrev(stacked)(p)))(params)
  ce, al, c = values
  total = jax.tree.map(lambda j: jnp.tensordot(weights, j, axes=1), jacobian)
  answer = jax.tree.map(lambda j: j[0], jacobian)
  np.testing.assert_allclose([metrics["answer"], metrics["align"], metrics["cf"]], [ce, al, c], rtol=1e-5)
  np.testing.assert_allclose(metrics["loss"], ce + 0.5 * al + 2.0 * c, rtol=1e-5)
  labels = vlm_groups(model)
  total, answer = _group_norms(total, labels), _group_norms(answer, labels)
  for g in ("vision", "projector", "lm"):
    np.testing.assert_allclose(metrics[f"grad_norm/{g}"], total[g], rtol=1e-4)
    np.testing.assert_allclose(metrics[f"answer_grad_norm/{g}"], answer[g], rtol=1e-4)
  vl = math.hypot(total["vision"], total["projector"]) / total["lm"]
  np.testing.assert_allclose(metrics["grad_norm_ratio"], vl, rtol=1e-4)
  assert metrics["cf"] > 0 and metrics["align"] > 0


def test_frozen_group_is_bitwise_unchanged_and_state_is_donated_and_replicated(run):
  state0, state1, params = run["state0"], run["state1"], run["params"]
  jax.tree.map(np.testing.assert_array_equal, jax.device_get(state1.params["lm"]), params["lm"])
  moved = np.abs(np.asarray(state1.params["vision"]["embed"]["kernel"]) - params["vision"]["embed"]["kernel"])
  assert moved.max() > 1e-4
  assert int(state1.step) == 1
  kernel = state1.params["vision"]["embed"]["kernel"]
  assert kernel.sharding.is_fully_replicated and len(kernel.sharding.device_set) == 8
  assert state0.params["vision"]["embed"]["kernel"].is_deleted()      # donated
  # The view of a state is a TinyVLM with the state's weights.
  np.testing.assert_array_equal(run["trainer"].model(state1).projector.kernel[...],
                                state1.params["projector"]["kernel"])


def test_transform_receives_the_step_extra_args(run):
  # OGM-GE got confidence from `ogm_ge_confidence`: rho_text = s_t / s_v with
  # s_t = sum p(y | mean image, q), s_v = sum relu(p(y | v, q) - p(y | mean image, q)).
  apply, params, batch = run["apply"], run["params"], run["batch"]

  forward = jax.jit(apply)

  def p_true(image):
    logits = np.asarray(forward(params, jnp.asarray(image), jnp.asarray(batch["tokens"])), np.float64)
    z = logits[np.arange(B), batch["answer_position"]]
    p = np.exp(z - z.max(-1, keepdims=True))
    return (p / p.sum(-1, keepdims=True))[np.arange(B), batch["answer"]]

  full = p_true(batch["image"])
  blind = p_true(np.broadcast_to(batch["image"].mean(0, keepdims=True), batch["image"].shape))
  s_t, s_v = blind.sum(), np.maximum(full - blind, 0).sum()
  ratios = optax.tree_utils.tree_get(run["state1"].opt_state, "ratios")
  np.testing.assert_allclose([ratios["text"], ratios["vision"]], [s_t / s_v, s_v / s_t], rtol=1e-4)


def test_text_only_pretraining_trains_the_lm_alone(devices):
  model = TinyVLM(**KW, rngs=nnx.Rngs(1))
  trainer = make_vlm_trainer(model, optax.adam(3e-2), text_only=True)
  batch = {k: v for k, v in _batch(1).items() if k != "image"}
  state = trainer.init(seed=0)
  first = jax.device_get(state.params)
  want = answer_cross_entropy(lm_only_logits(model, jnp.asarray(batch["tokens"])), batch)
  losses = []
  for _ in range(12):
    state, metrics = trainer.step(state, batch)
    losses.append(float(metrics["answer"]))
  np.testing.assert_allclose(losses[0], want, rtol=1e-5)
  assert losses[-1] < 0.5 * losses[0]
  for group in ("vision", "projector"):
    jax.tree.map(np.testing.assert_array_equal, jax.device_get(state.params[group]), first[group])
  assert np.abs(np.asarray(state.params["lm"]["embed"]["embedding"]) - first["lm"]["embed"]["embedding"]).max() > 1e-3
  # Plug the pretrained LM into a fresh VLM: its text-only logits are the trained LM's.
  trained = trainer.model(state)
  fresh = load_pretrained(TinyVLM(**KW, rngs=nnx.Rngs(2)), lm=trained.lm)
  tokens = jnp.asarray(batch["tokens"])
  np.testing.assert_allclose(lm_only_logits(fresh, tokens), lm_only_logits(trained, tokens), atol=1e-6)
  state, _ = trainer.step(state, trainer.shard_batch(batch))   # donates the state; the copy stays
  assert np.isfinite(np.asarray(fresh.lm.embed.embedding[...])).all()


def test_bad_configuration_and_batches_are_clear(run):
  model, trainer, state = run["model"], run["trainer"], run["state1"]
  with pytest.raises(ValueError, match="unknown groups"):
    make_vlm_trainer(model, optax.adam(1e-3), freeze=("text",))
  with pytest.raises(ValueError, match="reserved"):
    make_vlm_trainer(model, optax.adam(1e-3), objectives={"loss": (alignment_objective(), 1.0)})
  with pytest.raises(ValueError, match=r"\(fn, weight\)"):
    make_vlm_trainer(model, optax.adam(1e-3), objectives={"align": alignment_objective()})
  batch = _batch()
  for bad, message in [
      ({k: v for k, v in batch.items() if k != "answer"}, "lacks"),
      ({k: v[:4] for k, v in batch.items()}, "divisible by the mesh's data axis"),
      (dict(batch, answer_position=np.full(B, 5, np.int32)), r"answer_position'\] must lie in \[0, 5\)"),
      (dict(batch, answer=batch["answer"].astype(np.float32)), "int"),
      (dict(batch, question_type=np.zeros(3, np.int32)), "leading batch size 8"),
      (dict(batch, image=batch["image"][:, :4]), "image must be"),
  ]:
    with pytest.raises(ValueError, match=message):
      trainer.step(state, bad)


def test_alignment_without_the_answer_token_never_reads_the_answer():
  model = TinyVLM(**KW, rngs=nnx.Rngs(0))
  batch = {k: jnp.asarray(v) for k, v in _batch().items()}
  out = dict(visual_tokens=model.encode_image(batch["image"]))
  other = dict(batch, tokens=batch["tokens"].at[:, 4].set((batch["tokens"][:, 4] - 7) % 4 + 8))
  question_only = alignment_objective(include_answer=False)
  np.testing.assert_allclose(question_only(model, batch, out), question_only(model, other, out))
  # The pilot's caption (with the answer) changes with it.
  assert not np.allclose(alignment_objective()(model, batch, out), alignment_objective()(model, other, out))


def test_visual_answer_head_is_the_tied_readout_of_the_mean_visual_token():
  model = TinyVLM(**KW, rngs=nnx.Rngs(0))
  batch = {k: jnp.asarray(v) for k, v in _batch().items()}
  visual = model.encode_image(batch["image"])
  ids = np.arange(8, 12)                                   # the answers of _batch
  value = visual_answer_objective(ids)(model, batch, dict(visual_tokens=visual))
  # Written out: logits_k = <mean visual token, embedding of answer k>, CE of the answer.
  v = np.asarray(visual, np.float64).mean(1)
  table = np.asarray(model.lm.embed.embedding[...], np.float64)[ids]
  logits = v @ table.T
  log_p = logits - np.log(np.exp(logits - logits.max(1, keepdims=True)).sum(1, keepdims=True)) \
      - logits.max(1, keepdims=True)
  expected = -log_p[np.arange(B), np.asarray(batch["answer"]) - 8].mean()
  np.testing.assert_allclose(float(value), expected, rtol=1e-5)
