"""Tests of `mmbal.data.pipeline`: loading, carving, training and evaluation batches."""

import grain
import numpy as np
import orbax.checkpoint as ocp
import pytest
import tensorflow_datasets as tfds

from mmbal import data
from mmbal.data import _builder
from mmbal.data import synthetic_imbalance as si

VIEWS = ["fac", "fou", "kar", "mor", "pix", "zer"]


class IdRecords:
  """A fake TFDS data source whose example k is `{"id": [k + 1], "label": (k + 1) % 3}`."""

  def __init__(self, n):
    self.n = n

  def __len__(self):
    return self.n

  def __getitems__(self, keys):
    return [{"id": np.array([k + 1], np.float32), "label": (k + 1) % 3} for k in keys]


def id_source(n):
  return data.Source(IdRecords(n), np.arange(n), ["id"], "ids")


def ids(batch):
  return (batch["id"][:, 0].astype(int) - 1).tolist()


@pytest.fixture(scope="module")
def mfeat(tfds_dir):
  return data.load("uci_mfeat", data_dir=tfds_dir)


# ----------------------------------------------------------------------------- load / DataSpec


def test_load_spec_and_elements(mfeat):
  spec = mfeat.spec
  assert list(spec.modalities) == VIEWS
  assert spec.modalities["pix"] == (240,) and spec.num_classes == 10
  assert spec.split_sizes == {"train": 1350, "validation": 150, "test": 500}
  example = mfeat.train[0]
  assert set(example) == set(VIEWS) | {"label"}
  assert example["fac"].dtype == np.float32 and example["fac"].shape == (216,)
  assert example["label"].dtype == np.int32 and 0 <= example["label"] < 10
  builder_spec = data.spec_from_builder(mfeat.builder)
  assert builder_spec.split_sizes == {"train": 1500, "test": 500}


def test_validation_is_carved_stratified_and_deterministic(mfeat, tfds_dir):
  train, val = mfeat.train.indices, mfeat.validation.indices
  assert set(train).isdisjoint(val)
  np.testing.assert_array_equal(np.sort(np.concatenate([train, val])), np.arange(1500))
  np.testing.assert_array_equal(np.bincount(mfeat.validation.to_numpy()["label"]), [15] * 10)
  np.testing.assert_array_equal(mfeat.test.indices, np.arange(500))
  again = data.load("uci_mfeat", data_dir=tfds_dir)
  other = data.load("uci_mfeat", data_dir=tfds_dir, seed=1)
  np.testing.assert_array_equal(again.validation.indices, val)
  assert not np.array_equal(other.validation.indices, val)


def test_modalities_are_selected_in_the_given_order(mfeat, tfds_dir):
  picked = data.load("uci_mfeat", data_dir=tfds_dir, modalities=["pix", "mor"])
  assert list(picked.spec.modalities) == ["pix", "mor"]
  batch = picked.test.gather([0, 1])
  assert list(batch) == ["pix", "mor", "label"]
  np.testing.assert_array_equal(batch["mor"], mfeat.test.gather([0, 1])["mor"])


def test_no_modalities_means_the_data_sets_defaults(tfds_dir):
  assert list(data.load("uci_mfeat", data_dir=tfds_dir, modalities=()).spec.modalities) == [
      "pix", "fou", "mor"]   # uci_mfeat's default_modalities; None: every view (above)


def test_in_memory_loads_are_reused_only_when_asked(tfds_dir):
  first = data.load("uci_mfeat", data_dir=tfds_dir, in_memory=True)
  assert data.load("uci_mfeat", data_dir=tfds_dir, in_memory=True) is not first
  with data.pipeline.reuse_in_memory_loads():
    reused = data.load("uci_mfeat", data_dir=tfds_dir, in_memory=True)
    assert data.load("uci_mfeat", data_dir=tfds_dir, in_memory=True) is reused
    assert data.load("uci_mfeat", data_dir=tfds_dir, in_memory=True, seed=1) is not reused
  np.testing.assert_array_equal(reused.train.to_numpy()["pix"], first.train.to_numpy()["pix"])


