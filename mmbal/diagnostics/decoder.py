"""Modality-bias diagnostics for decoder (image + question -> answer token) models.

Works on any ``apply(params, image, tokens) -> logits [B, T, V]`` (a decoder VLM; the
answer is predicted by the logits at ``answer_position``). Batches are dicts of host
arrays: ``image [B, H, W, C]``, ``tokens [B, T]`` ints, ``answer [B]`` (the answer's
token id), ``answer_position [B]``, optional ``prior_answer [B]`` (the token id the
language prior gives) and optional ``mask [B]`` (0 marks padding rows, ignored everywhere).

**Answer vocabulary.** Scores read the logits at ``answer_position`` restricted to
``answer_ids``: the argmax and the softmax (cross-entropy, KL) are over the answer tokens
only. A decoder's full softmax also puts mass on non-answer tokens (punctuation, PAD,
question words), which says nothing about which *answer* it prefers and would make the
distributions of two inputs incomparable; restricting is the multiple-choice reading.

**Removing the image** (``blind``; every result names the one used, as
``DecoderDiagnosis.blind_detail``; zeroed visual tokens are model-specific and far out of
distribution, so they are not offered on a generic ``apply``):

* ``"blank"``: a constant image; by default every pixel is the data's per-channel mean
  pixel value (a uniform image of the average colour), or ``blank_value`` (a scalar or
  ``[C]``). The recommended default (mllm_bias.md §3, §5.5);
* ``"mean"``: the mean image over the evaluated (real) examples;
* ``"noise"``: i.i.d. Gaussian pixels with the data's per-channel pixel mean and std
  (seeded; a fresh draw per example);
* ``"permuted"``: another example's image (a seeded within-batch derangement, any question;
  the perceptual-score ablation of Gat et al., 2021: in distribution, but the donor's answer
  may coincide with the example's own).

**Measures** (Acc = accuracy, p = the answer-vocabulary softmax, ∅ = the blind image):

* ``accuracy`` Acc(v, q); ``blind_accuracy`` Acc(∅, q); the visual-dependency gap
  ``VD = Acc(v, q) - Acc(∅, q)`` and ``VD / Acc(v, q)`` (question-only baselines, VQA v1);
* MMStar (Chen et al., 2024, Eq. 1-2): multi-modal gain ``MG = S_wv - S_ov`` (= VD on the
  same data) and leakage ``ML = max(0, S_ov - S_t)``, S_t the score of the LM base on the
  questions alone (``text_only``);
* image swap (counterfactual image): the image of another example *with the same question*
  (identical tokens up to and including ``answer_position``), so the donor's answer y' is the
  correct answer for (v', q). Change rate ``P(f(v', q) != f(v, q))``, image-following rate
  ``P(f(v', q) = y')``, own-answer rate ``P(f(v', q) = y)``, and the share of swaps whose
  donor answer differs (the change rate of a model that answers from the image perfectly).
  Partners are a seeded derangement within each group of identical questions in a batch
  (`swap_donors`); examples with no partner in their batch are left out and counted;
* prior-following ``P(f(v, q) = prior(q))`` on full and on blind inputs (with ``prior_answer``);
* visual information gain ``VIG = mean KL(p(.|v, q) || p(.|∅, q))`` in nats (mllm_bias.md §3.2).

Tokens after ``answer_position`` (a teacher-forced answer) are passed unchanged in every
variant: the measures assume, as for any causal decoder, that the answer logits do not see them.

All variants of a batch (full, blind, swapped) run as ONE batched ``apply`` call of 3B
examples inside one jitted function; sums over the real rows are accumulated on device.
`attention_share` and `gradient_norm_shares` are the white-box extras (§3.3).
"""
from __future__ import annotations

import dataclasses
import functools
import math
from typing import Any, Callable, Iterable, Mapping, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from mmbal.diagnostics.variants import peek_batches, shuffle_permutation

BLINDS = ("blank", "mean", "noise", "permuted")
REQUIRED = ("image", "tokens", "answer", "answer_position")


