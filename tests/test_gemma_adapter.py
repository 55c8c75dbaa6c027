"""The multimodal-Gemma adapter: its contract on a hand-made model with gemma's call signature
(always), and on a tiny randomly initialised Gemma 3 with a SigLIP encoder (where the gemma
library is installed: ``pip install gemma``)."""
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mmbal.diagnostics.gemma import (START_OF_IMAGE, diagnose_gemma, drop_image_tokens,
                                     gemma_answer_logits, load_gemma)


class HandModel(nn.Module):
  """Gemma's signature: answers token 2 ("bright") when the image's first pixel is > 127,
  token 1 ("dark") otherwise; with no image it always answers token 1, but "?" (token 3)
  when the prompt still holds an image token (as a real Gemma would misread it)."""

  @nn.compact
  def __call__(self, tokens, *, images=None, return_last_only=None):
    assert return_last_only
    scale = self.param("scale", nn.initializers.ones, ())
    logits = jnp.zeros((tokens.shape[0], 4))
    if images is None:   # an image token left in the prompt: it answers "?" (token 3)
      stray = (tokens == START_OF_IMAGE).any(1).astype(jnp.float32)
      return _Result(logits.at[:, 1].add(scale * (1 - stray)).at[:, 3].add(scale * stray))
    bright = (images[:, 0, 0, 0] > 127).astype(jnp.float32)
    return _Result(logits.at[:, 2].add(2 * scale * bright).at[:, 1].add(2 * scale * (1 - bright)))


class _Result:   # gemma's Output: the logits as an attribute
  def __init__(self, logits):
    self.logits = logits


def _prompts():
  tokens = np.array([[2, 7, START_OF_IMAGE, 8, 0], [2, START_OF_IMAGE, 9, 0, 0],
                     [2, 7, START_OF_IMAGE, 8, 9], [2, START_OF_IMAGE, 0, 0, 0]], np.int32)
  images = np.zeros((4, 8, 8, 3), np.uint8)
  images[0::2] = 255                            # bright, dark, bright, dark
  return tokens, images, np.array([1, 0, 1, 0])   # answer index into answer_ids (1, 2)


def test_image_tokens_are_dropped_and_the_prompt_stays_right_padded():
  tokens, _, _ = _prompts()
  assert drop_image_tokens(tokens).tolist() == [[2, 7, 8, 0, 0], [2, 9, 0, 0, 0],
                                                [2, 7, 8, 9, 0], [2, 0, 0, 0, 0]]


def test_diagnosis_of_a_hand_made_model():
  tokens, images, answer = _prompts()
  model = HandModel()
  params = model.init(jax.random.key(0), tokens[:1], images=images[:1],
                      return_last_only=True)["params"]
  donor = np.array([1, 0, 3, 2])                 # each prompt sees an image of the other kind
  r = diagnose_gemma(model, params, tokens, images, answer, [1, 2, 3], swap_donor=donor,
                     batch_size=3)             # 4 prompts in batches of 3: the last padded
  # With the image every answer is right; with no image always "dark": 2 of 4; the blank
  # image (mean pixel 127.5 -> 128) reads "bright": 2 of 4. MG = 1.0 - 0.5.
  assert (r.accuracy, r.no_image_accuracy, r.multimodal_gain) == (1.0, 0.5, 0.5)
  assert r.blind_accuracy == 0.5
  # Shown the other kind of image, the model answers what that image shows, every time.
  assert (r.image_following_rate, r.swap_change_rate, r.swap_count) == (1.0, 1.0, 4)
  logits = gemma_answer_logits(model, params, tokens, [1, 2, 3], images=images, batch_size=3)
  assert logits.shape == (4, 3) and logits.argmax(1).tolist() == answer.tolist()


