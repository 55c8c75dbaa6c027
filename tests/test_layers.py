"""`mmbal.models.layers`: `small_map_conv` (the im2col path for maps smaller than the kernel)
equals XLA's convolution; `GroupNorm` equals flax's."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from mmbal.models.layers import GroupNorm, small_map_conv
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


def _primitives(fn, *args):
  return {e.primitive.name for e in jax.make_jaxpr(fn)(*args).eqns}


def test_only_maps_smaller_than_the_kernel_leave_xla_convolution():
  w = jnp.ones((3, 3, 4, 4))
  primitives = lambda side, stride: _primitives(
      lambda x: _conv(x, w, (stride, stride), "SAME", small_map_conv), jnp.ones((2, side, side, 4)))
  assert "conv_general_dilated" in primitives(8, 1)
  assert "conv_general_dilated" in primitives(6, 2)      # output 3x3: not smaller
  assert "conv_general_dilated" not in primitives(2, 1)  # input 2x2
  assert "conv_general_dilated" not in primitives(4, 2)  # output 2x2


@pytest.mark.parametrize("kwargs", [
    dict(rhs_dilation=[2, 2]), dict(lhs_dilation=(2, 1), padding=((1, 1), (1, 1))),
    dict(preferred_element_type=jnp.float32),
    dict(dimension_numbers=("NCHW", "OIHW", "NCHW")), dict(padding=((-1, 2), (1, 1)))])
def test_other_convolutions_go_to_xla_unchanged(kwargs):
  x = jax.random.normal(jax.random.key(0), (2, 2, 2, 4))
  w = jax.random.normal(jax.random.key(1), (3, 3, 4, 4))
  args = dict(window_strides=(1, 1), padding="SAME", dimension_numbers=NHWC) | kwargs
  if args["dimension_numbers"] == ("NCHW", "OIHW", "NCHW"):
    x, w = x.transpose(0, 3, 1, 2), w.transpose(3, 2, 0, 1)
  ours = lambda x, w: small_map_conv(x, w, **args)
  assert "conv_general_dilated" in _primitives(ours, x, w)
  np.testing.assert_array_equal(ours(x, w), jax.lax.conv_general_dilated(x, w, **args))


def test_resnet18_on_a_small_input_equals_the_xla_convolution_model():
  model = nnx.jit(lambda: ResNet18(2, 8, widths=(8, 8, 8, 8), rngs=nnx.Rngs(0)))()
  x = jax.random.normal(jax.random.key(0), (2, 16, 16, 2))   # last stage on a 1x1 map
  ours = nnx.jit(lambda m, x: m(x))(model, x)
  for _, module in nnx.iter_graph(model):
    if isinstance(module, nnx.Conv):
      module.conv_general_dilated = jax.lax.conv_general_dilated
  np.testing.assert_allclose(ours, nnx.jit(lambda m, x: m(x))(model, x), rtol=1e-4, atol=1e-5)


def test_group_norm_hand_computed():
  # One sample, a 1x2 map, 4 channels in 2 groups of adjacent channels. Group 0 (channels 0, 1)
  # holds {0, 4, 2, 6}: mean 3, variance 5; group 1 holds only ones: variance 0, so its
  # outputs are the bias (epsilon keeps the 0 / 0 finite).
  norm = GroupNorm(4, num_groups=2, epsilon=1e-6, rngs=nnx.Rngs(0))
  norm.scale[...] = jnp.array([2.0, 1.0, 1.0, 1.0])
  norm.bias[...] = jnp.array([0.0, 0.0, 0.0, 7.0])
  x = jnp.array([[[[0.0, 4.0, 1.0, 1.0], [2.0, 6.0, 1.0, 1.0]]]])
  y = norm(x)[0, 0]
  np.testing.assert_allclose(y[:, 0], 2 * (np.array([0.0, 2.0]) - 3) / np.sqrt(5), rtol=1e-6)
  np.testing.assert_allclose(y[:, 1], (np.array([4.0, 6.0]) - 3) / np.sqrt(5), rtol=1e-6)
  np.testing.assert_allclose(y[:, 2:], [[0.0, 7.0], [0.0, 7.0]])


@pytest.mark.parametrize("shape, groups, dtype", [
    ((3, 5, 4, 8), 4, jnp.float32), ((2, 6, 16), 8, jnp.float32), ((2, 3, 3, 2, 8), 2, jnp.float32),
    ((3, 5, 4, 8), 4, jnp.bfloat16)])
def test_group_norm_equals_flax_and_its_gradients(shape, groups, dtype):
  ours = GroupNorm(shape[-1], num_groups=groups, dtype=dtype, rngs=nnx.Rngs(0))
  flax = nnx.GroupNorm(shape[-1], num_groups=groups, dtype=dtype, rngs=nnx.Rngs(0))
  rng = np.random.default_rng(0)
  params = {"scale": jnp.asarray(rng.normal(size=shape[-1]), jnp.float32),
            "bias": jnp.asarray(rng.normal(size=shape[-1]), jnp.float32)}
  x = jnp.asarray(3 + 2 * rng.normal(size=shape), dtype)   # bfloat16 inputs in the bf16 case
  outs, grads = [], []
  for module in (ours, flax):
    graphdef, _ = nnx.split(module)
    apply = lambda p, x, g=graphdef: nnx.merge(g, nnx.State(
        {k: nnx.Param(v) for k, v in p.items()}))(x)
    outs.append(apply(params, x))
    grads.append(jax.grad(lambda p, x, f=apply: jnp.sum(jnp.sin(f(p, x).astype(jnp.float32))),
                          (0, 1))(params, x))
  assert outs[0].dtype == outs[1].dtype == dtype
  tol = 2e-2 if dtype == jnp.bfloat16 else 1e-5
  np.testing.assert_allclose(outs[0].astype(jnp.float32), outs[1].astype(jnp.float32),
                             rtol=tol, atol=tol)
  for a, b in zip(jax.tree.leaves(grads[0]), jax.tree.leaves(grads[1])):
    np.testing.assert_allclose(a, b, rtol=10 * tol, atol=10 * tol)


def test_group_norm_gradient_invariants():
  # y is unchanged when a group's inputs shift by a constant, and (epsilon = 0) when they
  # scale by one: so per sample and group, sum dx = 0 and sum dx * x = 0 for any dy.
  norm = GroupNorm(8, num_groups=2, epsilon=0.0, rngs=nnx.Rngs(0))
  norm.scale[...] = jnp.linspace(0.5, 2.0, 8)
  rng = np.random.default_rng(1)
  x = jnp.asarray(rng.normal(size=(3, 4, 5, 8)), jnp.float32)
  dy = jnp.asarray(rng.normal(size=x.shape), jnp.float32)
  dx = jax.vjp(norm, x)[1](dy)[0]
  per_group = lambda a: np.asarray(a).reshape(3, -1, 2, 4).sum(axis=(1, 3))
  np.testing.assert_allclose(per_group(dx), 0.0, atol=1e-4)
  np.testing.assert_allclose(per_group(dx * x), 0.0, atol=1e-4)
  assert np.abs(per_group(np.abs(dx))).min() > 1.0   # not trivially zero


@pytest.mark.parametrize("options", [dict(use_scale=False), dict(use_bias=False),
                                     dict(num_groups=None, group_size=2)])
def test_group_norm_options_equal_flax(options):
  options = dict(num_groups=4) | options
  x = jnp.asarray(1 + np.random.default_rng(2).normal(size=(2, 3, 5, 8)), jnp.float32)
  dy = jnp.asarray(np.random.default_rng(3).normal(size=x.shape), jnp.float32)
  ours = jax.vjp(GroupNorm(8, **options, rngs=nnx.Rngs(0)), x)
  flax = jax.vjp(nnx.GroupNorm(8, **options, rngs=nnx.Rngs(0)), x)
  np.testing.assert_allclose(ours[0], flax[0], rtol=1e-5, atol=1e-5)
  np.testing.assert_allclose(ours[1](dy)[0], flax[1](dy)[0], rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("options, call", [
    (dict(use_fast_variance=False), {}), (dict(reduction_axes=(1, -1)), {}),
    ({}, dict(mask=jnp.ones((2, 3, 5, 8), bool)))])
def test_group_norm_falls_back_to_flax(options, call):
  x = jax.random.normal(jax.random.key(0), (2, 3, 5, 8))
  ours = GroupNorm(8, num_groups=4, **options, rngs=nnx.Rngs(0))
  flax = nnx.GroupNorm(8, num_groups=4, **options, rngs=nnx.Rngs(0))
  assert "custom_vjp_call" not in str(jax.make_jaxpr(lambda x: ours(x, **call))(x))
  np.testing.assert_array_equal(ours(x, **call), flax(x, **call))
  assert "custom_vjp_call" in str(jax.make_jaxpr(GroupNorm(8, num_groups=4, rngs=nnx.Rngs(0)))(x))