@dataclasses.dataclass(frozen=True)
class DecoderDiagnosis:
  """Dataset-level results of `diagnose_decoder` (floats; None where not measured)."""
  count: int                         # real (unmasked) examples scored
  num_answers: int                   # size of the answer vocabulary
  blind: str                         # how the image was removed (one of BLINDS)
  blind_detail: str                  # the same, with the values used
  accuracy: float                    # Acc(v, q)
  blind_accuracy: float              # Acc(∅, q)
  visual_dependency: float           # VD = Acc(v, q) - Acc(∅, q)
  visual_dependency_normalised: float | None   # VD / Acc(v, q) (None when Acc = 0)
  multimodal_gain: float             # MMStar MG = S_wv - S_ov (= VD on these data)
  loss: float                        # mean answer cross-entropy (nats, answer vocabulary)
  blind_loss: float
  visual_information_gain: float     # mean KL(p(.|v,q) || p(.|∅,q)) in nats
  text_only_accuracy: float | None   # S_t: the LM base's score (None without text_only)
  leakage: float | None              # MMStar ML = max(0, S_ov - S_t)
  prior_following: float | None      # P(f(v, q) = prior(q)) (None without prior_answer)
  blind_prior_following: float | None  # P(f(∅, q) = prior(q))
  swap_count: int                    # examples with a same-question partner (swapped)
  swap_unpaired: int                 # real examples left out: no partner in their batch
  swap_change_rate: float | None     # P(f(v', q) != f(v, q))
  image_following_rate: float | None  # P(f(v', q) = y')
  swap_own_answer_rate: float | None  # P(f(v', q) = y)
  swap_answer_differs: float | None  # P(y' != y) over the swaps

  def to_dict(self) -> dict:
    return dataclasses.asdict(self)

  def to_markdown(self) -> str:
    """A small Markdown table of every measure, headed by how the image was removed."""
    rows = [("examples", str(self.count)),
            ("accuracy Acc(v,q)", _pct(self.accuracy)),
            ("blind accuracy Acc(∅,q)", _pct(self.blind_accuracy)),
            ("visual dependency VD = Acc(v,q) - Acc(∅,q) (= MMStar MG)", _pp(self.visual_dependency)),
            ("VD / Acc(v,q)", _num(self.visual_dependency_normalised)),
            ("visual information gain KL(p(.|v,q) ‖ p(.|∅,q)) (nats)", _num(self.visual_information_gain)),
            ("answer cross-entropy, full / blind (nats)", f"{self.loss:.4f} / {self.blind_loss:.4f}"),
            ("LM-base score S_t / leakage ML = max(0, S_ov - S_t)",
             f"{_pct(self.text_only_accuracy)} / {_pp(self.leakage)}"),
            ("prior-following, full / blind",
             f"{_pct(self.prior_following)} / {_pct(self.blind_prior_following)}"),
            ("image swaps (same question) / unpaired examples", f"{self.swap_count} / {self.swap_unpaired}"),
            ("swap: prediction changed", _pct(self.swap_change_rate)),
            ("swap: follows the donor image's answer y'", _pct(self.image_following_rate)),
            ("swap: keeps its own answer y", _pct(self.swap_own_answer_rate)),
            ("swap: donor answer differs (a perfect visual model's change rate)",
             _pct(self.swap_answer_differs))]
    lines = [f"Image removed for blind scores: {self.blind_detail}. Scores over the "
             f"{self.num_answers}-token answer vocabulary.", "", "| measure | value |", "|---|---:|"]
    return "\n".join(lines + [f"| {_escape(k)} | {v} |" for k, v in rows])


class ImageStatistics(NamedTuple):
  """Pixel statistics of the real examples (host float64)."""
  count: int
  mean_image: np.ndarray     # [H, W, C]
  pixel_mean: np.ndarray     # [C]
  pixel_std: np.ndarray      # [C]


class AttentionShare(NamedTuple):
  share: jax.Array            # [L] mean attention mass on the visual keys
  per_token_ratio: jax.Array  # [L] (A_V / N_V) / (A_T / N_T)