def test_in_memory_matches_records(mfeat, tfds_dir):
  cached = data.load("uci_mfeat", data_dir=tfds_dir, in_memory=True)
  positions = [5, 0, 1349, 7]
  fresh, memo = mfeat.train.gather(positions), cached.train.gather(positions)
  for key in fresh:
    np.testing.assert_array_equal(fresh[key], memo[key])
    assert fresh[key].dtype == memo[key].dtype


@pytest.mark.parametrize("kwargs, field", [
    (dict(modalities=["pix", "nope"]), "modalities"),
    (dict(modalities="pix"), "modalities"),
    (dict(val_fraction=0.0001), "val_fraction"),
    (dict(val_fraction=0.0), "val_fraction"),
    (dict(val_fraction=0.99999), "val_fraction"),
])
def test_load_rejects_bad_arguments(tfds_dir, kwargs, field):
  with pytest.raises(ValueError, match=field):
    data.load("uci_mfeat", data_dir=tfds_dir, **kwargs)


def test_load_synthetic_config_and_preset(tfds_dir):
  config = si.SyntheticImbalanceConfig(
      num_classes=3, num_train=30, num_test=12,
      modalities=(si.SyntheticModality("v", dim=5), si.SyntheticModality("a", dim=2)))
  loaded = data.load("synthetic_imbalance", data_dir=tfds_dir, config=config, val_fraction=0.2)
  assert list(loaded.spec.modalities) == ["v", "a"]  # Config order, not alphabetical.
  assert loaded.spec.modalities["v"] == (5,) and loaded.spec.num_classes == 3
  assert loaded.spec.split_sizes == {"train": 24, "validation": 6, "test": 12}
  tiny = si.SyntheticImbalanceConfig(num_train=1, num_test=1,
                                     modalities=(si.SyntheticModality("a"),))
  with pytest.raises(ValueError, match="val_fraction"):  # 10% of one example: empty.
    data.load("synthetic_imbalance", data_dir=tfds_dir, config=tiny)
  assert data.load("synthetic_imbalance/two_modal", data_dir=tfds_dir).spec.split_sizes[
      "test"] == 1000


class _TinyBuilder(_builder.ArrayRecordBuilder, skip_registration=True):
  """A tiny data set (`x` [2], 3 classes; 20 train, `NUM_TEST` test examples) whose examples
  come from `example(split, i)`."""

  VERSION = tfds.core.Version("1.0.0")
  NUM_TEST = 5

  def _info(self):
    return tfds.core.DatasetInfo(builder=self, features=tfds.features.FeaturesDict({
        "x": tfds.features.Tensor(shape=(2,), dtype=np.float32),
        "label": tfds.features.ClassLabel(num_classes=3)}))

  def _split_generators(self, dl_manager):
    return {"train": self._generate_examples("train", 20),
            "test": self._generate_examples("test", self.NUM_TEST)}

  def _generate_examples(self, split, n):
    for i in range(n):
      yield i, self.example(split, i)

  def example(self, split, i):
    raise NotImplementedError


class MmbalTestBadLabels(_TinyBuilder):
  """One train and one test label of -1, which ClassLabel lets through."""

  def example(self, split, i):
    return {"x": np.zeros(2, np.float32), "label": -1 if i == 3 else i % 3}


def test_load_rejects_labels_out_of_range(tfds_dir):
  with pytest.raises(ValueError, match=r"label: expected values in \[0, 3\).*\[-1\]"):
    data.load("mmbal_test_bad_labels", data_dir=tfds_dir)


class MmbalTestNanInputs(_TinyBuilder):
  """NaN in two test inputs."""

  NUM_TEST = 6

  def example(self, split, i):
    bad = split == "test" and i in (2, 4)
    return {"x": np.full(2, np.nan if bad else 1.0, np.float32), "label": i % 3}


