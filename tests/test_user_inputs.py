"""What users get wrong, in the transforms, the CLI and the config: each raises where it is made,
naming the fix."""
import json
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import mmbal
from mmbal import transforms
from mmbal.transforms._checks import TransformInputError

PARAMS = {"audio": {"w": jnp.ones((3, 2))}, "video": {"w": jnp.ones((4, 2))},
          "head": {"b": jnp.zeros((2,))}}
LABELS = {"audio": {"w": "audio"}, "video": {"w": "video"}, "head": {"b": "shared"}}
SCORES = dict(confidence={"audio": 2.0, "video": 1.0}, key=jax.random.key(0),
              unimodal_accuracy={"audio": 0.5, "video": 0.4})


@pytest.mark.parametrize("make", [
    lambda: transforms.ogm_ge(LABELS, alpha=0.8),
    lambda: transforms.cggm(LABELS),
])
def test_stacked_gradients_are_refused_naming_the_fix(make):
  tx = optax.chain(make(), optax.sgd(0.1))
  stacked = jax.tree.map(lambda p: jnp.stack([p, p, p]), PARAMS)   # [K=3, ...] per objective
  with pytest.raises(TransformInputError, match=r"stacked per-objective gradients \[K=3"):
    tx.update(stacked, tx.init(PARAMS), PARAMS, **SCORES)
  # Per-parameter gradients pass.
  updates, _ = tx.update(PARAMS, tx.init(PARAMS), PARAMS, **SCORES)
  assert jax.tree.structure(updates) == jax.tree.structure(PARAMS)


@pytest.mark.parametrize("make, rows, extra", [
    (lambda: transforms.agm(("audio", "video"), alpha=1.0), ("audio", "video"),
     dict(agm_scores={"audio": 1.0, "video": 2.0})),
    (lambda: transforms.mmpareto(("audio", "video"), LABELS), ("fused", "audio", "video"), {}),
    (lambda: transforms.balgrad(("audio", "video")),
     ("task", "kl_audio", "kl_video", "uni_audio", "uni_video"),
     dict(unimodal_losses={"audio": 1.0, "video": 2.0})),
])
def test_stacked_rows_are_read_by_name_never_by_position_alone(make, rows, extra):
  tx = make()
  grads = jax.tree.map(lambda p: jnp.stack([p * (k + 1) for k in range(len(rows))]), PARAMS)
  with pytest.raises(TransformInputError, match=r"pass the extra argument objectives=\("):
    tx.update(grads, tx.init(PARAMS), PARAMS, **extra)
  swapped = rows[:-2] + (rows[-1], rows[-2])   # the last two modalities' rows exchanged
  with pytest.raises(TransformInputError, match="reads its rows as"):
    tx.update(grads, tx.init(PARAMS), PARAMS, objectives=swapped, **extra)
  with pytest.raises(TransformInputError, match="did you mean 'objectives'"):
    tx.update(grads, tx.init(PARAMS), PARAMS, objective=rows, **extra)
  renamed_fused = ("all",) + rows[1:] if rows[0] != "audio" else rows
  updates, _ = tx.update(grads, tx.init(PARAMS), PARAMS, objectives=renamed_fused, **extra)
  assert jax.tree.structure(updates) == jax.tree.structure(PARAMS)


def test_labels_of_another_structure_are_refused():
  tx = transforms.ogm_ge({"audio": {"w": "audio"}, "video": {"w": "video"}}, alpha=0.8)
  with pytest.raises(TransformInputError, match="ogm_ge: `labels` must have the structure"):
    tx.update(PARAMS, tx.init(PARAMS), PARAMS, **SCORES)