def diagnose_decoder(apply: Callable, params, batches: Iterable[Mapping[str, Any]], *, answer_ids,
                     blind: str = "blank", seed: int = 0, text_only=None, blank_value=None,
                     put_batch: Callable[[dict], dict] | None = None) -> DecoderDiagnosis:
  """Every measure of the module docstring from one pass (one jitted evaluation per batch).

  Args:
    apply: ``apply(params, image, tokens) -> logits [B, T, V]``.
    batches: an iterable of batch dicts (module docstring). ``blind`` in ``"blank"`` (without
      ``blank_value``), ``"mean"`` or ``"noise"`` needs the data's pixel statistics first, so
      the batches must be re-iterable (a list), not a one-pass iterator.
    answer_ids: the answer vocabulary, distinct token ids; every real ``answer`` (and
      ``prior_answer``) must be one of them.
    blind: how the image is removed: one of `BLINDS`.
    seed: seeds the swap partners, the permuted blind and the noise images.
    text_only: S_t of the MMStar leakage: None, a number in [0, 1], or a pair
      ``(text_only_apply, text_params)`` with ``text_only_apply(text_params, tokens) -> logits
      [B, T, V]`` (the LM base, same vocabulary), scored on the same examples.
    blank_value: the constant pixel value of ``blind="blank"`` (scalar or ``[C]``).
    put_batch: places a host batch on devices (e.g. sharded); default ``jnp.asarray``.
  """
  ids = _check_answer_ids(answer_ids)
  if not isinstance(blind, str) or blind not in BLINDS:
    raise ValueError(f"blind: expected one of {BLINDS}, got {blind!r}")
  if blank_value is not None and blind != "blank":
    raise ValueError(f"blank_value: only used with blind='blank', got blind={blind!r}")
  if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
    raise ValueError(f"seed: expected a non-negative int, got {seed!r}")
  text_apply, text_params, given_text = _parse_text_only(text_only)
  first, batches, one_pass = peek_batches(batches)
  has_prior = "prior_answer" in first
  _check_batch(first, "batch 0", ids, has_prior)
  channels = np.shape(first["image"])[-1]
  if blank_value is not None:
    blank_value = np.asarray(blank_value, np.float32)
    if blank_value.ndim > 1 or blank_value.size not in (1, channels):
      raise ValueError(f"blank_value: expected a scalar or [{channels}] (one per channel), "
                       f"got shape {blank_value.shape}")
  _check_logits(apply, (params, first["image"], first["tokens"]), first, ids, "apply")
  if text_apply is not None:
    _check_logits(text_apply, (text_params, first["tokens"]), first, ids, "text_only")
  fill, detail = _blind_fill(blind, blank_value, batches, one_pass, seed)

  put = put_batch or (lambda b: {k: jnp.asarray(v) for k, v in b.items()})
  key, totals = jax.random.key(seed), None
  for i, batch in enumerate(batches):
    if i:
      _check_batch(batch, f"batch {i}", ids, has_prior)
    mask = _mask_of(batch)
    donor, paired = swap_donors(batch["tokens"], batch["answer_position"], mask, seed=(seed, i))
    host = {k: np.asarray(batch[k]) for k in REQUIRED + (("prior_answer",) if has_prior else ())}
    host.update(mask=mask, donor=donor.astype(np.int32), paired=paired)
    sums = _batch_sums(params, text_params, put(host), fill, jnp.asarray(ids),
                       jax.random.fold_in(key, i), apply=apply, text_apply=text_apply, blind=blind)
    totals = sums if totals is None else jax.tree.map(jnp.add, totals, sums)
  t = {k: float(v) for k, v in jax.device_get(totals).items()}
  return _diagnosis(t, len(ids), blind, detail, given_text, text_apply is not None, has_prior)


