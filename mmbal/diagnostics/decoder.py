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

**Measures** (Acc = accuracy, p = the answer-vocabulary softmax, y = the correct answer):

* ``accuracy`` Acc(v, q) and ``loss`` = mean -log p(y|v, q);
* with the true **no-image** pass (``no_image``: the model without its visual input, as
  MMStar evaluates; Chen et al., 2024, Eq. 1-2): ``no_image_accuracy`` S_ov, multi-modal gain
  ``MG = S_wv - S_ov`` and leakage ``ML = max(0, S_ov - S_t)``, S_t the score of the LM base
  on the questions alone (``text_only``); visual information gain
  ``VIG = mean[-log p(y|q) + log p(y|v, q)]`` in nats, the drop in the correct answer's
  log-perplexity that the image brings (Lee & Hwang, 2026, define VIG from the perplexities
  with and without the image; [UNVERIFIED] whether they take the log ratio, as here, or the
  difference of perplexities);
* with a **blind** stand-in image (above): ``blind_accuracy`` Acc(blind, q), the
  visual-dependency gap ``VD = Acc(v, q) - Acc(blind, q)`` and ``VD / Acc(v, q)``
  (question-only baselines, VQA v1), ``blind_information_gain`` (VIG's form against the
  stand-in) and ``blind_kl = mean KL(p(.|v, q) || p(.|blind, q))`` in nats. A stand-in image is
  not "no image": blind accuracy depends strongly on which stand-in (mllm_bias.md), so these
  are reported under the stand-in's name and never as MMStar's scores;