def test_in_memory_load_refuses_nan_inputs_naming_split_and_modality(tfds_dir):
  with pytest.raises(ValueError, match=r"mmbal_test_nan_inputs test: modality 'x' has NaN or inf "
                                       r"values in 2 of 6 examples \(the first: example \d+\)"):
    data.load("mmbal_test_nan_inputs", data_dir=tfds_dir, in_memory=True)
  zeroed = data.load("mmbal_test_nan_inputs", data_dir=tfds_dir, in_memory=True, non_finite="zero")
  test = zeroed.test.to_numpy()
  assert len(test["x"]) == 6 and np.isfinite(test["x"]).all()
  assert (test["x"] == 0).all(axis=1).sum() == 2 and (test["x"] == 1).all(axis=1).sum() == 4
  dropped = data.load("mmbal_test_nan_inputs", data_dir=tfds_dir, in_memory=True, non_finite="drop")
  assert len(dropped.test) == 4 and dropped.spec.split_sizes["test"] == 4
  assert (dropped.test.to_numpy()["x"] == 1.0).all()


# ----------------------------------------------------------------------------- training batches


def test_steps_per_epoch(mfeat):
  assert data.steps_per_epoch(mfeat.train, 64) == 1350 // 64
  assert data.steps_per_epoch(100, 100) == 1
  for bad in (0, 1351):
    with pytest.raises(ValueError, match="global_batch_size"):
      data.steps_per_epoch(mfeat.train, bad)


def test_train_batches_have_fixed_shapes_and_types(mfeat):
  batch = next(data.train_iterator(mfeat.train, 32, shard_index=1, shard_count=2))
  assert set(batch) == set(VIEWS) | {"label"}
  assert batch["pix"].shape == (16, 240) and batch["pix"].dtype == np.float32
  assert batch["label"].shape == (16,) and batch["label"].dtype == np.int32


def test_train_rejects_bad_batch_sizes(mfeat):
  with pytest.raises(ValueError, match="global_batch_size.*multiple"):
    data.train_iterator(mfeat.train, 33, shard_index=0, shard_count=2)
  with pytest.raises(ValueError, match="global_batch_size"):
    data.train_iterator(id_source(10), 12)
  with pytest.raises(ValueError, match="shard_index"):
    data.train_iterator(id_source(10), 4, shard_index=2, shard_count=2)