def swap_donors(tokens, answer_position, mask=None, *, seed=0) -> tuple[np.ndarray, np.ndarray]:
  """``(donor [B], paired [B] bool)``: whose image each example gets in the image swap.

  Examples are grouped by their question (the tokens up to and including
  ``answer_position``, and that position). Within each group of two or more real examples the
  rows are put in a random order (``np.random.default_rng(seed)``) and each takes the image of
  the next one, cyclically: a derangement, so no example keeps its own image and the donor's
  answer is correct for the recipient's question. Real examples alone in their group, and
  padding rows, have ``paired`` False (and are their own donor).
  """
  tokens = np.asarray(tokens).astype(np.int64)
  pos = np.asarray(answer_position).astype(np.int64)
  size = len(tokens)
  real = np.ones(size, bool) if mask is None else np.asarray(mask).astype(bool)
  prefix = np.where(np.arange(tokens.shape[1]) <= pos[:, None], tokens, -1)
  _, group = np.unique(np.concatenate([pos[:, None], prefix], 1), axis=0, return_inverse=True)
  group = np.where(real, group.reshape(-1), size + np.arange(size))   # padding: its own group
  order = np.lexsort((np.random.default_rng(seed).random(size), group))
  g = group[order]
  start = np.searchsorted(g, g, side="left")
  count = np.searchsorted(g, g, side="right") - start
  donor = np.empty(size, np.int64)
  donor[order] = order[start + (np.arange(size) - start + 1) % count]
  group_size = np.empty(size, np.int64)
  group_size[order] = count
  return donor, real & (group_size >= 2)


def image_statistics(batches: Iterable[Mapping[str, Any]]) -> ImageStatistics:
  """Mean image and per-channel pixel mean/std over the real examples (host, float64)."""
  total = squares = None
  count = 0.0
  for batch in batches:
    real = _mask_of(batch).astype(np.float64)
    image = np.asarray(batch["image"], np.float64)
    s, s2 = np.tensordot(real, image, (0, 0)), np.tensordot(real, image ** 2, (0, 0))
    total, squares = (s, s2) if total is None else (total + s, squares + s2)
    count += real.sum()
  if not count:
    raise ValueError("batches: no real (unmasked) examples")
  mean_image = total / count
  axes = tuple(range(mean_image.ndim - 1))
  pixel_mean = mean_image.mean(axes)
  pixel_var = np.maximum(squares.mean(axes) / count - pixel_mean ** 2, 0.0)
  return ImageStatistics(int(count), mean_image, pixel_mean, np.sqrt(pixel_var))


def answer_logits(logits, answer_position, answer_ids):
  """``[B, K]`` float32 logits of the K answer tokens at each example's answer position."""
  at = jnp.take_along_axis(logits, answer_position[:, None, None], axis=1)[:, 0]
  return at[:, answer_ids].astype(jnp.float32)


@functools.partial(jax.jit, static_argnames=("apply", "text_apply", "blind"))
def _batch_sums(params, text_params, batch, fill, answer_ids, key, *, apply, text_apply, blind):
  """Sums over the batch's real rows of every per-example score (one ``apply`` of 3B rows)."""
  image, tokens = batch["image"], batch["tokens"]
  size, length = tokens.shape
  real = batch["mask"].astype(bool)
  pos = jnp.clip(batch["answer_position"].astype(jnp.int32), 0, length - 1)
  answer = batch["answer"].astype(jnp.int32)
  label = jnp.argmax(answer[:, None] == answer_ids[None], -1)     # index in the answer vocabulary
  blank = _blind_images(image, fill, real, key, blind)
  swapped = image[batch["donor"]]
  logits = apply(params, jnp.concatenate([image, blank, swapped]), jnp.tile(tokens, (3, 1)))
  z_full, z_blind, z_swap = jnp.split(answer_logits(logits, jnp.tile(pos, 3), answer_ids), 3)
  lp_full, lp_blind = jax.nn.log_softmax(z_full), jax.nn.log_softmax(z_blind)
  pred_full, pred_blind, pred_swap = (answer_ids[z.argmax(-1)] for z in (z_full, z_blind, z_swap))
  p_full = jnp.exp(lp_full)
  kl = jnp.where(p_full > 0, p_full * (lp_full - lp_blind), 0.0).sum(-1)

  def total(value, rows=real):
    return jnp.where(rows, value, 0).astype(jnp.float32).sum()

  ce = lambda lp: -jnp.take_along_axis(lp, label[:, None], 1)[:, 0]
  paired = real & batch["paired"]
  donor_answer = answer[batch["donor"]]
  out = dict(count=total(1), correct=total(pred_full == answer), blind_correct=total(pred_blind == answer),
             ce=total(ce(lp_full)), blind_ce=total(ce(lp_blind)), kl=total(kl),
             swaps=total(1, paired), swap_changed=total(pred_swap != pred_full, paired),
             swap_follows=total(pred_swap == donor_answer, paired),
             swap_own=total(pred_swap == answer, paired),
             swap_differs=total(donor_answer != answer, paired))
  if "prior_answer" in batch:
    prior = batch["prior_answer"].astype(jnp.int32)
    out.update(prior=total(pred_full == prior), blind_prior=total(pred_blind == prior))
  if text_apply is not None:
    z_text = answer_logits(text_apply(text_params, tokens), pos, answer_ids)
    out["text_correct"] = total(answer_ids[z_text.argmax(-1)] == answer)
  return out


