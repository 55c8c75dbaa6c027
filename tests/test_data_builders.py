"""Tests of the TFDS builders `uci_mfeat` and `synthetic_imbalance`."""

import numpy as np
import pytest
import tensorflow_datasets as tfds

from mmbal.data import _split
from mmbal.data import synthetic_imbalance as si
from mmbal.data import uci_mfeat

M = si.SyntheticModality


def _read_all(builder, split):
  """A prepared split as arrays (in the order TFDS stored it)."""
  records = builder.as_data_source(split)
  rows = records.__getitems__(list(range(len(records))))
  return {k: np.stack([r[k] for r in rows]) for k in rows[0]}


# ----------------------------------------------------------------------------- stratified split


def test_stratified_split_is_a_stratified_partition():
  labels = np.repeat([0, 1, 2], [50, 30, 20])
  first, rest = _split.stratified_split(labels, 10, seed=0)
  assert len(first) == 10 and len(rest) == 90
  np.testing.assert_array_equal(np.sort(np.concatenate([first, rest])), np.arange(100))
  np.testing.assert_array_equal(np.bincount(labels[first], minlength=3), [5, 3, 2])
  again, _ = _split.stratified_split(labels, 10, seed=0)
  other, _ = _split.stratified_split(labels, 10, seed=1)
  np.testing.assert_array_equal(first, again)
  assert not np.array_equal(first, other)


def test_stratified_split_hands_leftover_slots_to_largest_remainders():
  labels = np.repeat([0, 1, 2], [4, 4, 2])  # Shares of 3 slots: 1.2, 1.2, 0.6.
  first, _ = _split.stratified_split(labels, 3, seed=0)
  np.testing.assert_array_equal(np.bincount(labels[first], minlength=3), [1, 1, 1])


# ----------------------------------------------------------------------------- uci_mfeat


@pytest.fixture(scope="module")
def mfeat_builder(tfds_dir):
  builder = tfds.builder("uci_mfeat", data_dir=tfds_dir)
  builder.download_and_prepare()
  return builder


def test_mfeat_resource_is_small_and_attributed():
  npz = uci_mfeat.resource_dir() / "mfeat.npz"
  readme = (uci_mfeat.resource_dir() / "README.md").read_text()
  assert len(npz.read_bytes()) < 3 * 2**20
  assert "licensed CC BY 4.0" in readme
  assert "https://doi.org/10.24432/C5HC70" in readme


def test_mfeat_builder_features_splits_and_format(mfeat_builder):
  info = mfeat_builder.info
  dims = {"fac": 216, "fou": 76, "kar": 64, "mor": 6, "pix": 240, "zer": 47}
  for view, dim in dims.items():
    assert info.features[view].shape == (dim,)
    assert info.features[view].np_dtype == np.float32
  assert info.features["label"].num_classes == 10
  assert info.metadata["modalities"] == list(dims)
  assert str(info.file_format.value) == "array_record"
  assert list(mfeat_builder.data_path.glob("uci_mfeat-train.array_record-*"))
  train, test = _read_all(mfeat_builder, "train"), _read_all(mfeat_builder, "test")
  np.testing.assert_array_equal(np.bincount(train["label"]), [150] * 10)
  np.testing.assert_array_equal(np.bincount(test["label"]), [50] * 10)


def test_mfeat_is_standardised_with_train_statistics(mfeat_builder):
  train, test = _read_all(mfeat_builder, "train"), _read_all(mfeat_builder, "test")
  # Statistics as stored on disk (a fresh builder reads metadata.json).
  stats = tfds.builder("uci_mfeat", data_dir=mfeat_builder.data_dir_root).info.metadata[
      "standardisation"]
  with (uci_mfeat.resource_dir() / "mfeat.npz").open("rb") as f, np.load(f) as z:
    raw = {v: z[v].astype(np.float64) for v in uci_mfeat.VIEWS}
  prep = uci_mfeat._prepared()  # pylint: disable=protected-access
  assert set(prep["train"]).isdisjoint(prep["test"])
  assert len(prep["train"]) + len(prep["test"]) == 2000
  key = lambda fac: np.lexsort(np.round(fac).T[::-1])  # Sort rows by the integer view.
  for split, data in (("train", train), ("test", test)):
    idx = prep[split]
    order = key(data["fac"] * np.array(stats["fac"]["std"]) + np.array(stats["fac"]["mean"]))
    raw_order = key(raw["fac"][idx])
    for v in uci_mfeat.VIEWS:
      unscaled = data[v] * np.array(stats[v]["std"]) + np.array(stats[v]["mean"])
      np.testing.assert_allclose(unscaled[order], raw[v][idx][raw_order], rtol=1e-4, atol=1e-3)
    if split == "train":
      for v in uci_mfeat.VIEWS:
        np.testing.assert_allclose(data[v].mean(0), 0.0, atol=1e-4)
        np.testing.assert_allclose(data[v].std(0), 1.0, atol=1e-4)
  # The views had wildly different scales before standardisation.
  assert max(np.abs(raw[v]).max() for v in raw) > 1000 * np.abs(raw["fou"]).max()


