"""Training a `mmbal.models.vlm.TinyVLM`: the answer loss, auxiliary objectives and one jitted,
sharded, donated train step.

    trainer = make_vlm_trainer(model, optax.adam(1e-3), freeze=("lm",),
                               objectives={"align": (alignment_objective(), 1.0)})
    state = trainer.init(seed=0)
    for batch in batches:
      state, metrics = trainer.step(state, batch)

A batch is a dict of arrays with a leading batch axis (the keys of `mmbal.data.prior_vqa`):
``image [B, H, W, C]`` float, ``tokens [B, T]`` int, ``answer [B]`` (the answer token id),
``answer_position [B]`` (the position whose logits predict the answer) and optionally
``question_type [B]``. The step shards every array over the mesh's ``"data"`` axis and keeps
params and optimizer state replicated.

Gradient norms in the metrics (computed before any transform or optimizer):
``grad_norm/<group>`` of the total weighted loss's gradient, ``answer_grad_norm/<group>`` of
the answer cross-entropy's alone (the same values when there are no extra objectives), for
the groups ``vision | projector | lm``, and ``grad_norm_ratio`` / ``answer_grad_norm_ratio``
``= ||g_vision, g_projector|| / ||g_lm||`` (the pilot's "grad-norm ratio V/L"). Frozen groups
still report the gradient that reaches them.
"""
from __future__ import annotations

from typing import Any, Callable, Mapping, NamedTuple, Sequence

import flax.struct
import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx
from jax.sharding import NamedSharding, PartitionSpec as P

from mmbal.diagnostics.decoder import gradient_norm_shares
from mmbal.models.vlm import VLM_GROUPS, TinyVLM, vlm_groups
from mmbal.objectives.vlm_alignment import (counterfactual_hinge, infonce_alignment,
                                            same_rows_targets)
from mmbal.train import sharding as shd
from mmbal.train.step import apply_optimizer

# An objective: fn(model, batch, out) -> scalar, with out = {"logits": [B, T, V] float32,
# "visual_tokens": [B, N, D] (absent in text-only training)}.
Objective = Callable[[TinyVLM, Mapping[str, jax.Array], Mapping[str, jax.Array]], jax.Array]
RESERVED_METRICS = ("loss", "answer", "accuracy", "grad_norm_ratio", "answer_grad_norm_ratio")


# --------------------------------------------------------------------------- losses


def answer_logits(logits, batch):
  """``[B, V]``: the logits at each example's ``answer_position``."""
  position = batch["answer_position"].astype(jnp.int32)
  return jnp.take_along_axis(logits, position[:, None, None], axis=1)[:, 0]


def answer_log_prob(logits, batch):
  """``[B]``: ``log p(answer | image, question)`` (softmax over the whole vocabulary)."""
  logp = jax.nn.log_softmax(answer_logits(logits, batch).astype(jnp.float32), axis=-1)
  return jnp.take_along_axis(logp, batch["answer"].astype(jnp.int32)[:, None], axis=-1)[:, 0]


def answer_cross_entropy(logits, batch):
  """Mean next-token cross-entropy of the answer: ``-1/B sum_i log softmax(z_i[a_i])[y_i]``
  with ``a_i = answer_position`` (the ``?``), ``y_i = answer``, softmax over the vocabulary."""
  return -answer_log_prob(logits, batch).mean()


def answer_accuracy(logits, batch):
  """Share of examples whose argmax at ``answer_position`` (whole vocabulary) is the answer."""
  return (answer_logits(logits, batch).argmax(-1) == batch["answer"]).astype(jnp.float32).mean()


# --------------------------------------------------------------------------- objectives