def _blind_images(image, fill, real, key, blind):
  if blind == "permuted":
    return image[shuffle_permutation(key, real)]
  if blind == "noise":
    value = fill["mean"] + fill["std"] * jax.random.normal(key, image.shape, jnp.float32)
  else:
    value = jnp.broadcast_to(fill["value"], image.shape)
  if jnp.issubdtype(image.dtype, jnp.integer):
    info = jnp.iinfo(image.dtype)
    value = jnp.clip(jnp.round(value), info.min, info.max)
  return value.astype(image.dtype)


def _blind_fill(blind, blank_value, batches, one_pass, seed):
  """The fill arrays of the blind image and a sentence saying what it is."""
  if blind == "permuted":
    return {}, f"permuted: each example gets another example's image (seeded within-batch derangement, seed {seed})"
  if blind == "blank" and blank_value is not None:
    return {"value": blank_value}, f"blank: constant image of the given pixel value {_vec(blank_value)}"
  if one_pass:
    raise ValueError(f"blind={blind!r} needs the data's pixel statistics first and iterates the "
                     "batches twice: pass a list (or another re-iterable)"
                     + (", or give blank_value" if blind == "blank" else ""))
  stats = image_statistics(batches)
  if blind == "blank":
    return ({"value": stats.pixel_mean.astype(np.float32)},
            f"blank: constant image of the data's per-channel mean pixel value {_vec(stats.pixel_mean)}")
  if blind == "mean":
    return ({"value": stats.mean_image.astype(np.float32)},
            f"mean: the mean image over the {stats.count} evaluated examples")
  return ({"mean": stats.pixel_mean.astype(np.float32), "std": stats.pixel_std.astype(np.float32)},
          f"noise: Gaussian pixels with the data's per-channel mean {_vec(stats.pixel_mean)} and std "
          f"{_vec(stats.pixel_std)} (seed {seed})")


def _diagnosis(t, num_answers, blind, detail, given_text, measured_text, has_prior) -> DecoderDiagnosis:
  n = t["count"]
  if not n:
    raise ValueError("batches: every example is masked out (mask all 0)")
  acc, blind_acc = t["correct"] / n, t["blind_correct"] / n
  text = t["text_correct"] / n if measured_text else given_text
  swaps = t["swaps"]
  swap = lambda k: t[k] / swaps if swaps else None
  return DecoderDiagnosis(
      count=int(n), num_answers=num_answers, blind=blind, blind_detail=detail,
      accuracy=acc, blind_accuracy=blind_acc, visual_dependency=acc - blind_acc,
      visual_dependency_normalised=(acc - blind_acc) / acc if acc > 0 else None,
      multimodal_gain=acc - blind_acc, loss=t["ce"] / n, blind_loss=t["blind_ce"] / n,
      visual_information_gain=t["kl"] / n, text_only_accuracy=text,
      leakage=None if text is None else max(0.0, blind_acc - text),
      prior_following=t["prior"] / n if has_prior else None,
      blind_prior_following=t["blind_prior"] / n if has_prior else None,
      swap_count=int(swaps), swap_unpaired=int(n - swaps), swap_change_rate=swap("swap_changed"),
      image_following_rate=swap("swap_follows"), swap_own_answer_rate=swap("swap_own"),
      swap_answer_differs=swap("swap_differs"))


