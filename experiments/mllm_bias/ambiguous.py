"""The ambiguous-evidence probe: how much a model still leans on the prior after it escaped.

On inverted-prior colour questions (the true colour y is never the prior colour p), the
queried object is repainted in a blend ``(1 - w) * colour(p) + w * colour(y)``. At ``w = 0``
the image shows the prior colour, at ``w = 1`` the true one. A model that reads the image
without bias switches from answering p to answering y at ``w = 0.5`` (the blend is then
equally far from both); a model that still leans on the prior switches later. The
*switching point* is where the share answering y first exceeds the share answering p
(linearly interpolated between the probed weights); 1.0 if it never does.
"""
from __future__ import annotations

from typing import Callable, Sequence

import numpy as np

from mmbal.data.prior_vqa import PriorVQAConfig, generate, palette, vocabulary

WEIGHTS = (0.0, 0.2, 0.4, 0.5, 0.6, 0.8, 1.0)


def blended_images(config: PriorVQAConfig, data: dict, weight: float) -> np.ndarray:
  """``data``'s images with the queried object repainted ``(1 - w) prior + w answer`` colour.

  Needs noise-free images (the object's pixels are found by their exact colour) and colour
  questions only.
  """
  if config.noise:
    raise ValueError("blended_images: needs noise-free images (config.noise = 0)")
  if set(config.question_types) != {"color"}:
    raise ValueError("blended_images: needs colour questions only")
  vocab = vocabulary(config)
  ids = vocab.answer_ids_for("color")
  colours = palette(config)
  answer = colours[np.searchsorted(ids, data["answer"])]
  prior = colours[np.searchsorted(ids, data["prior_answer"])]
  image = data["image"].copy()
  painted = np.abs(image - answer[:, None, None, :]).max(-1) < 1e-6     # the object's pixels
  blend = ((1.0 - weight) * prior + weight * answer).astype(image.dtype)
  image[painted] = np.broadcast_to(blend[:, None, None, :], image.shape)[painted]
  return image


def switching_point(weights: Sequence[float], answers_y: Sequence[float],
                    answers_prior: Sequence[float]) -> float:
  """The first blend weight where the share answering y exceeds the share answering the prior
  (linear interpolation between the probed weights); 1.0 if it never does."""
  gap = np.asarray(answers_y, float) - np.asarray(answers_prior, float)
  for i, g in enumerate(gap):
    if g > 0:
      if i == 0:
        return float(weights[0])
      w0, w1, g0 = weights[i - 1], weights[i], gap[i - 1]
      return float(w0 + (w1 - w0) * (-g0) / (g - g0))
  return 1.0


def probe(predict: Callable[[np.ndarray, dict], np.ndarray], config: PriorVQAConfig,
          weights: Sequence[float] = WEIGHTS) -> dict:
  """``predict(images, data) -> answer token ids``; returns the shares answering y and the
  prior at each weight, and the switching point, on the config's inverted-prior test split."""
  data = generate(config, "test_ood")
  follows_y, follows_prior = [], []
  for w in weights:
    predicted = np.asarray(predict(blended_images(config, data, w), data))
    follows_y.append(float((predicted == data["answer"]).mean()))
    follows_prior.append(float((predicted == data["prior_answer"]).mean()))
  return dict(weights=list(weights), answers_y=follows_y, answers_prior=follows_prior,
              switching_point=switching_point(weights, follows_y, follows_prior))
