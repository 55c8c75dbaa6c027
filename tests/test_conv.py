"""`small_map_conv`: the im2col path for maps smaller than the kernel equals XLA's convolution."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from mmbal.models.conv import small_map_conv
from mmbal.models.resnet import ResNet18

NHWC = jax.lax.conv_dimension_numbers((1, 1, 1, 1), (1, 1, 1, 1), ("NHWC", "HWIO", "NHWC"))


def _conv(x, w, strides, padding, fn):
  return fn(x, w, strides, padding, dimension_numbers=NHWC, precision="highest")


def test_hand_computed_small_maps():
  w = jnp.arange(3 * 3 * 2 * 1, dtype=jnp.float32).reshape(3, 3, 2, 1)   # w[i, j, c, 0]
  # A 1x1 map under SAME padding meets only the centre tap: y = x . w[1, 1] = 2*8 - 9.
  x = jnp.array([[[[2.0, -1.0]]]])
  assert float(_conv(x, w, (1, 1), "SAME", small_map_conv)[0, 0, 0, 0]) == 7
  # A 2x2 map, channel 0 only: output (0, 0) sees x[0,0] at tap (1,1), x[0,1] at (1,2),
  # x[1,0] at (2,1), x[1,1] at (2,2); with w[i, j, 0] = 6i + 2j: 8 + 2*10 + 3*14 + 4*16.
  x = jnp.zeros((1, 2, 2, 2)).at[0, :, :, 0].set(jnp.array([[1.0, 2.0], [3.0, 4.0]]))
  y = _conv(x, w, (1, 1), "SAME", small_map_conv)
  assert float(y[0, 0, 0, 0]) == 1 * 8 + 2 * 10 + 3 * 14 + 4 * 16 == 134


@pytest.mark.parametrize("side, kernel, stride, padding", [
    ((1, 2), 3, 1, "SAME"), ((2, 3), 3, 1, "SAME"), ((2, 2), 3, 2, "SAME"),
    ((3, 3), 7, 2, "SAME"), ((4, 2), 3, 2, "SAME"), ((2, 2), 3, 1, ((1, 1), (0, 2)))])
def test_equals_xla_convolution_and_its_gradients(side, kernel, stride, padding):
  rng = np.random.default_rng(0)
  x = jnp.asarray(rng.normal(size=(3, *side, 5)), jnp.float32)
  w = jnp.asarray(rng.normal(size=(kernel, kernel, 5, 4)), jnp.float32)
  ours, xla = (lambda x, w, f=f: _conv(x, w, (stride, stride), padding, f)
               for f in (small_map_conv, jax.lax.conv_general_dilated))
  np.testing.assert_allclose(ours(x, w), xla(x, w), rtol=1e-5, atol=1e-5)
  grads = lambda f: jax.grad(lambda x, w: jnp.sum(jnp.sin(f(x, w))), (0, 1))(x, w)
  for a, b in zip(grads(ours), grads(xla)):
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-4)


def test_only_maps_smaller_than_the_kernel_leave_xla_convolution():
  w = jnp.ones((3, 3, 4, 4))
  primitives = lambda side, stride: {
      e.primitive.name for e in jax.make_jaxpr(lambda x: _conv(x, w, (stride, stride), "SAME",
                                                               small_map_conv))(
          jnp.ones((2, side, side, 4))).eqns}
  assert "conv_general_dilated" in primitives(8, 1)
  assert "conv_general_dilated" in primitives(6, 2)      # output 3x3: not smaller
  assert "conv_general_dilated" not in primitives(2, 1)  # input 2x2
  assert "conv_general_dilated" not in primitives(4, 2)  # output 2x2


def test_resnet18_on_a_small_input_equals_the_xla_convolution_model():
  model = nnx.jit(lambda: ResNet18(2, 8, widths=(8, 8, 8, 8), rngs=nnx.Rngs(0)))()
  x = jax.random.normal(jax.random.key(0), (2, 16, 16, 2))   # last stage on a 1x1 map
  ours = nnx.jit(lambda m, x: m(x))(model, x)
  for _, module in nnx.iter_graph(model):
    if isinstance(module, nnx.Conv):
      module.conv_general_dilated = jax.lax.conv_general_dilated
  np.testing.assert_allclose(ours, nnx.jit(lambda m, x: m(x))(model, x), rtol=1e-4, atol=1e-5)
