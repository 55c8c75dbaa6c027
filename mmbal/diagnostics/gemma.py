"""The decoder diagnosis of a multimodal Gemma (the ``gemma`` JAX library, ``pip install gemma``).

    from mmbal.diagnostics.gemma import diagnose_gemma, load_gemma

    model, params = load_gemma("Gemma3_4B", "/path/to/gemma3-4b-it")   # your local checkpoint
    report = diagnose_gemma(model, params, tokens, images, answer, answer_ids)
    print(report.to_markdown())

``tokens`` ``[N, L]`` are the tokenised prompts, right-padded with 0, each holding the
``<start_of_image>`` token where its image goes and ending just before the answer; ``images``
``[N, H, W, 3]`` uint8; ``answer_ids`` ``[K]`` the first token of each answer choice, ``answer``
``[N]`` the index of the right one. The model is run under each condition and its answer
logits go to `diagnose_from_logits`: with the image; with NO image (the image token removed,
MMStar's S_ov: multimodal gain, VIG, leakage); with a blank image (the images' mean, the
blind variants); with another example's image (``swap_donor [N]``: the row whose image each
prompt sees, -1 for none; from `swap_donors`: ``np.where(paired, donor, -1)``).
Nothing here imports ``gemma`` except `load_gemma`: any Flax module called as
``model.apply({"params": params}, tokens, images=..., return_last_only=True)`` that returns
``.logits`` works.
"""
from __future__ import annotations

import pathlib

import jax
import numpy as np

from mmbal.diagnostics.decoder import DecoderDiagnosis, diagnose_from_logits

START_OF_IMAGE = 255999   # Gemma 3's <start_of_image> (gm.text.Gemma3Tokenizer.special_tokens)


def load_gemma(model, checkpoint: str):
  """``(model, params)`` from a local checkpoint directory (gemma's orbax format, as
  ``gm.ckpts.save_params`` writes and Kaggle / Hugging Face ship): ``model`` is a
  ``gemma.gm.nn`` architecture name (``"Gemma3_4B"``) or a module instance (your own config)."""
  try:
    from gemma import gm  # pylint: disable=import-outside-toplevel
  except ImportError as error:
    raise ImportError("load_gemma needs the gemma library: pip install gemma") from error
  try:
    load_params = gm.ckpts.load_params
  except AttributeError as error:   # gemma 3.3.0 with kauldron >= 1.4 (checked 2026-12)
    raise ImportError(
        f"load_gemma: gemma's checkpoint loader does not import ({error}); gemma 3.3.0 needs "
        "kauldron.checkpoints.AbstractPartialLoader, which kauldron 1.4 removed. Install the "
        "kauldron your gemma release was built with, or restore the parameters yourself and "
        "pass them to diagnose_gemma") from error
  if isinstance(model, str):
    if not hasattr(gm.nn, model):
      known = sorted(n for n in dir(gm.nn) if n.startswith("Gemma"))
      raise ValueError(f"load_gemma: model {model!r} is not in gemma.gm.nn; expected one of "
                       f"{known} or a module instance")
    model = getattr(gm.nn, model)()
  if not pathlib.Path(checkpoint).exists():
    raise FileNotFoundError(f"load_gemma: checkpoint {checkpoint!r} does not exist (a local "
                            f"directory with the model's parameters)")
  return model, load_params(checkpoint)


def drop_image_tokens(tokens, image_token: int = START_OF_IMAGE) -> np.ndarray:
  """The prompts without their image: every ``image_token`` removed and the text moved left,
  so each row stays right-padded (with 0) to the same length."""
  tokens = np.asarray(tokens)
  out = np.zeros_like(tokens)
  for row, prompt in enumerate(tokens):   # host-side data preparation, once per data set
    kept = prompt[prompt != image_token]
    out[row, :len(kept)] = kept
  return out