def test_each_epoch_is_a_new_seeded_permutation():
  n, batch = 24, 6
  it = data.train_iterator(id_source(n), batch, seed=7)
  stream = [i for _ in range(3 * n // batch) for i in ids(next(it))]
  epochs = [stream[k * n:(k + 1) * n] for k in range(3)]
  for epoch in epochs:
    assert sorted(epoch) == list(range(n))
  assert epochs[0] != epochs[1] != epochs[2] and epochs[0] != list(range(n))
  same = data.train_iterator(id_source(n), batch, seed=7)
  other = data.train_iterator(id_source(n), batch, seed=8)
  assert ids(next(same)) == epochs[0][:batch]
  assert ids(next(other)) != epochs[0][:batch]


def test_processes_split_each_global_batch():
  n, global_batch = 30, 8
  single = data.train_iterator(id_source(n), global_batch, seed=3, shard_index=0, shard_count=1)
  procs = [data.train_iterator(id_source(n), global_batch, seed=3, shard_index=p, shard_count=2)
           for p in range(2)]
  for _ in range(10):  # Crosses several epoch boundaries.
    parts = [ids(next(it)) for it in procs]
    assert len(parts[0]) == len(parts[1]) == 4
    assert set(parts[0]).isdisjoint(parts[1])
    assert sorted(parts[0] + parts[1]) == sorted(ids(next(single)))


def test_finite_epochs_give_every_process_the_same_number_of_batches():
  # 3 epochs of 9 = 27 examples -> 6 global batches of 4; the last 3 are dropped
  # (split naively, process 0 would get 14 examples = 7 batches, process 1 only 6).
  counts = [len(list(data.train_iterator(id_source(9), 4, num_epochs=3, shard_index=p,
                                         shard_count=2))) for p in range(2)]
  assert counts == [6, 6]
  assert len(list(data.train_iterator(id_source(11), 4, num_epochs=1))) == 2


def test_iterator_state_resumes_exactly(mfeat):
  it = data.train_iterator(mfeat.train, 64, seed=5)
  for _ in range(25):  # Past the end of the first epoch (21 steps).
    next(it)
  state = it.get_state()
  expected = [next(it) for _ in range(3)]
  fresh = data.train_iterator(mfeat.train, 64, seed=5)
  fresh.set_state(state)
  for want in expected:
    got = next(fresh)
    for key in want:
      np.testing.assert_array_equal(got[key], want[key])


def test_iterator_resumes_from_an_orbax_checkpoint(mfeat, tmp_path):
  it = data.train_iterator(mfeat.train, 32, seed=2)
  first = [next(it) for _ in range(4)]
  with ocp.CheckpointManager(tmp_path / "ckpt") as manager:
    manager.save(4, args=ocp.args.Composite(data=grain.checkpoint.CheckpointSave(it)))
    manager.wait_until_finished()
  expected = [next(it) for _ in range(3)]

  fresh = data.train_iterator(mfeat.train, 32, seed=2)
  with ocp.CheckpointManager(tmp_path / "ckpt") as manager:
    assert manager.latest_step() == 4
    manager.restore(4, args=ocp.args.Composite(data=grain.checkpoint.CheckpointRestore(fresh)))
  for want in expected:
    got = next(fresh)
    np.testing.assert_array_equal(got["label"], want["label"])
    np.testing.assert_array_equal(got["pix"], want["pix"])
  assert not np.array_equal(expected[0]["pix"], first[0]["pix"])


# ----------------------------------------------------------------------------- evaluation batches


@pytest.mark.parametrize("n, global_batch, count", [(11, 4, 2), (3, 4, 4), (10, 5, 1), (8, 6, 3)])
def test_eval_scores_every_example_once(n, global_batch, count):
  seen, lengths = [], set()
  for p in range(count):
    batches = list(data.eval_batches(id_source(n), global_batch, shard_index=p,
                                     shard_count=count))
    lengths.add(len(batches))
    for batch in batches:
      assert batch["mask"].dtype == bool and batch["mask"].shape == (global_batch // count,)
      assert batch["id"].shape == (global_batch // count, 1)
      seen += [i for i, real in zip(ids(batch), batch["mask"]) if real]
      assert not batch["id"][~batch["mask"]].any() and not batch["label"][~batch["mask"]].any()
  assert len(lengths) == 1  # Same number of batches on every process.
  assert sorted(seen) == list(range(n))


def test_eval_batches_on_real_data_in_order(mfeat):
  batches = list(data.eval_batches(mfeat.test, 64, shard_index=0, shard_count=1))
  assert len(batches) == 8 and sum(b["mask"].sum() for b in batches) == 500
  full = mfeat.test.to_numpy()
  for key in full:
    got = np.concatenate([b[key][b["mask"]] for b in batches])
    np.testing.assert_array_equal(got, full[key])


def test_worker_processes_give_the_same_batches_and_resume():
  # data.num_workers: batches built in grain worker processes are the in-process ones, and
  # a worker iterator's state resumes a worker iterator exactly.
  same = data.train_iterator(id_source(40), 8, seed=4)
  it = data.train_iterator(id_source(40), 8, seed=4, num_workers=1)
  expected = [ids(next(same)) for _ in range(7)]
  assert [ids(next(it)) for _ in range(4)] == expected[:4]
  fresh = data.train_iterator(id_source(40), 8, seed=4, num_workers=1)
  fresh.set_state(it.get_state())
  assert [ids(next(fresh)) for _ in range(3)] == expected[4:]
  with pytest.raises(ValueError, match="num_workers: expected an int >= 0"):
    data.train_iterator(id_source(40), 8, num_workers=-1)