def test_bad_inputs_are_named():
  tokens, images, answer = _prompts()
  model, params = HandModel(), {"scale": jnp.ones(())}
  two = tokens.copy()
  two[0, 3] = START_OF_IMAGE
  with pytest.raises(ValueError, match="prompt 0 has 2"):
    diagnose_gemma(model, params, two, images, answer, [1, 2, 3])
  with pytest.raises(ValueError, match="images must be uint8"):
    diagnose_gemma(model, params, tokens, images.astype(np.float32), answer, [1, 2, 3])
  left = np.concatenate([np.zeros((4, 1), np.int32), tokens[:, :-1]], axis=1)   # left-padded
  with pytest.raises(ValueError, match="right-padded with 0.*prompt 0"):
    diagnose_gemma(model, params, left, images, answer, [1, 2, 3])
  with pytest.raises(ValueError, match="swap_donor must hold row indices"):
    diagnose_gemma(model, params, tokens, images, answer, [1, 2, 3], swap_donor=[1, 0, 3, 4])
  with pytest.raises(ValueError, match="answer has 3 rows, tokens has 4"):
    diagnose_gemma(model, params, tokens, images, answer[:3], [1, 2, 3])


def _tiny_gemma():
  pytest.importorskip("gemma.multimodal.vision", reason="the gemma library is not installed")
  from gemma import gm  # pylint: disable=import-outside-toplevel
  from gemma.gm.nn import config  # pylint: disable=import-outside-toplevel
  from gemma.multimodal import vision, vision_utils  # pylint: disable=import-outside-toplevel
  tiny = config.TransformerConfig(
      num_embed=262_144, embed_dim=16, hidden_dim=32, num_heads=2, head_dim=8, num_kv_heads=1,
      final_logit_softcap=None, use_post_attn_norm=True, use_post_ffw_norm=True,
      attention_types=(config.AttentionType.GLOBAL,),
      vision_encoder=vision.SigLiPFromPatches(
          siglip_encoder=vision_utils.ViTModel(width=16, depth=1, mlp_dim=32, num_heads=2),
          siglip_exit=vision.VisionExit(output_length=4),
          num_mm_tokens_per_image_prepool=16, num_mm_tokens_per_image=4,
          image_height=56, image_width=56))
  return gm, gm.nn.Transformer(config=tiny)


def test_tiny_random_gemma3_with_siglip(tmp_path):
  gm, model = _tiny_gemma()
  rng = np.random.default_rng(0)
  tokens = np.array([[2, 10, START_OF_IMAGE, 11, 12, 0], [2, 13, START_OF_IMAGE, 14, 0, 0],
                     [2, START_OF_IMAGE, 15, 16, 17, 18], [2, 19, 20, START_OF_IMAGE, 0, 0],
                     [2, START_OF_IMAGE, 21, 0, 0, 0]], np.int32)
  images = rng.integers(0, 256, (5, 56, 56, 3), dtype=np.uint8)
  params = model.init(jax.random.key(0), tokens[:1], images=images[:1])["params"]
  answer_ids = np.array([100, 200, 300])
  # Batched and padded (5 prompts, batches of 2) == the model on all five at once.
  direct = model.apply({"params": params}, tokens, images=images, return_last_only=True)
  ours = gemma_answer_logits(model, params, tokens, answer_ids, images=images, batch_size=2)
  np.testing.assert_allclose(ours, np.asarray(direct.logits[:, answer_ids], np.float32),
                             rtol=2e-2, atol=2e-2)
  blind = model.apply({"params": params}, drop_image_tokens(tokens), return_last_only=True)
  no_image = gemma_answer_logits(model, params, drop_image_tokens(tokens), answer_ids)
  np.testing.assert_allclose(no_image, np.asarray(blind.logits[:, answer_ids], np.float32),
                             rtol=2e-2, atol=2e-2)
  r = diagnose_gemma(model, params, tokens, images, np.array([0, 1, 2, 0, 1]), answer_ids,
                     batch_size=2)
  assert 0 <= r.accuracy <= 1 and 0 <= r.no_image_accuracy <= 1 and r.visual_information_gain is not None
  # A user's local checkpoint, in gemma's own format, loads back to the same parameters.
  try:
    gm.ckpts.save_params(params, tmp_path / "ckpt")
  except AttributeError as error:   # gemma 3.3.0 + kauldron >= 1.4: gm.ckpts does not import
    with pytest.raises(ImportError, match="AbstractPartialLoader"):
      load_gemma(model, str(tmp_path))
    pytest.skip(f"gemma's checkpoint module does not import here: {error}")
  _, loaded = load_gemma(model, str(tmp_path / "ckpt"))
  for a, b in zip(jax.tree.leaves(params), jax.tree.leaves(loaded)):
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