def alignment_objective(*, temperature: float = 0.1, ignore_ids: Sequence[int] = (0, 1),
                        include_answer: bool = True) -> Objective:
  """Image-caption InfoNCE (`mmbal.objectives.infonce_alignment`), as in the pilot:

  visual feature = mean over the projected visual tokens; caption feature = sum of the LM's
  (float32) token embeddings of the answered question's tokens, skipping ``ignore_ids``
  (PAD = 0 and BOS = 1 by default; add the question's constant words to keep, e.g., only
  the shape and colour tokens). Identical captions in a batch are soft positives
  (`same_rows_targets`). Gradients reach the vision side, the projector and the embeddings.

  ``include_answer=False``: the caption stops at ``answer_position`` (the question alone).
  With the answer token in the caption (the default, the pilot's) the objective supervises
  the vision side with the label itself, so it is not a label-free cross-modal term.
  """
  ignore = jnp.asarray(list(ignore_ids), jnp.int32)

  def objective(model, batch, out):
    tokens = batch["tokens"]
    keep = ~jnp.isin(tokens, ignore)
    if not include_answer:
      keep &= jnp.arange(tokens.shape[1])[None] <= batch["answer_position"][:, None]
    caption = (model.lm.token_embedding(tokens) * keep[..., None]).sum(1)
    visual = out["visual_tokens"].astype(jnp.float32).mean(1)
    targets = same_rows_targets(jnp.where(keep, tokens, -1))
    return infonce_alignment(visual, caption, temperature=temperature, targets=targets)

  return objective


def visual_answer_objective(answer_ids: Sequence[int]) -> Objective:
  """The label-matched control of `alignment_objective`: the answer predicted from the mean
  visual token alone, ``CE(softmax(v E_A^T), y)`` with ``E_A`` the LM's (float32) token
  embeddings of the answers (the read-out is tied to them; no new parameters). It gives the
  vision side the answer supervision that InfoNCE with the answer in its caption carries,
  without any alignment: an alignment effect is one this control does not also show."""
  ids = jnp.asarray(list(answer_ids), jnp.int32)

  def objective(model, batch, out):
    visual = out["visual_tokens"].astype(jnp.float32).mean(1)
    logits = visual @ model.lm.token_embedding(ids).astype(jnp.float32).T
    label = jnp.argmax(batch["answer"][:, None] == ids[None], -1)
    return optax.softmax_cross_entropy_with_integer_labels(logits, label).mean()

  return objective


def counterfactual_objective(*, margin: float = 1.0, shift: int = 1) -> Objective:
  """Counterfactual-image hinge (`mmbal.objectives.counterfactual_hinge`): each question is
  asked again with the image of the example ``shift`` places earlier in the batch
  (``jnp.roll``); pairs count when that example's answer differs (and its question type is
  the same, if the batch has ``question_type``): a proxy for "the images differ in what the
  question asks" (exact for single-object colour questions)."""

  def objective(model, batch, out):
    # Visual tokens do not depend on the text, so rolling them equals encoding the rolled
    # images (same values and gradients) without a second vision forward.
    other = jnp.roll(out["visual_tokens"], shift, axis=0)
    with_other = answer_log_prob(model.decode(other, batch["tokens"]), batch)
    differs = batch["answer"] != jnp.roll(batch["answer"], shift)
    if "question_type" in batch:
      differs &= batch["question_type"] == jnp.roll(batch["question_type"], shift)
    return counterfactual_hinge(answer_log_prob(out["logits"], batch), with_other, differs,
                                margin=margin)

  return objective


def ogm_ge_confidence(model, batch, out, key=None):
  """Extra args for `mmbal.transforms.ogm_ge` with `mmbal.models.vlm.vlm_modality_labels`:
  ``{"confidence": {"text": s_t, "vision": s_v}}``. A decoder has no unimodal heads, so the
  stand-in scores are (no gradient)::

      s_t = sum_i p(y_i | mean image, q_i)                         (blind: the batch's mean image)
      s_v = sum_i max(p(y_i | v_i, q_i) - p(y_i | mean image, q_i), 0)   (what the image adds)
  """
  del key
  tokens = batch["tokens"]
  blank = model.encode_image(batch["image"].mean(0, keepdims=True))   # one image, broadcast
  blank = jnp.broadcast_to(blank, (tokens.shape[0],) + blank.shape[1:])
  p_full = jnp.exp(answer_log_prob(out["logits"], batch))
  p_blind = jnp.exp(answer_log_prob(model.decode(blank, tokens), batch))
  scores = {"text": p_blind.sum(), "vision": jax.nn.relu(p_full - p_blind).sum()}
  return {"confidence": jax.lax.stop_gradient(scores)}