def attention_share(attention, num_visual: int, query_positions, mask=None, *,
                    num_text_visible=None) -> AttentionShare:
  """Per-layer share of the answer query's attention on the visual tokens (mllm_bias.md §3.3 #11).

  ``attention [L, B, H, Tq, Tk]`` (softmax rows; keys: the ``num_visual`` visual tokens first,
  then text), ``query_positions [B]`` the row of each example's answer query (for TinyVLM the
  text index ``answer_position``). With ``a = attention[l, b, h, query_positions[b]]``:

  * ``share[l] = mean_{b, h} A_V``, ``A_V = sum_{j < N_V} a_j`` (N_V = ``num_visual``);
  * ``per_token_ratio[l] = mean_{b,h}(A_V / N_V) / mean_{b,h}(A_T / N_T)``, ``A_T`` the mass
    on the text keys and ``N_T`` the text keys the query can see (``num_text_visible [B]``;
    default ``query_positions + 1``: causal masking with text-only query rows). >1: a visual
    token gets more attention than a text token, on average.

  Means run over the real examples (``mask [B]``) and heads. Caveat (DSMD): both numbers move
  with the token counts (more visual tokens share the same mass), so compare them only at
  matched token counts; in the mllm_bias pilot the raw share did NOT track reliance on the
  image (0.49 for a prior-locked model vs 0.44 for a fully visual one): supporting evidence
  only. Pure jnp (usable inside jit).
  """
  attention = jnp.asarray(attention)
  if attention.ndim != 5:
    raise ValueError(f"attention: expected [L, B, H, Tq, Tk], got shape {attention.shape}")
  layers, size, _, rows, keys = attention.shape
  if isinstance(num_visual, bool) or not isinstance(num_visual, (int, np.integer)) \
      or not 0 < num_visual < keys:
    raise ValueError(f"num_visual: expected an int in [1, {keys}) (Tk = {keys}), got {num_visual!r}")
  query = jnp.asarray(query_positions).astype(jnp.int32)
  if query.shape != (size,):
    raise ValueError(f"query_positions: expected [{size}], got shape {query.shape}")
  if not isinstance(query, jax.core.Tracer) and not (0 <= int(query.min()) and int(query.max()) < rows):
    raise ValueError(f"query_positions: expected rows in [0, {rows}), got {np.asarray(query).tolist()}")
  weight = jnp.ones(size) if mask is None else jnp.asarray(mask).astype(jnp.float32)
  if weight.shape != (size,):
    raise ValueError(f"mask: expected [{size}], got shape {weight.shape}")
  visible = (query + 1 if num_text_visible is None else jnp.asarray(num_text_visible)).astype(jnp.float32)
  row = jnp.take_along_axis(attention, query[None, :, None, None, None], axis=3)[:, :, :, 0]
  a_v = row[..., :num_visual].astype(jnp.float32).sum(-1)          # [L, B, H]
  a_t = row[..., num_visual:].astype(jnp.float32).sum(-1)

  def mean(x):                                                      # over heads, then real examples
    return (x.mean(-1) * weight).sum(-1) / jnp.maximum(weight.sum(), 1.0)

  per_visual, per_text = mean(a_v / num_visual), mean(a_t / jnp.maximum(visible, 1.0)[:, None])
  ratio = jnp.where(per_text > 0, per_visual / jnp.where(per_text > 0, per_text, 1.0),
                    jnp.where(per_visual > 0, jnp.inf, jnp.nan))
  return AttentionShare(mean(a_v), ratio)