def test_misspelled_extra_args_are_named_but_other_transforms_args_pass():
  tx = transforms.ogm_ge(LABELS, alpha=0.8, noise=False)
  with pytest.raises(TransformInputError, match="'confidance'; did you mean 'confidence'"):
    tx.update(PARAMS, tx.init(PARAMS), PARAMS, confidance=SCORES["confidence"])
  cggm = transforms.cggm(LABELS)
  with pytest.raises(TransformInputError, match="did you mean 'unimodal_accuracy'"):
    cggm.update(PARAMS, cggm.init(PARAMS), PARAMS, unimodal_acuracy=SCORES["unimodal_accuracy"])
  # In a chain every transform sees every extra arg: unrelated names are fine.
  chain = optax.chain(transforms.ogm_ge(LABELS, alpha=0.8), transforms.cggm(LABELS),
                      optax.sgd(0.1))
  chain.update(PARAMS, chain.init(PARAMS), PARAMS, **SCORES)


@pytest.mark.parametrize("make, stacked, typo, meant", [
    (lambda: transforms.sam(rho=0.05), False, "grad_fm", "grad_fn"),
    (lambda: transforms.msam(("audio", "video")), False, "shapley_value", "shapley_values"),
    (lambda: transforms.owm_projection({"audio": {"w": True}, "video": {"w": False},
                                        "head": {"b": False}}, 3), False, "feature_means",
     "feature_mean"),
    (lambda: transforms.pcgrad(num_objectives=2), True, "keys", "key"),
])
def test_every_transform_names_a_misspelled_extra_arg(make, stacked, typo, meant):
  tx = make()
  grads = jax.tree.map(lambda p: jnp.stack([p, -p]), PARAMS) if stacked else PARAMS
  with pytest.raises(TransformInputError, match=f"'{typo}'; did you mean '{meant}'"):
    tx.update(grads, tx.init(PARAMS), PARAMS, **{typo: 1.0})


def test_labels_from_paths_for_a_linen_style_tree():
  params = {"params": {"audio_encoder": {"Dense_0": {"kernel": 1.0, "bias": 2.0}},
                       "video_encoder": {"Dense_0": {"kernel": 3.0}}, "head": {"kernel": 4.0}}}
  labels = mmbal.labels_from_paths(params, {"audio": r"audio_encoder", "video": r"video_encoder"})
  assert labels == {"params": {"audio_encoder": {"Dense_0": {"kernel": "audio", "bias": "audio"}},
                               "video_encoder": {"Dense_0": {"kernel": "video"}},
                               "head": {"kernel": "shared"}}}
  with pytest.raises(ValueError, match=r"no leaf matches text \('text_'\)"):
    mmbal.labels_from_paths(params, {"audio": "audio_", "text": "text_"})
  with pytest.raises(ValueError, match="matches the patterns of"):
    mmbal.labels_from_paths(params, {"audio": "encoder", "video": "video"})


def test_param_labels_refuses_what_it_cannot_read():
  with pytest.raises(TypeError, match="use mmbal.labels_from_paths"):
    mmbal.param_labels({"w": 1.0}, {"audio": []})


def test_import_mmbal_attaches_every_subpackage_lazily():
  code = ("import sys, mmbal; assert 'mmbal.diagnostics' not in sys.modules; "
          "mmbal.objectives.negative_learning; mmbal.diagnostics; mmbal.models; mmbal.data; "
          "print('ok')")
  out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
  assert out.stdout.strip() == "ok"
  with pytest.raises(AttributeError, match="no attribute 'nope'"):
    mmbal.nope  # pylint: disable=pointless-statement


# ----------------------------------------------------------------------------- the CLI's surface


