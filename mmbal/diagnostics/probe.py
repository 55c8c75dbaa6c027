"""Linear probes on frozen encoder features: how much each encoder has learned.

The same measurement for every method (unlike each method's own unimodal outputs), so
balancing methods can be compared: a multinomial logistic regression per modality,
fitted with L-BFGS on the train features and scored on held-out features.
"""
from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import optax


@functools.partial(jax.jit, static_argnames=("num_classes", "steps"))
def fit_linear_probes(features, labels, *, num_classes: int, l2: float = 1e-3, steps: int = 200):
  """Fits one probe per modality, all at once (vmapped).

  Args:
    features: ``[M, N, D]`` frozen encoder features of N training examples.
    labels: ``[N]`` int labels.
  Returns:
    ``(weights [M, D, C], bias [M, C], mean [M, D], std [M, D])``.
  """
  mean = features.mean(axis=1, keepdims=True)
  std = features.std(axis=1, keepdims=True) + 1e-6

  def fit(x):
    def loss(p):
      logits = x @ p["w"] + p["b"]
      ce = optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()
      return ce + l2 * jnp.sum(p["w"] ** 2)

    opt = optax.lbfgs()
    value_and_grad = optax.value_and_grad_from_state(loss)
    params = {"w": jnp.zeros((x.shape[-1], num_classes)), "b": jnp.zeros((num_classes,))}

    def body(_, carry):
      params, state = carry
      value, grad = value_and_grad(params, state=state)
      updates, state = opt.update(grad, state, params, value=value, grad=grad, value_fn=loss)
      return optax.apply_updates(params, updates), state

    params, _ = jax.lax.fori_loop(0, steps, body, (params, opt.init(params)))
    return params["w"], params["b"]

  w, b = jax.vmap(fit)((features - mean) / std)
  return w, b, mean[:, 0], std[:, 0]


@jax.jit
def probe_accuracy(probes, features, labels, mask=None):
  """``[M]`` accuracy of each modality's probe on ``features [M, N, D]``."""
  w, b, mean, std = probes
  x = (features - mean[:, None]) / std[:, None]
  correct = (jnp.einsum("mnd,mdc->mnc", x, w) + b[:, None]).argmax(-1) == labels[None]
  if mask is None:
    return correct.mean(-1)
  return (correct * mask[None]).sum(-1) / jnp.maximum(mask.sum(), 1)