def gradient_norm_shares(grads, labels) -> dict:
  """Global gradient norm per parameter group and the groups' shares (mllm_bias.md §3.3 #12).

  ``labels`` is a pytree like ``grads`` with a group name (str) per leaf (e.g.
  `mmbal.labels.param_labels`, or ``vlm_groups``). Returns ``{"norms": {g: ||grad_g||},
  "shares": {g: ||grad_g||^2 / ||grad||^2}, "total": ||grad||}``: shares of the squared
  global norm, which add up to 1 and add over groups. When groups ``"vision"`` and ``"lm"``
  exist it adds ``"vision_side"`` = the norm of vision + projector (V) and
  ``"vision_language_ratio"`` = V / ||grad_lm|| (the pilot: ~0.26-0.44 while a VLM follows the
  language prior, 1.6-3.5 with an alignment loss). Norms are computed with a max-abs rescaling
  (finite for huge gradients); all-zero gradients give shares 0. Pure jnp (usable in jit).
  """
  grad_leaves, treedef = jax.tree.flatten(grads)
  try:
    label_leaves = treedef.flatten_up_to(labels)
  except (ValueError, TypeError) as error:
    raise ValueError(f"labels: expected a pytree with the structure of grads and a group name "
                     f"per leaf ({error})") from None
  if not all(isinstance(g, str) for g in label_leaves):
    raise ValueError(f"labels: every leaf must be a group name (str), got "
                     f"{sorted({type(g).__name__ for g in label_leaves if not isinstance(g, str)})}")
  groups: dict[str, list] = {}
  for g, leaf in zip(label_leaves, grad_leaves):
    groups.setdefault(g, []).append(jnp.asarray(leaf, jnp.float32))
  norms = {g: _norm(leaves) for g, leaves in groups.items()}
  top = functools.reduce(jnp.maximum, norms.values(), jnp.float32(0))
  scale = jnp.where(top > 0, top, 1.0)
  squares = {g: (n / scale) ** 2 for g, n in norms.items()}
  total_square = sum(squares.values())
  denominator = jnp.where(total_square > 0, total_square, 1.0)
  out = dict(norms=norms, shares={g: s / denominator for g, s in squares.items()},
             total=scale * jnp.sqrt(total_square))
  if "vision" in norms and "lm" in norms:
    side = [norms["vision"]] + ([norms["projector"]] if "projector" in norms else [])
    vision = _norm(side)
    lm = norms["lm"]
    out["vision_side"] = vision
    out["vision_language_ratio"] = jnp.where(lm > 0, vision / jnp.where(lm > 0, lm, 1.0),
                                             jnp.where(vision > 0, jnp.inf, 0.0))
  return out


def _norm(leaves) -> jax.Array:
  """Euclidean norm of all the leaves together, rescaled by the max |x| (no overflow)."""
  top = functools.reduce(jnp.maximum, [jnp.max(jnp.abs(x), initial=0.0) for x in leaves])
  scale = jnp.where(top > 0, top, 1.0)
  return scale * jnp.sqrt(sum(jnp.sum(jnp.square(x / scale)) for x in leaves))


def _check_answer_ids(answer_ids) -> np.ndarray:
  ids = np.asarray(answer_ids)
  if ids.ndim != 1 or not ids.size or not np.issubdtype(ids.dtype, np.integer) \
      or (ids < 0).any() or len(np.unique(ids)) != ids.size:
    raise ValueError(f"answer_ids: expected a non-empty 1-D array of distinct non-negative token "
                     f"ids, got {answer_ids!r}")
  return ids.astype(np.int32)


def _parse_text_only(text_only):
  if text_only is None:
    return None, None, None
  if isinstance(text_only, (int, float, np.number)) and not isinstance(text_only, bool):
    if not 0.0 <= float(text_only) <= 1.0:
      raise ValueError(f"text_only: a given score S_t must be in [0, 1], got {text_only!r}")
    return None, None, float(text_only)
  if isinstance(text_only, (tuple, list)) and len(text_only) == 2 and callable(text_only[0]):
    return text_only[0], text_only[1], None
  raise ValueError("text_only: expected None, a score in [0, 1], or a pair (text_only_apply, "
                   f"text_params), got {type(text_only).__name__}")