# --------------------------------------------------------------------------- trainer


@flax.struct.dataclass
class VLMTrainState:
  step: jax.Array
  params: Any           # nested dict of arrays (`mmbal.models.vlm.make_vlm_apply`'s params)
  opt_state: Any
  key: jax.Array        # raw PRNG key; step t hands fold_in(key, t) to the transforms


class VLMTrainer(NamedTuple):
  init: Callable[..., VLMTrainState]       # init(seed=0, params=None)
  step: Callable                           # step(state, batch) -> (state, metrics); donates state
  jitted: Callable                         # the jitted step without the batch checks (.lower())
  apply: Callable                          # apply(params, image, tokens, *, return_attention=False)
  model: Callable[[VLMTrainState], TinyVLM]  # the module view of a state (shares its arrays)
  shard_batch: Callable[[dict], dict]      # host batch -> global arrays sharded over "data"
  groups: Any                              # vision | projector | lm labels over the params
  mesh: jax.sharding.Mesh


def _group_norms(grads, labels):
  """``({group: ||grad_group||}, ||(g_vision, g_projector)|| / ||g_lm||)`` for the metrics."""
  found = gradient_norm_shares(grads, labels)
  return found["norms"], found["vision_language_ratio"]


def _check_batch(batch, model: TinyVLM, data_size: int, text_only: bool):
  if not isinstance(batch, Mapping):
    raise ValueError(f"batch must be a dict of arrays, got {type(batch).__name__}")
  required = ("tokens", "answer", "answer_position") + (() if text_only else ("image",))
  missing = [k for k in required if k not in batch]
  if missing:
    raise ValueError(f"batch lacks {missing}; a VLM batch needs {required}")
  tokens = batch["tokens"]
  if np.ndim(tokens) != 2:
    raise ValueError(f"batch['tokens'] must be [B, T], got shape {np.shape(tokens)}")
  size, text_len = np.shape(tokens)
  for key, value in batch.items():
    if not hasattr(value, "shape") or not value.shape or value.shape[0] != size:
      raise ValueError(f"batch[{key!r}] must be an array with leading batch size {size}, got "
                       f"{getattr(value, 'shape', type(value).__name__)}")
  for key in ("answer", "answer_position"):
    if np.ndim(batch[key]) != 1 or not np.issubdtype(batch[key].dtype, np.integer):
      raise ValueError(f"batch[{key!r}] must be an int [B] vector, got {batch[key].dtype} "
                       f"{np.shape(batch[key])}")
  if size % data_size:
    raise ValueError(f"batch size {size} must be divisible by the mesh's data axis ({data_size})")
  if text_len > model.lm.max_text_len:
    raise ValueError(f"batch['tokens'] has text_len {text_len} > the model's max_text_len "
                     f"{model.lm.max_text_len}")
  position = batch["answer_position"]
  if isinstance(position, np.ndarray) and ((position < 0) | (position >= text_len)).any():
    raise ValueError(f"batch['answer_position'] must lie in [0, {text_len})")
  if not text_only:
    model.check_image(batch["image"])


def _step_metrics(weights, values, names, out, batch, grads, answer_grads, groups) -> dict:
  """Losses, answer accuracy and per-group gradient norms of one VLM train step."""
  norms, ratio = _group_norms(grads, groups)
  metrics = dict(loss=weights @ values, answer=values[0],
                 accuracy=answer_accuracy(out["logits"], batch), grad_norm_ratio=ratio)
  metrics.update({n: values[1 + i] for i, n in enumerate(names)})
  metrics.update({f"grad_norm/{g}": v for g, v in norms.items()})
  if answer_grads is not None:
    norms, ratio = _group_norms(answer_grads, groups)
    metrics.update({f"answer_grad_norm/{g}": v for g, v in norms.items()})
    metrics["answer_grad_norm_ratio"] = ratio
  return metrics