def gemma_answer_logits(model, params, tokens, answer_ids, *, images=None,
            batch_size: int = 8) -> np.ndarray:
  """``[N, K]``: the next-token logits of the K answer tokens after each prompt (the last
  non-padding position), in batches of ``batch_size`` (the last batch padded, one compile)."""
  tokens, answer_ids = np.asarray(tokens), np.asarray(answer_ids)
  run = jax.jit(lambda p, t, i: model.apply({"params": p}, t, images=i,
                                            return_last_only=True).logits[:, answer_ids])
  size, out = len(tokens), []
  for start in range(0, size, batch_size):
    index = np.minimum(np.arange(start, start + batch_size), size - 1)
    chunk_images = None if images is None else images[index]
    out.append(np.asarray(run(params, tokens[index], chunk_images)))
  return np.concatenate(out)[:size].astype(np.float32)


def diagnose_gemma(model, params, tokens, images, answer, answer_ids, *,
                   image_token: int = START_OF_IMAGE, swap_donor=None, prior_answer=None,
                   text_only=None, batch_size: int = 8) -> DecoderDiagnosis:
  """The diagnosis of a multimodal Gemma on N prompts (module docstring): four forward passes
  (image, no image, blank image, and the swapped image when ``swap_donor`` is given)."""
  tokens, images = _check(tokens, images, answer, answer_ids, image_token, swap_donor)
  logits = lambda t, i: gemma_answer_logits(model, params, t, answer_ids, images=i,
                                            batch_size=batch_size)
  blank = np.broadcast_to(images.mean(0).round().astype(np.uint8), images.shape)
  swapped = None
  if swap_donor is not None:
    donor = np.asarray(swap_donor)
    swapped = logits(tokens, images[np.where(donor >= 0, donor, np.arange(len(donor)))])
  return diagnose_from_logits(
    logits(tokens, images), answer, no_image=logits(drop_image_tokens(tokens, image_token), None),
    blind=logits(tokens, np.ascontiguousarray(blank)), blind_detail="the images' mean image",
    swapped=swapped, swap_donor=swap_donor, prior_answer=prior_answer, text_only=text_only)


def _check(tokens, images, answer, answer_ids, image_token, swap_donor):
  tokens, images = np.asarray(tokens), np.asarray(images)
  if tokens.ndim != 2 or not np.issubdtype(tokens.dtype, np.integer):
    raise ValueError(f"diagnose_gemma: tokens must be integer [N, L] prompts, got "
                     f"{tokens.dtype} {tokens.shape}")
  if images.ndim != 4 or images.shape[-1] != 3 or images.dtype != np.uint8:
    raise ValueError(f"diagnose_gemma: images must be uint8 [N, H, W, 3] (one per prompt), "
                     f"got {images.dtype} {images.shape}")
  size = len(tokens)
  for name, value in (("images", images), ("answer", answer), ("swap_donor", swap_donor)):
    if value is not None and len(value) != size:
      raise ValueError(f"diagnose_gemma: {name} has {len(value)} rows, tokens has {size}")
  if (np.diff((tokens != 0).astype(int), axis=1) > 0).any():
    row = int(np.nonzero((np.diff((tokens != 0).astype(int), axis=1) > 0).any(1))[0][0])
    raise ValueError(f"diagnose_gemma: prompts must be right-padded with 0 (Gemma reads the "
                     f"answer at the last non-zero token); prompt {row} has a token after a 0")
  if swap_donor is not None and not ((np.asarray(swap_donor) >= -1)
                                     & (np.asarray(swap_donor) < size)).all():
    raise ValueError(f"diagnose_gemma: swap_donor must hold row indices in [0, {size}) or -1")
  per_row = (tokens == image_token).sum(1)
  if (per_row != 1).any():
    row = int(np.nonzero(per_row != 1)[0][0])
    raise ValueError(f"diagnose_gemma: every prompt needs exactly one image token "
                     f"({image_token}) where its image goes; prompt {row} has {per_row[row]}")
  if np.asarray(answer_ids).ndim != 1:
    raise ValueError("diagnose_gemma: answer_ids must be [K], the first token of each choice")
  return tokens, images
