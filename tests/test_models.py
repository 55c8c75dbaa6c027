"""Encoders, fusion modules and the multimodal classifier."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from mmbal.models import FUSIONS, MultimodalClassifier, split
from mmbal.models.fusion import ConcatFusion, FiLMFusion, SumFusion

MODS = {"vec": (7,), "seq": (12, 3), "img": (8, 8, 2)}


def _inputs(mods, batch=4, seed=0):
  rng = np.random.default_rng(seed)
  return {m: jnp.asarray(rng.normal(size=(batch,) + s), jnp.float32) for m, s in mods.items()}


@pytest.mark.parametrize("fusion", sorted(FUSIONS))
def test_every_fusion_and_encoder_kind(fusion):
  model = MultimodalClassifier(MODS, 5, feature_dim=8, hidden_dim=16, fusion=fusion,
                               rngs=nnx.Rngs(0))
  out = model(_inputs(MODS))
  assert out.logits.shape == (4, 5)
  assert out.unimodal_logits.shape == (3, 4, 5)
  assert out.features.shape == (3, 4, 8)
  assert np.isfinite(np.asarray(out.logits)).all()
  # An absent modality changes nothing when its input changes.
  present = jnp.array([[1.0, 1.0, 0.0]] * 4)
  a = model(_inputs(MODS, seed=1), present).logits
  other = dict(_inputs(MODS, seed=1), img=_inputs(MODS, seed=2)["img"])
  np.testing.assert_allclose(a, model(other, present).logits, atol=1e-5)


@pytest.mark.parametrize("fusion", ["concat", "sum"])
def test_split_head_logits_sum_to_fused(fusion):
  # OGM-GE: z_m = W_m h_m + b/M, so sum_m z_m = W [h_1; ...] + b (concat) or W sum h + b (sum).
  model = MultimodalClassifier(MODS, 5, feature_dim=8, hidden_dim=16, fusion=fusion,
                               unimodal="split_head", rngs=nnx.Rngs(0))
  out = model(_inputs(MODS))
  np.testing.assert_allclose(out.unimodal_logits.sum(0), out.logits, atol=1e-5)
  assert not hasattr(model, "unimodal_heads")


def test_fusion_hand_computed():
  f = jnp.array([[[1.0, 2.0]], [[3.0, 4.0]]])           # [M=2, B=1, D=2]
  np.testing.assert_allclose(ConcatFusion(2, 2, rngs=nnx.Rngs(0))(f), [[1, 2, 3, 4]])
  np.testing.assert_allclose(SumFusion(2, 2, rngs=nnx.Rngs(0))(f), [[4, 6]])
  film = FiLMFusion(2, 2, rngs=nnx.Rngs(0))
  film.film[0].kernel[...] = jnp.zeros((2, 4)).at[0, 0].set(1.0)   # gamma_0 = h2[0] = 3
  film.film[0].bias[...] = jnp.array([0.0, 0.0, 0.5, -1.0])        # beta = (0.5, -1)
  np.testing.assert_allclose(film(f), [[(1 + 3) * 1 + 0.5, 2 - 1.0]])


def test_probe_heads_do_not_train_encoders():
  model = MultimodalClassifier({"a": (3,), "b": (4,)}, 3, feature_dim=4, hidden_dim=8,
                               unimodal="probe", rngs=nnx.Rngs(0))
  graphdef, params, rest = split(model)
  x = _inputs({"a": (3,), "b": (4,)})
  grads = jax.grad(lambda p: nnx.merge(graphdef, p, rest)(x).unimodal_logits.sum())(params)
  assert all(float(jnp.abs(g).max()) == 0 for g in jax.tree.leaves(grads["encoders"]))
  assert float(jnp.abs(grads["unimodal_heads"]["a"]["kernel"]).max()) > 0


def test_bfloat16_encoders_keep_float32_parameters_and_logits():
  # model.dtype=bfloat16: the encoders compute in bfloat16 (mixed precision), parameters and
  # logits stay float32, and the logits match the float32 model's to bfloat16 precision.
  mods = dict(MODS, img=(16, 16, 2))
  f32 = MultimodalClassifier(mods, 5, feature_dim=8, hidden_dim=16, rngs=nnx.Rngs(0))
  bf16 = MultimodalClassifier(mods, 5, feature_dim=8, hidden_dim=16, dtype="bfloat16",
                              rngs=nnx.Rngs(0))
  assert {p.dtype for p in jax.tree.leaves(nnx.state(bf16, nnx.Param))} == {jnp.dtype("float32")}
  x = _inputs(mods)
  low, full = bf16(x).logits, f32(x).logits
  assert low.dtype == jnp.float32
  assert not np.array_equal(low, full)   # it did compute in bfloat16
  np.testing.assert_allclose(low, full, atol=0.05, rtol=0.05)
  with pytest.raises(ValueError, match="dtype must be one of"):
    MultimodalClassifier(MODS, 5, dtype="float16", rngs=nnx.Rngs(0))


def test_bad_model_arguments():
  with pytest.raises(ValueError, match="fusion must be one of"):
    MultimodalClassifier(MODS, 5, fusion="mean", rngs=nnx.Rngs(0))
  with pytest.raises(ValueError, match="split_head"):
    MultimodalClassifier(MODS, 5, fusion="gated", unimodal="split_head", rngs=nnx.Rngs(0))
  with pytest.raises(ValueError, match="shape must be positive"):
    MultimodalClassifier({"a": (0,)}, 5, rngs=nnx.Rngs(0))
  with pytest.raises(ValueError, match="reserved"):
    MultimodalClassifier({"label": (3,)}, 5, rngs=nnx.Rngs(0))