# ----------------------------------------------------------------------------- synthetic_imbalance

CONTROLS = si.SyntheticImbalanceConfig(
    num_classes=4, num_train=2000, num_test=1000, seed=3, modalities=(
        M("strong", dim=8, noise=0.5),
        M("half", dim=8, informativeness=0.5, noise=0.5),
        M("useless", dim=8, informativeness=0.0, noise=0.5),
        M("quadratic", dim=8, noise=0.5, order=2)))


@pytest.fixture(scope="module")
def controls(tmp_path_factory):
  builder = si.SyntheticImbalance(config=CONTROLS, data_dir=tmp_path_factory.mktemp("tfds"))
  builder.download_and_prepare()
  return _read_all(builder, "train"), _read_all(builder, "test")


def _centroid_accuracy(train, test, name, k):
  centroids = np.stack([train[name][train["label"] == c].mean(0) for c in range(k)])
  dist = ((test[name][:, None] - centroids[None]) ** 2).sum(-1)
  return (dist.argmin(1) == test["label"]).mean()


def _quadratic_probe_accuracy(train, test, name, k):
  """Least squares on [1, x, x_i x_j] features: can read second-moment signals."""
  def feats(x):
    i, j = np.triu_indices(x.shape[1])
    return np.c_[np.ones(len(x)), x, x[:, i] * x[:, j]]
  w = np.linalg.lstsq(feats(train[name]), np.eye(k)[train["label"]], rcond=None)[0]
  return (np.argmax(feats(test[name]) @ w, 1) == test["label"]).mean()


def _linear_gd_loss_drop(x, labels, k, steps=20, lr=0.01):
  """Drop of the cross-entropy of softmax regression after `steps` GD steps from zero."""
  w, y = np.zeros((x.shape[1], k)), np.eye(k)[labels]
  for _ in range(steps + 1):
    z = x @ w
    z = z - z.max(1, keepdims=True)
    p = np.exp(z) / np.exp(z).sum(1, keepdims=True)
    loss = -np.log(p[np.arange(len(x)), labels]).mean()
    w -= lr * x.T @ (p - y) / len(x)
  return np.log(k) - loss


def test_synthetic_builder_features_and_splits(controls):
  train, test = controls
  for m in CONTROLS.modalities:
    assert train[m.name].shape == (2000, 8) and train[m.name].dtype == np.float32
  assert test["label"].shape == (1000,)
  np.testing.assert_array_equal(np.bincount(train["label"]), [500] * 4)


def test_synthetic_builder_stores_exactly_the_generated_data(controls):
  generated = si.generate(CONTROLS, "test")
  stored = controls[1]
  order, gen_order = np.argsort(stored["strong"][:, 0]), np.argsort(generated["strong"][:, 0])
  for key in generated:
    np.testing.assert_array_equal(stored[key][order], generated[key][gen_order])


def test_informativeness_caps_accuracy(controls):
  train, test = controls
  strong = _centroid_accuracy(train, test, "strong", 4)
  half = _centroid_accuracy(train, test, "half", 4)
  useless = _centroid_accuracy(train, test, "useless", 4)
  assert strong > 0.95
  assert abs(half - (0.5 + 0.5 / 4)) < 0.06  # The cap p + (1 - p) / K.
  assert strong - half > 0.25
  assert abs(useless - 0.25) < 0.05
  assert abs(_quadratic_probe_accuracy(train, test, "useless", 4) - 0.25) < 0.05


def test_order_two_hides_the_signal_from_linear_read_outs(controls):
  train, test = controls
  assert _centroid_accuracy(train, test, "quadratic", 4) < 0.4
  assert _quadratic_probe_accuracy(train, test, "quadratic", 4) > 0.7
  # Linear softmax regression: no loss decrease on order 2, a clear one on order 1.
  assert _linear_gd_loss_drop(train["quadratic"], train["label"], 4) < 0.01
  assert _linear_gd_loss_drop(train["strong"], train["label"], 4) > 0.1


