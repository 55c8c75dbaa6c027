"""TinyVLM: shapes, masking, attention, parameter groups, bf16, sharding, state surgery."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from jax.sharding import NamedSharding, PartitionSpec as P

from mmbal.models.vlm import (VLM_GROUPS, TinyVLM, attention_mask, lm_only_logits, load_pretrained,
                              make_vlm_apply, vlm_groups, vlm_modality_labels)
from mmbal.train import sharding as shd

KW = dict(vocab_size=12, image_size=8, patch_size=4, dim=16, depth=2, heads=2, max_text_len=6)
B, T, N = 8, 5, 4   # batch, text length, visual tokens (8x8 image, 4x4 patches)


def _inputs(seed=0, batch=B):
  rng = np.random.default_rng(seed)
  return (jnp.asarray(rng.uniform(size=(batch, 8, 8, 3)), jnp.float32),
          jnp.asarray(rng.integers(0, KW["vocab_size"], (batch, T)), jnp.int32))


@pytest.fixture(scope="module")
def model():
  return TinyVLM(**KW, rngs=nnx.Rngs(0))


@pytest.fixture(scope="module")
def forward(model):
  apply, params = make_vlm_apply(model)
  return jax.jit(lambda p, i, t: apply(p, i, t, return_attention=True)), params


def test_attention_mask_hand_written():
  # 2 visual tokens (bidirectional among themselves, blind to text), then 2 causal text tokens.
  np.testing.assert_array_equal(attention_mask(2, 2), [[1, 1, 0, 0],
                                                       [1, 1, 0, 0],
                                                       [1, 1, 1, 0],
                                                       [1, 1, 1, 1]])


def test_shapes_attention_rows_and_masked_entries(model, forward):
  fn, params = forward
  image, tokens = _inputs()
  logits, attention = fn(params, image, tokens)
  assert model.num_visual_tokens == N
  assert logits.shape == (B, T, KW["vocab_size"]) and logits.dtype == jnp.float32
  assert attention.shape == (KW["depth"], B, KW["heads"], T, N + T)
  np.testing.assert_allclose(attention.sum(-1), 1.0, atol=1e-5)
  # Text query t may see the N visual tokens and text 0..t; later text columns are exactly 0.
  allowed = attention_mask(N, T)[N:]
  assert (np.asarray(attention)[..., ~allowed] == 0).all()
  assert (np.asarray(attention)[..., allowed] > 0).all()


def test_causal_text_and_image_dependence(forward):
  fn, params = forward
  image, tokens = _inputs()
  logits = fn(params, image, tokens)[0]
  k = 3
  changed = tokens.at[:, k].set((tokens[:, k] + 1) % KW["vocab_size"])
  later = fn(params, image, changed)[0]
  np.testing.assert_allclose(later[:, :k], logits[:, :k], atol=1e-6)       # before k: unchanged
  assert np.abs(np.asarray(later[:, k:] - logits[:, k:])).max(axis=-1).min() > 1e-4
  other = fn(params, _inputs(seed=1)[0], tokens)[0]
  assert np.abs(np.asarray(other - logits)).max(axis=-1).min() > 1e-4     # every position sees the image
  # The LM alone ignores any image and matches the VLM's LM without a prefix.
  lm_only = lm_only_logits(nnx.merge(*nnx.split(TinyVLM(**KW, rngs=nnx.Rngs(0)))), tokens)
  assert lm_only.shape == logits.shape
  assert np.abs(np.asarray(lm_only - logits)).max() > 1e-4


def test_groups_cover_every_parameter_once(model):
  params = nnx.to_pure_dict(nnx.state(model, nnx.Param))
  labels = vlm_groups(model)
  assert jax.tree.structure(labels) == jax.tree.structure(params)
  sizes = {g: 0 for g in VLM_GROUPS}
  for label, leaf in zip(jax.tree.leaves(labels), jax.tree.leaves(params)):
    sizes[label] += leaf.size
  for g in VLM_GROUPS:
    assert sizes[g] == sum(x.size for x in jax.tree.leaves(nnx.state(getattr(model, g), nnx.Param)))
  assert sum(sizes.values()) == sum(x.size for x in jax.tree.leaves(params))
  assert labels["lm"]["embed"]["embedding"] == "lm" and labels["projector"]["kernel"] == "projector"
  modal = vlm_modality_labels(model)
  assert modal["lm"]["embed"]["embedding"] == "text" and modal["vision"]["position"] == "vision"
  assert modal["projector"]["kernel"] == "vision" and modal["lm"]["norm"]["scale"] == "shared"
  whole = vlm_modality_labels(model, text="lm")   # the prior's home: the LM's blocks too
  assert whole["lm"]["norm"]["scale"] == whole["lm"]["embed"]["embedding"] == "text"
  assert "shared" not in jax.tree.leaves(whole) and whole["projector"]["kernel"] == "vision"


def test_bfloat16_is_finite_and_close_to_float32(forward):
  fn, params = forward
  image, tokens = _inputs()
  ref = fn(params, image, tokens)[0]
  low = TinyVLM(**KW, dtype=jnp.bfloat16, rngs=nnx.Rngs(0))   # same seed: same float32 params
  apply, low_params = make_vlm_apply(low)
  assert all(x.dtype == jnp.float32 for x in jax.tree.leaves(low_params))
  logits, attention = jax.jit(lambda p: apply(p, image, tokens, return_attention=True))(low_params)
  assert logits.dtype == jnp.float32 and attention.dtype == jnp.float32
  assert np.isfinite(np.asarray(logits)).all()
  # bf16 keeps ~3 significant digits; logits here are O(1).
  np.testing.assert_allclose(logits, ref, atol=0.1)
  np.testing.assert_allclose(attention.sum(-1), 1.0, atol=1e-5)


def test_sharded_batch_matches_unsharded(devices, forward):
  fn, params = forward
  image, tokens = _inputs()
  mesh = shd.make_mesh()
  batch_sh, rep = NamedSharding(mesh, P("data")), NamedSharding(mesh, P())
  sharded = jax.jit(fn, in_shardings=(rep, batch_sh, batch_sh), out_shardings=None)
  logits, attention = sharded(jax.device_put(params, rep), jax.device_put(image, batch_sh),
                              jax.device_put(tokens, batch_sh))
  assert logits.sharding.is_equivalent_to(batch_sh, logits.ndim)
  np.testing.assert_allclose(logits, fn(params, image, tokens)[0], atol=1e-5)


@pytest.mark.parametrize("kwargs, message", [
    (dict(image_size=10), "divisible by patch_size"),
    (dict(dim=15), "divisible by heads"),
    (dict(depth=0), "depth must be a positive int"),
])
def test_bad_construction_is_clear(kwargs, message):
  with pytest.raises(ValueError, match=message):
    TinyVLM(**dict(KW, **kwargs), rngs=nnx.Rngs(0))


def test_bad_inputs_are_clear_before_compiling(model):
  image, tokens = _inputs(batch=2)
  long = jnp.zeros((2, KW["max_text_len"] + 1), jnp.int32)
  for args, message in [((image, long), "max_text_len is 6"),
                        ((image[0], tokens), r"image must be \[batch, 8, 8, 3\]"),
                        ((image[..., :1], tokens), r"image must be \[batch, 8, 8, 3\]"),
                        ((image.astype(jnp.uint8), tokens), "divide uint8 images by 255"),
                        ((image, tokens[0]), r"tokens must be \[batch, text_len\]"),
                        ((image, tokens.astype(jnp.float32)), "integer token ids"),
                        ((image[:1], tokens), "batch")]:
    with pytest.raises(ValueError, match=message):
      jax.jit(lambda i, t: model(i, t))(*args)


def test_load_pretrained_copies_groups():
  target = TinyVLM(**KW, rngs=nnx.Rngs(0))
  source = TinyVLM(**KW, rngs=nnx.Rngs(1))
  vision_before = jax.tree.map(np.asarray, nnx.to_pure_dict(nnx.state(target.vision)))
  load_pretrained(target, lm=source.lm, projector=nnx.state(source.projector))
  for group in ("lm", "projector"):
    got, want = (nnx.to_pure_dict(nnx.state(getattr(m, group))) for m in (target, source))
    jax.tree.map(np.testing.assert_array_equal, got, want)
  jax.tree.map(np.testing.assert_array_equal, nnx.to_pure_dict(nnx.state(target.vision)), vision_before)
  target.lm.norm.scale[...] = jnp.zeros(KW["dim"])             # a copy: the source is untouched
  assert float(source.lm.norm.scale[...].min()) > 0
  with pytest.raises(ValueError, match="unknown group"):
    load_pretrained(target, head=source.lm)
  wider = TinyVLM(**dict(KW, vocab_size=13), rngs=nnx.Rngs(0))
  with pytest.raises(ValueError, match=r"embedding has shape \(13, 16\)"):
    load_pretrained(target, lm=wider.lm)