* image swap (counterfactual image): the image of another example *with the same question*
  (identical tokens up to and including ``answer_position``), so the donor's answer y' is the
  correct answer for (v', q). Change rate ``P(f(v', q) != f(v, q))``, image-following rate
  ``P(f(v', q) = y')``, own-answer rate ``P(f(v', q) = y)``, and the share of swaps whose
  donor answer differs (the change rate of a model that answers from the image perfectly).
  Partners are a seeded derangement within each group of identical questions in a batch
  (`swap_donors`); examples with no partner in their batch are left out and counted;
* prior-following ``P(f(., q) = prior(q))`` on full, blind and no-image inputs (with
  ``prior_answer``).

Tokens after ``answer_position`` (a teacher-forced answer) are passed unchanged in every
variant: the measures assume, as for any causal decoder, that the answer logits do not see them.

All image variants of a batch (full, swapped, blind) run as ONE batched ``apply`` call of 3B
examples inside one jitted function (plus one ``no_image`` call); sums over the real rows are
accumulated on device. `diagnose_from_logits` computes the same measures from arrays of
answer logits of any model.
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
  """Dataset-level results of `diagnose_decoder` / `diagnose_from_logits` (floats; None where
  the input needed was not given)."""
  count: int                         # real (unmasked) examples scored
  num_answers: int                   # size of the answer vocabulary
  blind: str | None                  # how the image was replaced for the blind scores
  blind_detail: str | None           # the same, with the values used
  accuracy: float                    # Acc(v, q)
  loss: float                        # mean answer cross-entropy -log p(y|v,q) (nats)
  # The image replaced by a stand-in (blank / mean / noise / permuted image):
  blind_accuracy: float | None       # Acc(blind, q)
  blind_loss: float | None
  visual_dependency: float | None    # VD = Acc(v, q) - Acc(blind, q)
  visual_dependency_normalised: float | None   # VD / Acc(v, q) (None when Acc = 0)
  blind_information_gain: float | None  # blind_loss - loss (nats)
  blind_kl: float | None             # mean KL(p(.|v,q) || p(.|blind,q)) (nats)
  blind_prior_following: float | None  # P(f(blind, q) = prior(q))
  # No image at all (the model without its visual input, as MMStar evaluates):
  no_image_accuracy: float | None    # S_ov
  no_image_loss: float | None        # -log p(y|q)
  multimodal_gain: float | None      # MMStar MG = S_wv - S_ov
  visual_information_gain: float | None  # VIG = no_image_loss - loss (nats): the drop in the
  #                                        correct answer's log-perplexity the image brings
  no_image_prior_following: float | None
  text_only_accuracy: float | None   # S_t: the LM base's score
  leakage: float | None              # MMStar ML = max(0, S_ov - S_t)
  prior_following: float | None      # P(f(v, q) = prior(q)) (None without prior answers)
  swap_count: int                    # examples with a same-question partner (swapped)
  swap_unpaired: int                 # real examples left out: no partner
  swap_change_rate: float | None     # P(f(v', q) != f(v, q))
  image_following_rate: float | None  # P(f(v', q) = y')
  swap_own_answer_rate: float | None  # P(f(v', q) = y)
  swap_answer_differs: float | None  # P(y' != y) over the swaps

  def to_dict(self) -> dict:
    return dataclasses.asdict(self)

  def to_markdown(self) -> str:
    """A small Markdown table of every measure given, headed by how the image was removed."""
    rows = [("examples", str(self.count)),
            ("accuracy Acc(v,q)", _pct(self.accuracy)),
            ("answer cross-entropy -log p(y|v,q) (nats)", _num(self.loss))]
    if self.no_image_accuracy is not None:
      rows += [("no-image accuracy S_ov (the model without its image)", _pct(self.no_image_accuracy)),
               ("MMStar multimodal gain MG = S_wv - S_ov", _pp(self.multimodal_gain)),
               ("visual information gain VIG = -log p(y|q) + log p(y|v,q) (nats)",
                _num(self.visual_information_gain)),
               ("LM-base score S_t / MMStar leakage ML = max(0, S_ov - S_t)",
                f"{_pct(self.text_only_accuracy)} / {_pp(self.leakage)}")]
    if self.blind_accuracy is not None:
      rows += [("blind accuracy Acc(blind,q)", _pct(self.blind_accuracy)),
               ("visual dependency VD = Acc(v,q) - Acc(blind,q)", _pp(self.visual_dependency)),
               ("VD / Acc(v,q)", _num(self.visual_dependency_normalised)),
               ("blind information gain -log p(y|blind,q) + log p(y|v,q) (nats)",
                _num(self.blind_information_gain)),
               ("KL(p(.|v,q) ‖ p(.|blind,q)) (nats)", _num(self.blind_kl))]
    if self.prior_following is not None:
      rows.append(("prior-following, full / blind / no image",
                   f"{_pct(self.prior_following)} / {_pct(self.blind_prior_following)} / "
                   f"{_pct(self.no_image_prior_following)}"))
    if self.swap_count or self.swap_unpaired:
      rows += [("image swaps (same question) / unpaired examples", f"{self.swap_count} / {self.swap_unpaired}"),
               ("swap: prediction changed", _pct(self.swap_change_rate)),
               ("swap: follows the donor image's answer y'", _pct(self.image_following_rate)),
               ("swap: keeps its own answer y", _pct(self.swap_own_answer_rate)),
               ("swap: donor answer differs (a perfect visual model's change rate)",
                _pct(self.swap_answer_differs))]
    head = (f"Image replaced for the blind scores: {self.blind_detail}. " if self.blind else "")
    lines = [f"{head}Scores over the {self.num_answers}-answer vocabulary.", "",
             "| measure | value |", "|---|---:|"]
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
                     blind: str = "blank", seed: int = 0, no_image: Callable | None = None,
                     text_only=None, blank_value=None,
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
    no_image: ``no_image(params, tokens) -> logits [B, T, V]``: the same model without its
      visual input (for TinyVLM, `mmbal.models.vlm.lm_only_logits`; for a LLaVA-style model,
      the prompt without image tokens). Gives the MMStar scores (S_ov, MG, leakage) and VIG.
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
  if no_image is not None:
    if not callable(no_image):
      raise ValueError(f"no_image: expected a function (params, tokens) -> logits, got "
                       f"{type(no_image).__name__}")
    _check_logits(no_image, (params, first["tokens"]), first, ids, "no_image")
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
                       jax.random.fold_in(key, i), apply=apply, text_apply=text_apply,
                       no_image=no_image, blind=blind)
    totals = sums if totals is None else jax.tree.map(jnp.add, totals, sums)
  t = {k: float(v) for k, v in jax.device_get(totals).items()}
  return _diagnosis(t, len(ids), blind, detail, given_text)


def diagnose_from_logits(logits, answer, *, no_image=None, blind=None, blind_detail: str | None = None,
                         swapped=None, swap_donor=None, prior_answer=None, text_only=None,
                         mask=None) -> DecoderDiagnosis:
  """The diagnosis of ANY model from plain arrays of answer logits.

  Run your model (a PyTorch LLaVA, Qwen-VL, SmolVLM, ...) on the same N multiple-choice or
  short-answer prompts under each condition, keep the logits of the K answer choices (the
  first token of each choice, or summed log-probabilities of whole choices), and pass them as
  numpy arrays:

  Args:
    logits: ``[N, K]`` with the image.
    answer: ``[N]`` index of the correct choice in ``[0, K)``.
    no_image: ``[N, K]`` the prompts without any image (MMStar's S_ov): MG, VIG, leakage.
    blind: ``[N, K]`` with the image replaced by a stand-in (blank, noise, ...); say which in
      ``blind_detail``: VD, blind information gain, KL.
    swapped: ``[N, K]`` with another example's image, and ``swap_donor [N]``: the row whose
      image example i saw, chosen so its answer is correct for i's question (same question,
      e.g. from `swap_donors`); -1 where example i was not swapped.
    prior_answer: ``[N]`` the choice the language prior gives (prior-following rates).
    text_only: ``[N, K]`` logits of the LM base on the text alone (MMStar's S_t), or S_t itself.
    mask: ``[N]`` bools, False rows are ignored.

  Returns the `DecoderDiagnosis` (None for what needs an input not given).
  """
  z = _answer_array(logits, "logits")
  size, num = z.shape
  index = lambda x, name: _index_array(x, name, size, num)
  y = index(answer, "answer")
  arrays = {}
  for name, value in (("no_image", no_image), ("blind", blind), ("swapped", swapped),
                      ("text_only", None if _is_score(text_only) else text_only)):
    if value is not None:
      arrays[name] = _answer_array(value, name, (size, num))
  if (swapped is None) != (swap_donor is None):
    raise ValueError("swapped and swap_donor go together: the swapped logits and, per row, "
                     "whose image it saw")
  if blind_detail is not None and blind is None:
    raise ValueError("blind_detail describes the blind logits: pass blind= too")
  real = np.ones(size, bool) if mask is None else np.asarray(mask).astype(bool)
  if real.shape != (size,):
    raise ValueError(f"mask: expected [{size}], got shape {real.shape}")
  extra = {}
  if swapped is not None:
    donor = np.asarray(swap_donor)
    if donor.shape != (size,) or not np.issubdtype(donor.dtype, np.integer) \
        or donor.min() < -1 or donor.max() >= size:
      raise ValueError(f"swap_donor: expected [{size}] ints in [-1, {size}) (-1: not swapped)")
    extra.update(donor=np.maximum(donor, 0), paired=donor >= 0)
  if prior_answer is not None:
    extra["prior"] = index(prior_answer, "prior_answer")
  given_text = None
  if _is_score(text_only):
    given_text = _parse_text_only(float(text_only))[2]
  sums = jax.jit(answer_sums)(z, y, real, **arrays, **extra)
  t = {k: float(v) for k, v in jax.device_get(sums).items()}
  detail = None if blind is None else (blind_detail or "blind logits given by the caller")
  return _diagnosis(t, num, None if blind is None else "given", detail, given_text)


def _is_score(x) -> bool:
  return isinstance(x, (int, float, np.number)) and not isinstance(x, bool)


def _answer_array(x, name, shape=None) -> np.ndarray:
  z = np.asarray(x, np.float32)
  if z.ndim != 2 or (shape is not None and z.shape != shape) or z.shape[1] < 2:
    want = f"[N={shape[0]}, K={shape[1]}]" if shape else "[N, K] (K >= 2 answers)"
    raise ValueError(f"{name}: expected answer logits {want}, got shape {z.shape}")
  bad = np.argwhere(np.isnan(z) | (z == np.inf))   # -inf: an answer ruled out (e.g. by VCD)
  if bad.size:
    raise ValueError(f"{name}: NaN or +inf logits (first at row {bad[0][0]}, answer {bad[0][1]})")
  empty = np.nonzero(~np.isfinite(z).any(-1))[0]
  if empty.size:
    raise ValueError(f"{name}: every answer is -inf in row {empty[0]}")
  return z


def _index_array(x, name, size, num) -> np.ndarray:
  a = np.asarray(x)
  if a.shape != (size,) or not np.issubdtype(a.dtype, np.integer) or a.min() < 0 or a.max() >= num:
    raise ValueError(f"{name}: expected [{size}] answer indices in [0, {num}), got "
                     f"{a.dtype} of shape {a.shape}")
  return a.astype(np.int32)


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


@functools.partial(jax.jit, static_argnames=("apply", "text_apply", "no_image", "blind"))
def _batch_sums(params, text_params, batch, fill, answer_ids, key, *, apply, text_apply, no_image,
                blind):
  """Sums over the batch's real rows of every per-example score (one ``apply`` of 3B rows)."""
  image, tokens = batch["image"], batch["tokens"]
  length = tokens.shape[1]
  pos = jnp.clip(batch["answer_position"].astype(jnp.int32), 0, length - 1)
  index = lambda token: jnp.argmax(token.astype(jnp.int32)[:, None] == answer_ids[None], -1)
  blank = _blind_images(image, fill, batch["mask"].astype(bool), key, blind)
  logits = apply(params, jnp.concatenate([image, image[batch["donor"]], blank]),
                 jnp.tile(tokens, (3, 1)))
  z_full, z_swap, z_blind = jnp.split(answer_logits(logits, jnp.tile(pos, 3), answer_ids), 3)
  z_none = None if no_image is None else answer_logits(no_image(params, tokens), pos, answer_ids)
  z_text = (None if text_apply is None
            else answer_logits(text_apply(text_params, tokens), pos, answer_ids))
  return answer_sums(z_full, index(batch["answer"]), batch["mask"], blind=z_blind, no_image=z_none,
                     swapped=z_swap, donor=batch["donor"], paired=batch["paired"],
                     prior=index(batch["prior_answer"]) if "prior_answer" in batch else None,
                     text_only=z_text)


def answer_sums(full, answer, mask, *, blind=None, no_image=None, swapped=None, donor=None,
                paired=None, prior=None, text_only=None) -> dict:
  """Sums over the real rows (``mask``) of every per-example score, from answer logits.

  ``full`` / ``blind`` / ``no_image`` / ``swapped`` / ``text_only``: ``[B, K]`` logits over the
  K answers; ``answer`` / ``prior``: ``[B]`` answer indices in ``[0, K)``; ``donor [B]``:
  whose image row b of ``swapped`` saw (so ``answer[donor]`` is y'), ``paired [B]``: which rows
  are swaps. Pure jnp (used inside jit by both entry points).
  """
  real = jnp.asarray(mask).astype(bool)
  lp_full = jax.nn.log_softmax(full.astype(jnp.float32))
  pred = lp_full.argmax(-1)

  def total(value, rows=real):
    return jnp.where(rows, value, 0).astype(jnp.float32).sum()

  ce = lambda lp: -jnp.take_along_axis(lp, answer[:, None], 1)[:, 0]
  out = dict(count=total(1), correct=total(pred == answer), ce=total(ce(lp_full)))
  if prior is not None:
    out["prior"] = total(pred == prior)
  for name, z in (("blind", blind), ("none", no_image)):
    if z is None:
      continue
    lp = jax.nn.log_softmax(z.astype(jnp.float32))
    out.update({f"{name}_correct": total(lp.argmax(-1) == answer), f"{name}_ce": total(ce(lp))})
    if prior is not None:
      out[f"{name}_prior"] = total(lp.argmax(-1) == prior)
    if name == "blind":
      p_full = jnp.exp(lp_full)
      out["blind_kl"] = total(jnp.where(p_full > 0, p_full * (lp_full - lp), 0.0).sum(-1))
  if swapped is not None:
    swaps, pred_swap, donor_answer = real & paired, swapped.argmax(-1), answer[donor]
    out.update(swaps=total(1, swaps), swap_changed=total(pred_swap != pred, swaps),
               swap_follows=total(pred_swap == donor_answer, swaps),
               swap_own=total(pred_swap == answer, swaps),
               swap_differs=total(donor_answer != answer, swaps))
  if text_only is not None:
    out["text_correct"] = total(text_only.argmax(-1) == answer)
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


def _diagnosis(t: dict, num_answers: int, blind, detail, given_text) -> DecoderDiagnosis:
  """The dataset-level measures from the summed scores of `answer_sums`."""
  n = t["count"]
  if not n:
    raise ValueError("every example is masked out (mask all 0)")
  mean = lambda k: t[k] / n if k in t else None
  acc, loss = t["correct"] / n, t["ce"] / n
  blind_acc, blind_loss = mean("blind_correct"), mean("blind_ce")
  none_acc, none_loss = mean("none_correct"), mean("none_ce")
  text = mean("text_correct") if "text_correct" in t else given_text
  swaps = t.get("swaps", 0.0)
  swap = lambda k: t[k] / swaps if swaps else None
  minus = lambda a, b: None if a is None or b is None else a - b
  vd = minus(acc, blind_acc)
  return DecoderDiagnosis(
      count=int(n), num_answers=num_answers, blind=blind, blind_detail=detail,
      accuracy=acc, loss=loss, blind_accuracy=blind_acc, blind_loss=blind_loss,
      visual_dependency=vd,
      visual_dependency_normalised=vd / acc if vd is not None and acc > 0 else None,
      blind_information_gain=minus(blind_loss, loss), blind_kl=mean("blind_kl"),
      blind_prior_following=mean("blind_prior"),
      no_image_accuracy=none_acc, no_image_loss=none_loss, multimodal_gain=minus(acc, none_acc),
      visual_information_gain=minus(none_loss, loss), no_image_prior_following=mean("none_prior"),
      text_only_accuracy=text,
      leakage=None if none_acc is None or text is None else max(0.0, none_acc - text),
      prior_following=mean("prior"),
      swap_count=int(swaps), swap_unpaired=int(n - swaps) if "swaps" in t else 0,
      swap_change_rate=swap("swap_changed"), image_following_rate=swap("swap_follows"),
      swap_own_answer_rate=swap("swap_own"), swap_answer_differs=swap("swap_differs"))


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