def _check_batch(batch, where, ids, has_prior):
  if not isinstance(batch, Mapping):
    raise ValueError(f"{where}: expected a dict with keys {REQUIRED}, got {type(batch).__name__}")
  missing = [k for k in REQUIRED if k not in batch]
  if missing:
    raise ValueError(f"{where}: missing {missing} (keys: {sorted(batch)}); expected {REQUIRED} "
                     "and optionally 'prior_answer', 'mask'")
  if has_prior != ("prior_answer" in batch):
    raise ValueError(f"{where}: 'prior_answer' must be in every batch or in none (batch 0 "
                     f"{'has' if has_prior else 'has not'} it)")
  tokens = np.asarray(batch["tokens"])
  if tokens.ndim != 2 or not np.issubdtype(tokens.dtype, np.integer):
    raise ValueError(f"{where}: 'tokens' must be [B, T] ints, got {tokens.dtype} of shape {tokens.shape}")
  size, length = tokens.shape
  image = np.shape(batch["image"])
  if len(image) < 2 or image[0] != size:
    raise ValueError(f"{where}: 'image' must be [B={size}, H, W, C], got shape {image}")
  for k in ("answer", "answer_position") + (("prior_answer",) if has_prior else ()) \
      + (("mask",) if "mask" in batch else ()):
    value = np.asarray(batch[k])
    if value.shape != (size,) or (k != "mask" and not np.issubdtype(value.dtype, np.integer)):
      raise ValueError(f"{where}: {k!r} must be [B={size}] ints, got {value.dtype} of shape {value.shape}")
  real = _mask_of(batch)
  pos = np.asarray(batch["answer_position"])[real]
  if pos.size and (pos.min() < 0 or pos.max() >= length):
    raise ValueError(f"{where}: 'answer_position' must be in [0, T={length}) (the tokens' length), "
                     f"got values in [{pos.min()}, {pos.max()}]")
  for k in ("answer",) + (("prior_answer",) if has_prior else ()):
    outside = np.setdiff1d(np.asarray(batch[k])[real], ids)
    if outside.size:
      raise ValueError(f"{where}: {k!r} has token ids {outside.tolist()[:5]} that are not in answer_ids")


def _check_logits(fn, args, batch, ids, name):
  """Traces ``fn`` (no compile) to check it returns ``[B, T, V]`` logits covering answer_ids."""
  shapes = jax.eval_shape(fn, *args)
  size, length = np.shape(batch["tokens"])
  shape = getattr(shapes, "shape", None)
  if shape is None or len(shape) != 3 or shape[:2] != (size, length):
    raise ValueError(f"{name}: expected logits [B={size}, T={length}, V], got "
                     f"{shape if shape is not None else type(shapes).__name__}")
  if ids.max() >= shape[2]:
    raise ValueError(f"answer_ids: token id {int(ids.max())} is outside {name}'s vocabulary of {shape[2]}")


def _mask_of(batch) -> np.ndarray:
  size = np.shape(batch["tokens"])[0]
  return np.ones(size, bool) if "mask" not in batch else np.asarray(batch["mask"]).astype(bool)


def _vec(x) -> str:
  x = np.atleast_1d(np.asarray(x, np.float64))
  return "(" + ", ".join(f"{v:.4g}" for v in x) + ")" if x.size > 1 else f"{x[0]:.4g}"


def _escape(text: str) -> str:
  return text.replace("|", "\\|")   # a bare | would split the Markdown table cell


def _pct(x) -> str:
  return "n/a" if x is None else f"{100 * x:.2f} %"


def _pp(x) -> str:
  return "n/a" if x is None else f"{100 * x:+.2f} pp"


def _num(x) -> str:
  return "n/a" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.4f}"