def test_cli_version_is_instant_and_console_exits_zero(monkeypatch):
  out = subprocess.run([sys.executable, "-c", "import sys; from mmbal.train import cli; "
                        "sys.argv = ['mmbal', '--version']; cli.console()"],
                       capture_output=True, text=True)
  assert out.returncode == 0 and out.stdout.strip() == f"mmbal {mmbal.__version__}"
  probe = subprocess.run([sys.executable, "-c", "import sys, mmbal.train.cli; "
                          "print(sorted(m for m in ('jax', 'tensorflow_datasets') if m in sys.modules))"],
                         capture_output=True, text=True, check=True)
  assert probe.stdout.strip() == "[]"   # --help / --version import neither
  from mmbal.train import cli  # pylint: disable=import-outside-toplevel
  monkeypatch.setattr(cli, "main", lambda: {"a report": 1})   # diagnose / eval return dicts
  assert cli.console() == 0
  assert "mmbal=mmbal.train.cli:console" in open("setup.py").read()


@pytest.mark.parametrize("name, message", [
    ("mfet", "unknown data set 'mfet'; did you mean 'mfeat'"),
    ("uci_mfet", "did you mean 'uci_mfeat'"),
])
def test_a_wrong_data_name_is_refused_before_anything_loads(name, message, tmp_path):
  # Overrides before and after an option both count (the later one wins).
  out = subprocess.run([sys.executable, "-c", "import sys; from mmbal.train.cli import console; "
                        "sys.argv[0] = 'mmbal'; console()", "train", "data.name=mfeat", "--workdir", str(tmp_path / "run"), f"data.name={name}"],
                       capture_output=True, text=True)
  assert out.returncode == 1 and message in out.stderr
  assert not (tmp_path / "run").exists()


def test_data_name_aliases_resolve():
  from mmbal.data import names  # pylint: disable=import-outside-toplevel
  assert names.check("mfeat") == "uci_mfeat" and names.check("mmbal_crema_d") == "crema_d"
  assert names.DATA_SETS[names.check("food101")] == "mmbal_upmc_food101"


def test_every_builder_is_a_data_name():
  import tensorflow_datasets as tfds  # pylint: disable=import-outside-toplevel
  from mmbal import data  # pylint: disable=import-outside-toplevel
  from mmbal.data import names  # pylint: disable=import-outside-toplevel
  builders = {getattr(data, n).name for n in data.__all__
              if isinstance(getattr(data, n), type) and issubclass(getattr(data, n),
                                                                   tfds.core.DatasetBuilder)}
  assert builders == set(names.DATA_SETS.values())


def test_results_table_leaves_out_fused_rows_a_unimodal_run_does_not_have():
  from mmbal.train.report import format_table  # pylint: disable=import-outside-toplevel
  split = lambda fused: dict(count=10, fused=dict(accuracy=fused),
                             unimodal={"a": dict(accuracy=0.5), "b": dict(accuracy=0.25)},
                             without={"a": dict(accuracy=0.1), "b": dict(accuracy=0.2)})
  unimodal = format_table(dict(modalities=["a", "b"], validation=split(None), test=split(None)))
  assert "fused without" not in unimodal and "unimodal a" in unimodal
  joint = format_table(dict(modalities=["a", "b"], validation=split(0.75), test=split(0.5)))
  assert "fused without b    20.00   20.00" in joint


@pytest.mark.parametrize("override, message", [
    ("optimizer.grad_clip_norm=-1", r"'optimizer.grad_clip_norm' must be a number in \[0.0, inf\]"),
    ("train.num_steps=-5", r"'train.num_steps' must be an integer in \[0, inf\], got -5"),
    ("train.log_every_steps=0", "'train.log_every_steps' must be an integer in"),
    ("train.keep_checkpoints=0", "'train.keep_checkpoints' must be an integer in"),
    ("train.stop_after_steps=-1", "'train.stop_after_steps'"),
    ("optimizer.learning_rate=inf", r"'optimizer.learning_rate' must be a number in \[1e-12, 10.0\], got inf"),
    ("optimizer.momentum=5", "'optimizer.momentum'"),
    ("seed=1e400", "'seed' expects int"),
    ("train.batch_size=inf", "'train.batch_size' expects int"),
    ("data.val_fraction=0.999", "'data.val_fraction' must be a number in"),
])
def test_numeric_fields_are_range_checked_before_anything_loads(override, message):
  from mmbal.train import apply_overrides  # pylint: disable=import-outside-toplevel
  from mmbal.train.config import check_config, default_config  # pylint: disable=import-outside-toplevel
  with pytest.raises(ValueError, match=message):
    check_config(apply_overrides(default_config(), [override]))


