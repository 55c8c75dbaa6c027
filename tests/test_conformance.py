"""Every public transform through the same battery: jit without recompiling when the scores
change, lax.scan over steps (a state whose shape never changes), vmap over seeds, an orbax
round trip onto a fresh init, bf16 gradients, inject_hyperparams, and apply_if_finite after
the transform. A new transform is checked by adding one entry to CASES."""
from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
import orbax.checkpoint as ocp
import pytest

from mmbal import transforms

NAMES = ("audio", "video")
PARAMS = {"audio": {"w": jnp.ones((3, 2))}, "video": {"w": jnp.ones((4, 2))},
          "head": {"b": jnp.zeros((2,))}}
LABELS = {"audio": {"w": "audio"}, "video": {"w": "video"}, "head": {"b": "shared"}}


class Case(NamedTuple):
  make: Callable[..., Any]    # **hyperparameters -> transform
  hyper: dict                 # a numeric hyperparameter inject_hyperparams may adjust
  num_objectives: int         # 0: per-parameter gradients; K: stacked [K, ...]
  extra: Callable[[int], dict]   # seed -> extra args of update (arrays only)
  static: tuple = ()          # the factory's structural arguments (inject_hyperparams static_args)
  takes_grad_fn: bool = False   # SAM-style: update's extra arg grad_fn (a Python callable)
  rows: tuple | None = None     # names of the stacked rows (static extra arg `objectives`)
  group: int = 1                # micro-steps per emitted update (gradient accumulation)


def _scores(seed):
  s = jnp.asarray([1.0 + seed, 2.0 - 0.5 * seed])
  return {"audio": s[0], "video": s[1]}


def _quadratic_grad(params):   # SAM's gradient function: of a quadratic around 1
  return jax.tree.map(lambda p: 2 * (p - 1.0), params)


CASES = {
    "ogm_ge": Case(lambda alpha: transforms.ogm_ge(LABELS, alpha=alpha), dict(alpha=0.8), 0,
                   lambda s: dict(confidence=_scores(s), key=jax.random.key(s))),
    "cggm": Case(lambda rho: transforms.cggm(LABELS, rho=rho), dict(rho=1.3), 0,
                 lambda s: dict(unimodal_accuracy={m: v / 4 for m, v in _scores(s).items()})),
    "miles": Case(lambda tau: transforms.miles(LABELS, tau=tau), dict(tau=0.2), 0, lambda s: {}),
    "sam": Case(lambda rho: transforms.sam(rho=rho), dict(rho=0.05), 0, lambda s: {},
                takes_grad_fn=True),
    "msam": Case(lambda rho: transforms.msam(NAMES, rho=rho), dict(rho=0.05), 0,
                 lambda s: dict(shapley_values=_scores(s)), takes_grad_fn=True),
    "owm_projection": Case(lambda dim: transforms.owm_projection(
        {"audio": {"w": True}, "video": {"w": False}, "head": {"b": False}}, dim), dict(dim=3), 0,
        lambda s: dict(feature_mean=jnp.arange(3.0) + s, progress=jnp.float32(0.5)),
        static=("dim",)),
    "agm": Case(lambda alpha: transforms.agm(NAMES, alpha=alpha), dict(alpha=1.0), 2,
                lambda s: dict(agm_scores=_scores(s)), rows=NAMES),
    "pcgrad": Case(lambda num_objectives: transforms.pcgrad(num_objectives=num_objectives),
                   dict(num_objectives=3), 3, lambda s: dict(key=jax.random.key(s)),
                   static=("num_objectives",)),
    "mmpareto": Case(lambda gamma: transforms.mmpareto(NAMES, LABELS, gamma=gamma),
                     dict(gamma=1.0), 3, lambda s: {}, rows=("fused",) + NAMES),
    "balgrad": Case(lambda project: transforms.balgrad(NAMES, project=project),
                    dict(project=True), 5, lambda s: dict(unimodal_losses=_scores(s)),
                    static=("project",), rows=transforms.balgrad_objective_names(NAMES)),
    "gradient_blending": Case(lambda objectives: transforms.gradient_blending(objectives),
                              dict(objectives=3), 3, lambda s: {}, static=("objectives",)),
    "accumulate_objectives": Case(lambda every_k: transforms.accumulate_objectives(
        transforms.pcgrad(num_objectives=3), every_k, num_objectives=3), dict(every_k=2), 3,
        lambda s: dict(key=jax.random.key(s)), static=("every_k",), group=2),
    "combine_objectives": Case(lambda weights: transforms.combine_objectives(weights),
                               dict(weights=jnp.asarray([1.0, 0.5, 0.5])), 3, lambda s: {}),
}


def _grads(case: Case, seed: int, dtype=jnp.float32):
  rng = np.random.default_rng(seed)
  shape = lambda p: ((case.num_objectives,) if case.num_objectives else ()) + p.shape
  return jax.tree.map(lambda p: jnp.asarray(rng.normal(size=shape(p)), dtype), PARAMS)


def _chain(case: Case, inner=None):
  return optax.chain(case.make(**case.hyper), inner or optax.sgd(0.1))


def _update(tx, case, grad_fn=_quadratic_grad):
  def update(grads, state, extra):
    extra = dict(extra, grad_fn=grad_fn) if case.takes_grad_fn else extra
    if case.rows is not None:
      extra = dict(extra, objectives=case.rows)
    return tx.update(grads, state, PARAMS, **extra)
  return update