def _checked_objectives(objectives, freeze) -> dict:
  """The trainer's objectives as a dict, after checking them and the frozen group names."""
  objectives = dict(objectives or {})
  for name, spec in objectives.items():
    if name in RESERVED_METRICS or "/" in name:
      raise ValueError(f"objective name {name!r} is reserved; avoid {RESERVED_METRICS} and '/'")
    if not (isinstance(spec, tuple) and len(spec) == 2 and callable(spec[0])):
      raise ValueError(f"objectives[{name!r}] must be (fn, weight), got {spec!r}")
  unknown = [g for g in freeze if g not in VLM_GROUPS]
  if unknown:
    raise ValueError(f"freeze names unknown groups {unknown}; expected a subset of {VLM_GROUPS}")
  return objectives


def make_vlm_trainer(model: TinyVLM, optimizer: optax.GradientTransformation, *,
                     mesh: jax.sharding.Mesh | None = None, freeze: Sequence[str] = (),
                     objectives: Mapping[str, tuple[Objective, float]] | None = None,
                     answer_weight: float = 1.0,
                     transform: optax.GradientTransformation | None = None,
                     extra_args: Callable[..., dict] | None = None,
                     text_only: bool = False, answer_grad_norms: bool = True) -> VLMTrainer:
  """The VLM trainer: an init function and ONE jitted train step.

  Loss: ``answer_weight * answer_cross_entropy + sum_k w_k * objective_k`` with
  ``objectives = {name: (fn, w_k)}`` (``fn(model, batch, out) -> scalar``, see
  `alignment_objective`, `counterfactual_objective`); one forward, one backward (a second,
  batched with the first, for ``answer_grad_norm/*`` when there are objectives and
  ``answer_grad_norms``).

  Args:
    model: the `TinyVLM`; its current weights are the initial params (copied).
    optimizer: any optax optimizer (``optax.adam(1e-3)``).
    mesh: a mesh with a ``"data"`` axis (default: `mmbal.train.sharding.make_mesh()` over
      every device). The batch is sharded over ``"data"``, params and optimizer state are
      replicated; the step donates the state.
    freeze: groups (``vision | projector | lm``) that get no update: the optimizer sees only
      the others (``optax.multi_transform`` with ``set_to_zero``) and frozen params are
      carried over unchanged, bitwise.
    transform: an optax transform chained before the optimizer on the full gradient (e.g.
      ``mmbal.transforms.ogm_ge(vlm_modality_labels(model), alpha=0.5)``). Every update gets
      the extra args ``key`` (fresh per step), ``objective_values`` (``[1 + K]``: answer, then
      the objectives in order) and whatever ``extra_args(model, batch, out, key)`` returns
      (e.g. `ogm_ge_confidence`).
    text_only: train the LM alone on the text (`mmbal.models.vlm.lm_only_logits`; no image
      needed in the batch); vision and projector are then frozen.
  Metrics (replicated scalars): ``loss``, ``answer``, ``accuracy``, each objective by name,
  ``grad_norm/<group>``, ``grad_norm_ratio``, ``answer_grad_norm/<group>``,
  ``answer_grad_norm_ratio`` (see the module docstring).
  """
  objectives = _checked_objectives(objectives, freeze)
  frozen_groups = set(freeze) | ({"vision", "projector"} if text_only else set())
  mesh = shd.make_mesh() if mesh is None else mesh
  if "data" not in mesh.axis_names:
    raise ValueError(f"mesh must have a 'data' axis, got axes {mesh.axis_names}")
  data_size = mesh.shape["data"]

  graphdef, params, rest = nnx.split(model, nnx.Param, ...)
  params = nnx.to_pure_dict(params)
  groups = vlm_groups(model, params)
  frozen = jax.tree.map(lambda g: g in frozen_groups, groups)
  if frozen_groups:
    optimizer = optax.multi_transform(
        {"train": optimizer, "frozen": optax.set_to_zero()},
        jax.tree.map(lambda f: "frozen" if f else "train", frozen))
  tx = optax.chain(*([transform] if transform is not None else []), optimizer)
  names = tuple(objectives)
  fns = tuple(objectives[n][0] for n in names)
  weights = jnp.asarray([answer_weight] + [objectives[n][1] for n in names], jnp.float32)

  def merge(params):
    return nnx.merge(graphdef, params, rest)

  def apply(params, image, tokens, *, return_attention: bool = False):
    return merge(params)(image, tokens, return_attention=return_attention)

  def losses(params, batch):
    m = merge(params)
    if text_only:
      out = dict(logits=m.lm(batch["tokens"]))
    else:
      visual = m.encode_image(batch["image"])
      out = dict(logits=m.decode(visual, batch["tokens"]), visual_tokens=visual)
    values = [answer_cross_entropy(out["logits"], batch)] + [fn(m, batch, out) for fn in fns]
    return jnp.stack([jnp.asarray(v, jnp.float32) for v in values]), out

  def train_step(state: VLMTrainState, batch):
    values, vjp_fn, out = jax.vjp(lambda p: losses(p, batch), state.params, has_aux=True)
    if names and answer_grad_norms:   # total and answer-only gradients in one batched VJP
      cotangents = jnp.stack([weights, jnp.zeros_like(weights).at[0].set(1.0)])
      (both,) = jax.vmap(vjp_fn)(cotangents)
      grads = jax.tree.map(lambda g: g[0], both)
      answer_grads = jax.tree.map(lambda g: g[1], both)
    else:
      (grads,) = vjp_fn(weights)
      answer_grads = grads if not names else None
    key = jax.random.fold_in(state.key, state.step)
    extra = dict(key=key, objective_values=values)
    if extra_args is not None:
      extra.update(extra_args(merge(jax.lax.stop_gradient(state.params)), batch,
                              jax.lax.stop_gradient(out), key))
    new_params, opt_state = apply_optimizer(tx, grads, state.opt_state, state.params, **extra)
    new_params = jax.tree.map(lambda f, old, new: old if f else new, frozen, state.params,
                              new_params)
    metrics = _step_metrics(weights, values, names, out, batch, grads, answer_grads, groups)
    return state.replace(step=state.step + 1, params=new_params, opt_state=opt_state), metrics

  replicated = NamedSharding(mesh, P())
  batch_sharding = NamedSharding(mesh, P("data"))
  initial = jax.device_put(params, replicated)

  def init_fn(params, key):
    return VLMTrainState(step=jnp.zeros((), jnp.int32), params=params, opt_state=tx.init(params),
                         key=key)

  init_jit = jax.jit(init_fn, out_shardings=replicated)

  def init(seed: int = 0, params=None) -> VLMTrainState:
    """A fresh state; ``params`` (default: the model's weights at construction) lets one
    compiled trainer serve other initialisations of the same architecture (e.g. seeds)."""
    start = initial if params is None else jax.device_put(params, replicated)
    return init_jit(start, jax.random.PRNGKey(seed))

  step_jit = jax.jit(train_step, in_shardings=(replicated, batch_sharding),
                     out_shardings=(replicated, replicated), donate_argnums=0)

  def shard_batch(batch):
    return shd.global_batch(mesh, batch)   # this process's rows -> global arrays over "data"

  def step(state: VLMTrainState, batch):
    _check_batch(batch, model, data_size, text_only)
    if not all(isinstance(v, jax.Array) for v in batch.values()):
      batch = shard_batch(batch)   # host arrays: one placement, one compiled signature
    return step_jit(state, batch)

  return VLMTrainer(init=init, step=step, jitted=step_jit, apply=apply,
                    model=lambda state: merge(state.params), shard_batch=shard_batch,
                    groups=groups, mesh=mesh)