def test_state_of_reads_one_transform_when_two_share_a_chain():
  chain = optax.chain(transforms.ogm_ge(LABELS, alpha=0.8), transforms.cggm(LABELS),
                      optax.sgd(0.1))
  _, state = chain.update(PARAMS, chain.init(PARAMS), PARAMS, **SCORES)
  ogm = transforms.state_of(state, transforms.OgmGeState)
  cggm = transforms.state_of(state, transforms.CggmState)
  assert set(ogm.coefficients) == set(cggm.coefficients) == {"audio", "video"}
  assert float(ogm.coefficients["audio"]) < 1.0 == float(ogm.coefficients["video"])   # audio leads


def test_objective_grads_checks_declared_supports_and_tuple_losses():
  params = {"audio": jnp.array([1.0, 2.0]), "video": jnp.array([3.0]), "head": jnp.array(0.5)}
  # An ogm_ge label tree: the head is `shared`, so by default the audio objective is
  # declared to touch only `audio` leaves, but its loss reads the head too.
  labels = {"audio": "audio", "video": "video", "head": "shared"}

  def losses(p):   # fused, audio, video; the audio loss reads the audio parameters
    audio = p["head"] * jnp.sum(p["audio"] ** 2)
    video = p["head"] * jnp.sum(p["video"] ** 2)
    return jnp.stack([audio + video, audio, video])

  objectives = ("fused", "audio", "video")
  with pytest.raises(ValueError, match=r"objective 'audio' has gradient on \['head'\] "
                                       r"\(labelled 'shared'\), outside its declared support"):
    mmbal.objective_grads(losses, params, objectives=objectives, labels=labels,
                          check_supports=True)
  res = mmbal.objective_grads(losses, params, objectives=objectives, labels=labels,
                              supports={"audio": ("audio", "shared"), "video": ("video", "shared")},
                              check_supports=True)
  assert res.grads["audio"].shape == (3, 2)
  with pytest.raises(ValueError, match="pass has_aux=True"):
    mmbal.objective_grads(lambda p: (losses(p), None), params)




def test_inject_hyperparams_works_or_names_static_args():
  stacked = {"w": jnp.stack([jnp.ones(3), -jnp.ones(3) + 0.5, jnp.ones(3)])}
  with pytest.raises(TransformInputError, match=r"static_args=\('num_objectives',\)"):
    optax.inject_hyperparams(transforms.pcgrad)(num_objectives=3, order="fixed").init(PARAMS)
  tx = optax.inject_hyperparams(transforms.pcgrad, static_args=("num_objectives",))(
      num_objectives=3, order="fixed")
  out, _ = jax.jit(tx.update)(stacked, tx.init({"w": jnp.ones(3)}))
  assert out["w"].shape == (3,)
  agm = optax.inject_hyperparams(transforms.agm, static_args=("modalities",))(
      modalities=("audio", "video"), alpha=1.0, momentum=0.9)
  state = agm.init({"w": jnp.ones(3)})
  out, state = jax.jit(lambda g, s: agm.update(g, s, agm_scores={"audio": 1.0, "video": 2.0},
                                                  objectives=("audio", "video")))(
      {"w": jnp.ones((2, 3))}, state)
  assert out["w"].shape == (3,) and float(state.hyperparams["momentum"]) == pytest.approx(0.9)