@pytest.mark.parametrize("name", list(CASES))
def test_jit_once_whatever_the_scores(name):
  case = CASES[name]
  tx = _chain(case)
  step = jax.jit(_update(tx, case))
  state = tx.init(PARAMS)
  for seed in (0, 1):
    updates, state = step(_grads(case, seed), state, case.extra(seed))
  assert step._cache_size() == 1   # pylint: disable=protected-access
  assert jax.tree.map(jnp.shape, updates) == jax.tree.map(jnp.shape, PARAMS)
  assert all(np.isfinite(x).all() for x in jax.tree.leaves(updates))


@pytest.mark.parametrize("name", list(CASES))
def test_scan_over_steps_and_vmap_over_seeds(name):
  case = CASES[name]
  tx = _chain(case)
  update = _update(tx, case)
  grads = jax.tree.map(lambda *g: jnp.stack(g), *[_grads(case, s) for s in range(3)])
  extras = jax.tree.map(lambda *e: jnp.stack(e), *[case.extra(s) for s in range(3)])

  def scan(state):   # three steps in one lax.scan: the state keeps its shapes and dtypes
    return jax.lax.scan(lambda st, x: update(x[0], st, x[1])[::-1], state, (grads, extras))
  state, updates = jax.jit(scan)(tx.init(PARAMS))
  assert jax.tree.map(jnp.shape, updates)["head"]["b"] == (3, 2)
  looped = tx.init(PARAMS)
  for s in range(3):
    expected, looped = update(_grads(case, s), looped, case.extra(s))
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6),
               jax.tree.map(lambda u: u[-1], updates), expected)

  per_seed = jax.vmap(lambda g, e: update(g, tx.init(PARAMS), e)[0])(grads, extras)
  first, _ = update(_grads(case, 0), tx.init(PARAMS), case.extra(0))
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a[0], b, rtol=1e-5, atol=1e-6),
               per_seed, first)


@pytest.mark.parametrize("name", list(CASES))
def test_orbax_round_trip_onto_a_fresh_init(name, tmp_path):
  case = CASES[name]
  tx = _chain(case, optax.adam(1e-2))
  _, state = _update(tx, case)(_grads(case, 0), tx.init(PARAMS), case.extra(0))
  checkpointer = ocp.StandardCheckpointer()
  checkpointer.save(tmp_path / "state", state)
  checkpointer.wait_until_finished()
  fresh = tx.init(PARAMS)
  restored = checkpointer.restore(tmp_path / "state", jax.tree.map(ocp.utils.to_shape_dtype_struct, fresh))
  jax.tree.map(np.testing.assert_array_equal, restored, state)
  assert jax.tree.structure(restored) == jax.tree.structure(fresh)


@pytest.mark.parametrize("name", list(CASES))
def test_bf16_gradients(name):
  case = CASES[name]
  tx = _chain(case)
  updates, _ = jax.jit(_update(tx, case))(_grads(case, 0, jnp.bfloat16), tx.init(PARAMS),
                                           case.extra(0))
  assert all(np.isfinite(np.asarray(x, np.float32)).all() for x in jax.tree.leaves(updates))


@pytest.mark.parametrize("name", list(CASES))
def test_inject_hyperparams(name):
  case = CASES[name]
  injected = optax.inject_hyperparams(case.make, static_args=case.static)(**case.hyper)
  direct = case.make(**case.hyper)
  grads, extra = _grads(case, 0), case.extra(0)
  a, state = jax.jit(_update(injected, case))(grads, injected.init(PARAMS), extra)
  b, _ = _update(direct, case)(grads, direct.init(PARAMS), extra)
  jax.tree.map(lambda x, y: np.testing.assert_allclose(x, y, rtol=1e-5, atol=1e-6), a, b)
  assert set(state.hyperparams) >= {k for k in case.hyper if k not in case.static}


@pytest.mark.parametrize("name", list(CASES))
def test_apply_if_finite_after_the_transform_skips_a_non_finite_step(name):
  case = CASES[name]
  tx = _chain(case, optax.apply_if_finite(optax.sgd(0.1), max_consecutive_errors=3))
  # (SAM's update is grad_fn at the perturbed point: there the NaN comes from grad_fn)
  update = jax.jit(_update(tx, case, grad_fn=lambda p: jax.tree.map(lambda x: x * jnp.nan, p)))
  bad = jax.tree.map(lambda g: g.at[(0,) * g.ndim].set(jnp.nan), _grads(case, 0))
  state = tx.init(PARAMS)
  for _ in range(case.group):   # an accumulating transform emits its NaN at the group's end
    updates, state = update(bad, state, case.extra(0))
  assert all((np.asarray(u) == 0).all() for u in jax.tree.leaves(updates))   # skipped
  assert int(state[1].notfinite_count) == 1


@pytest.mark.parametrize("name", list(CASES))
def test_multisteps_after_the_transform_averages_its_outputs(name):
  case = CASES[name]
  accumulated = _chain(case, optax.MultiSteps(optax.sgd(1.0), every_k_schedule=2).gradient_transformation())
  alone = _chain(case, optax.identity())
  step_acc, step_alone = jax.jit(_update(accumulated, case)), jax.jit(_update(alone, case))
  state_acc, state_alone, outputs = accumulated.init(PARAMS), alone.init(PARAMS), []
  for seed in (0, 1):
    updates, state_acc = step_acc(_grads(case, seed), state_acc, case.extra(seed))
    out, state_alone = step_alone(_grads(case, seed), state_alone, case.extra(seed))
    outputs.append(out)
    if seed == 0:
      assert all((np.asarray(u) == 0).all() for u in jax.tree.leaves(updates))   # accumulating
  jax.tree.map(lambda u, a, b: np.testing.assert_allclose(u, -(a + b) / 2, rtol=1e-5, atol=1e-6),
               updates, *outputs)