def test_scale_changes_learning_speed_but_not_the_data():
  base = dict(num_classes=4, num_train=1000, num_test=10, seed=0)
  fast = si.generate(si.SyntheticImbalanceConfig(modalities=(M("x", dim=8),), **base), "train")
  slow = si.generate(si.SyntheticImbalanceConfig(
      modalities=(M("x", dim=8, scale=0.1),), **base), "train")
  np.testing.assert_allclose(slow["x"], 0.1 * fast["x"], rtol=1e-5, atol=1e-6)
  drop_fast = _linear_gd_loss_drop(fast["x"], fast["label"], 4)
  drop_slow = _linear_gd_loss_drop(slow["x"], slow["label"], 4)
  assert drop_fast > 0.1 and drop_slow < 0.05 * drop_fast


def test_a_modality_does_not_depend_on_the_others():
  base = dict(num_classes=3, num_train=50, num_test=10, seed=1)
  alone = si.generate(si.SyntheticImbalanceConfig(modalities=(M("a"), M("b")), **base), "train")
  other = si.generate(si.SyntheticImbalanceConfig(
      modalities=(M("a", noise=9.0, dim=3), M("b")), **base), "train")
  np.testing.assert_array_equal(alone["b"], other["b"])
  np.testing.assert_array_equal(alone["label"], other["label"])


def _record_bytes(config, data_dir):
  builder = si.SyntheticImbalance(config=config, data_dir=data_dir)
  builder.download_and_prepare()
  files = sorted(builder.data_path.glob("*.array_record-*"))
  assert len(files) == 2
  return [f.read_bytes() for f in files]


def test_same_seed_same_bytes_different_seed_different_data(tmp_path):
  def config(seed):
    return si.SyntheticImbalanceConfig(num_train=40, num_test=20, seed=seed,
                                       modalities=(M("a", dim=4), M("b", dim=2, order=2)))
  first = _record_bytes(config(0), tmp_path / "one")
  assert first == _record_bytes(config(0), tmp_path / "two")
  assert first[0] != _record_bytes(config(1), tmp_path / "three")[0]
  a, b = si.generate(config(0), "train"), si.generate(config(1), "train")
  assert not np.allclose(a["a"], b["a"])


def test_config_names_are_derived_from_all_parameters():
  def name(**kw):
    kw.setdefault("modalities", (M("a"), M("b")))
    return si.SyntheticImbalanceConfig(**kw).name
  base = name()
  assert base.startswith("custom_") and base == name()
  assert name(modalities=({"name": "a"}, {"name": "b", "dim": 32})) == base
  variants = [name(seed=1), name(num_classes=3), name(num_train=7), name(num_test=7),
              name(modalities=(M("a"), M("b", order=2))), name(modalities=(M("b"), M("a"))),
              name(modalities=(M("a"), M("b", informativeness=0.5)))]
  assert len({base, *variants}) == 1 + len(variants)


def test_presets_are_registered_configs():
  names = [c.name for c in si.SyntheticImbalance.BUILDER_CONFIGS]
  assert names == ["two_modal", "three_modal", "six_modal"]
  six = si.SyntheticImbalance.builder_configs["six_modal"]
  assert len(six.modalities) == 6


@pytest.mark.parametrize("kwargs, field", [
    (dict(modalities=()), "modalities"),
    (dict(modalities=(M("a"), M("a"))), "modalities"),
    (dict(modalities=(M("a"),), num_classes=1), "num_classes"),
    (dict(modalities=(M("a"),), num_train=0), "num_train"),
])
def test_invalid_configs_are_rejected(kwargs, field):
  with pytest.raises(ValueError, match=field):
    si.SyntheticImbalanceConfig(**kwargs)


@pytest.mark.parametrize("kwargs, field", [
    (dict(name="label"), "name"), (dict(name="a", dim=0), "a.dim"),
    (dict(name="a", informativeness=1.5), "a.informativeness"),
    (dict(name="a", noise=-1.0), "a.noise"), (dict(name="a", scale=0.0), "a.scale"),
    (dict(name="a", order=3), "a.order"),
])
def test_invalid_modalities_are_rejected(kwargs, field):
  with pytest.raises(ValueError, match=field):
    M(**kwargs)