def test_pcgrad_needs_its_number_of_objectives_so_the_state_never_changes_shape():
  with pytest.raises(TypeError, match="num_objectives"):
    transforms.pcgrad()   # pylint: disable=missing-kwoa
  tx = transforms.pcgrad(num_objectives=2, order="fixed")
  state = tx.init(PARAMS)
  _, after = tx.update({"w": jnp.ones((2, 3))}, state)
  assert jax.tree.map(jnp.shape, after) == jax.tree.map(jnp.shape, state)
  with pytest.raises(TransformInputError, match="num_objectives=2 but the gradients stack 3"):
    tx.update({"w": jnp.ones((3, 3))}, state)


@pytest.mark.parametrize("make", [
    lambda: transforms.ogm_ge(LABELS, alpha=0.8),
    lambda: transforms.cggm(LABELS),
])
def test_label_transforms_work_inside_multi_transform(make):
  """optax.multi_transform hands each partition MaskedNode for the others' leaves."""
  partition = {"audio": {"w": "modulated"}, "video": {"w": "modulated"}, "head": {"b": "plain"}}
  tx = optax.multi_transform({"modulated": optax.chain(make(), optax.sgd(1.0)),
                              "plain": optax.sgd(1.0)}, partition)
  extra = dict(confidence={"audio": 2.0, "video": 1.0}, key=jax.random.key(0),
               unimodal_accuracy={"audio": 0.5, "video": 0.4})
  updates, _ = jax.jit(lambda g, s: tx.update(g, s, PARAMS, **extra))(PARAMS, tx.init(PARAMS))
  direct, _ = optax.chain(make(), optax.sgd(1.0)).update(PARAMS, optax.chain(make(), optax.sgd(1.0)).init(PARAMS), PARAMS, **extra)
  for m in ("audio", "video"):   # the modulated partition gets what the transform alone gives
    np.testing.assert_allclose(updates[m]["w"], direct[m]["w"], rtol=1e-6)
  np.testing.assert_array_equal(updates["head"]["b"], -PARAMS["head"]["b"])


def test_accumulated_stacked_gradients_are_projected_as_one_large_batch():
  # Micro-batch rows (objective 1; objective 2): batch 1 (2, 0); (0, 2), batch 2 (0, 0); (-2, 0).
  # Mean: g1 = (1, 0), g2 = (-1, 1); g1.g2 = -1 < 0, so PCGrad (fixed order) projects both:
  # g1' = g1 + 1/2 g2 = (0.5, 0.5), g2' = g2 + 1/1 g1 = (0, 1); sum (0.5, 1.5).
  # MultiSteps after PCGrad averages the per-batch results instead: batch 1 has no conflict,
  # (2, 2); batch 2 has dot 0, (-2, 0); mean (0, 1).
  batches = [{"w": jnp.asarray([[2.0, 0.0], [0.0, 2.0]])},
             {"w": jnp.asarray([[0.0, 0.0], [-2.0, 0.0]])}]
  params = {"w": jnp.zeros(2)}
  pcgrad = lambda: transforms.pcgrad(num_objectives=2, order="fixed")
  large = transforms.accumulate_objectives(optax.chain(pcgrad(), optax.scale(-1.0)), 2,
                                           num_objectives=2)
  after = optax.chain(pcgrad(), optax.MultiSteps(optax.scale(-1.0), 2).gradient_transformation())
  for tx, expected in ((large, [0.5, 1.5]), (after, [0.0, 1.0])):
    state = tx.init(params)
    first, state = jax.jit(tx.update)(batches[0], state, params)
    np.testing.assert_array_equal(first["w"], [0.0, 0.0])   # accumulating: no update yet
    out, state = jax.jit(tx.update)(batches[1], state, params)
    np.testing.assert_allclose(-out["w"], expected, rtol=1e-6)
  with pytest.raises(TransformInputError, match=r"expected stacked gradients \[K=2"):
    large.update({"w": jnp.ones(2)}, large.init(params), params)
  with pytest.raises(TransformInputError, match="sam/msam outside the accumulation"):
    large.update(batches[0], large.init(params), params, grad_fn=lambda p: p)
