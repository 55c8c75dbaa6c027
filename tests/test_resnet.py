"""ResNet-18 encoder: the architecture's shapes and size, clips, and use in the classifier."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from mmbal.models import MultimodalClassifier
from mmbal.models.resnet import ResNet18


@nnx.jit
def _clip_and_frame_mean(encoder, clip):
  """The encoder on a clip [B, T, ...] and the mean of its outputs frame by frame."""
  frames = [encoder(clip[:, k]) for k in range(clip.shape[1])]
  return encoder(clip), jnp.stack(frames, axis=1).mean(1)


def test_resnet18_has_the_standard_size_and_halves_resolution_five_times():
  # Shapes only: the model and its outputs are abstract (nothing is initialised or compiled).
  model = nnx.eval_shape(lambda: ResNet18(3, 512, rngs=nnx.Rngs(0)))
  params = nnx.state(model, nnx.Param)
  # torchvision's ResNet-18 without its fc: 11,176,512 weights (BatchNorm's 2 per channel =
  # GroupNorm's), plus our 512 -> 512 output layer.
  assert sum(x.size for x in jax.tree.leaves(params)) == 11_176_512 + 512 * 512 + 512
  convs = [m for _, m in nnx.iter_graph(model) if isinstance(m, nnx.Conv)]
  assert sum(c.kernel_size == (3, 3) for c in convs) == 16     # 8 basic blocks x 2
  x = jax.ShapeDtypeStruct((2, 64, 64, 3), jnp.float32)
  assert nnx.eval_shape(lambda m, x: m.stem(x), model, x).shape == (2, 32, 32, 64)
  assert nnx.eval_shape(lambda m, x: m(x), model, x).shape == (2, 512)


def test_clips_are_encoded_per_frame_and_averaged():
  model = nnx.jit(lambda: ResNet18(1, 8, widths=(8, 8, 8, 8), rngs=nnx.Rngs(0)))()
  frames = jax.random.normal(jax.random.key(0), (2, 3, 32, 32, 1))
  np.testing.assert_allclose(*_clip_and_frame_mean(model, frames), rtol=1e-5, atol=1e-6)


def test_classifier_uses_resnet18_for_images_when_asked():
  model = nnx.jit(lambda: MultimodalClassifier({"audio": (32, 24, 1), "feat": (5,)}, 3,
                                                feature_dim=8, image_encoder="resnet18",
                                                rngs=nnx.Rngs(0)))()
  assert isinstance(model.encoders["audio"], ResNet18)
  out = nnx.jit(lambda m, x: m(x))(model, {"audio": jnp.ones((2, 32, 24, 1)),
                                           "feat": jnp.ones((2, 5))})
  assert out.logits.shape == (2, 3) and np.isfinite(np.asarray(out.logits)).all()
  with pytest.raises(ValueError, match="image_encoder"):
    MultimodalClassifier({"a": (8, 8, 1)}, 2, image_encoder="vgg", rngs=nnx.Rngs(0))


@pytest.mark.parametrize("image_encoder", ["cnn", "resnet18"])
def test_video_modalities_are_encoded_per_frame(image_encoder):
  model = nnx.jit(lambda: MultimodalClassifier({"clip": (3, 16, 16, 3), "feat": (5,)}, 3,
                                                feature_dim=8, image_encoder=image_encoder,
                                                rngs=nnx.Rngs(0)))()
  clip = jax.random.normal(jax.random.key(1), (2, 3, 16, 16, 3))
  np.testing.assert_allclose(*_clip_and_frame_mean(model.encoders["clip"], clip),
                             rtol=1e-5, atol=1e-6)
  logits = nnx.eval_shape(lambda m, x: m(x).logits, model, {"clip": clip, "feat": jnp.ones((2, 5))})
  assert logits.shape == (2, 3)
