"""Tests of the MMSA sentiment builder (CMU-MOSI / CMU-MOSEI / CH-SIMS, regression) and the
IEMOCAP builder (MulT pickles, multi-label), and of the regression task in the data layer.

The fixtures are pickles in the exact MMSA / MulT layouts (`datasets.md` §9.5, §10.2):
`{"train", "valid", "test"}` dicts with the real keys, dtypes and per-example shapes
(MOSI unaligned: text (50, 768), text_bert (3, 50), audio (375, 5), vision (500, 20)),
COVAREP `-inf` audio entries, lengths, numpy string ids; ~10 synthetic examples, no real
content.
"""

import json
import os
import pickle

import numpy as np
import pytest
import tensorflow_datasets as tfds

import mmbal.data
from mmbal.data import iemocap
from mmbal.data import manual
from restore_check import assert_restores
from mmbal.data import mmsa
from mmbal.data import pipeline
from mmbal.data.manual import ManualDirError

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SIZES = (("train", 6), ("valid", 2), ("test", 2))


def mmsa_split(n, L=(50, 375, 500), D=(5, 20), *, sims=False, aligned=False, seed=0,
               float64=False):
  """One split as MMSA-FET writes it (datasets.md §9.5)."""
  lt, la, lv = L
  r = np.random.default_rng(seed + n)
  ids, mask = np.zeros((n, lt)), np.zeros((n, lt))
  for i in range(n):  # [CLS] w1..wk [SEP] pad...
    k = int(r.integers(3, lt - 1))
    ids[i, :k] = np.r_[101, r.integers(1000, 2000, k - 2), 102]
    mask[i, :k] = 1
  dtype = np.float64 if float64 else np.float32
  d = {"raw_text": np.array([f"utterance {i}" for i in range(n)]),
       "id": np.array([f"vid{seed}_{i}$_${i}" for i in range(n)]),
       "text": r.normal(size=(n, lt, 768)).astype(dtype),
       "text_bert": np.stack([ids, mask, np.zeros_like(ids)], 1).astype(np.float32),
       "audio": r.normal(size=(n, la, D[0])).astype(dtype),
       "vision": r.normal(size=(n, lv, D[1])).astype(dtype),
       "annotations": np.array(["Negative", "Neutral", "Positive"] * n)[:n],
       "classification_labels": r.integers(0, 3, n).astype(np.float32),
       "regression_labels": r.uniform(-3, 3, n).astype(np.float32)}
  d["audio"][0, 0, 0] = -np.inf  # The COVAREP -inf case.
  if not aligned:
    d["audio_lengths"] = r.integers(1, la + 1, n)
    d["vision_lengths"] = r.integers(1, lv + 1, n)
  if sims:
    d["regression_labels"] = r.choice(np.linspace(-1, 1, 11), n).astype(np.float32)
    for m in "TAV":
      d[f"regression_labels_{m}"] = r.choice(np.linspace(-1, 1, 11), n).astype(np.float32)
  return d


def mosi_unaligned():
  data = {k: mmsa_split(n, seed=s) for s, (k, n) in enumerate(SIZES)}
  train = data["train"]
  train["audio"][2, 5, 1] = train["audio"][2, 6, 1] = -np.inf  # More -inf, in another example.
  train["vision"][3, 0, 0] = np.nan
  train["audio_lengths"][4] = 375  # The full length.
  train["vision_lengths"][5] = 0  # No visual frame at all.
  return data


def dump(data, path, protocol=4):
  os.makedirs(os.path.dirname(path), exist_ok=True)
  with open(path, "wb") as f:
    pickle.dump(data, f, protocol=protocol)


def mult_split(n, L=(50, 50, 50), D=(300, 5, 20), labels=None, ids=True):
  r = np.random.default_rng(n)
  d = {"text": r.random((n, L[0], D[0])).astype(np.float32),
       "audio": r.random((n, L[1], D[1])).astype(np.float32),
       "vision": r.random((n, L[2], D[2])).astype(np.float32),
       "labels": r.uniform(-3, 3, (n, 1, 1)).astype(np.float32) if labels is None else labels}
  if ids:
    d["id"] = np.array([[b"vid", str(i).encode(), str(i + 1).encode()] for i in range(n)])
  d["audio"][0, 1, 2] = -np.inf
  return d


def iemocap_labels(n, seed=0):
  """(n, 4, 2) (negative, positive) pairs; row 0 has two emotions, row 1 none."""
  r = np.random.default_rng(seed)
  positive = np.zeros((n, 4), np.int64)
  positive[np.arange(n), r.integers(0, 4, n)] = 1
  positive[0] = [0, 1, 0, 1]
  positive[1] = 0
  return np.stack([1 - positive, positive], -1).astype(np.float32), positive


@pytest.fixture(scope="module")
def manual_dir(tmp_path_factory):
  """`<manual>/mmsa/...` and `<manual>/iemocap/...` as users have them; returns (dir, data)."""
  root = tmp_path_factory.mktemp("manual")
  data = {}
  data["mosi_unaligned"] = mosi_unaligned()
  dump(data["mosi_unaligned"], f"{root}/mmsa/MOSI/Processed/unaligned_50.pkl")
  aligned = {k: mmsa_split(n, L=(50, 50, 50), aligned=True, seed=s, float64=True)
             for s, (k, n) in enumerate(SIZES)}
  for d in aligned.values():  # Object arrays of str, as older files have.
    d["id"] = np.array(list(d["id"]), dtype=object)
    d["raw_text"] = list(d["raw_text"])
  data["mosi_aligned"] = aligned
  dump(aligned, f"{root}/mmsa/MOSI/Processed/aligned_50.pkl")
  sims = {k: mmsa_split(n, L=(39, 400, 55), D=(33, 709), sims=True, seed=s)
          for s, (k, n) in enumerate(SIZES)}
  sims["config"] = {"featureExtractor": "MMSA-FET"}  # MMSA-FET's extra top-level key.
  data["sims_unaligned"] = sims
  dump(sims, f"{root}/mmsa/SIMS/Processed/unaligned_39.pkl")
  mult = {k: mult_split(n) for k, n in SIZES}
  data["mosi_mult_aligned"] = mult
  dump(mult, f"{root}/mmsa/mult/mosi_data.pkl", protocol=2)  # bytes via _codecs.encode.
  data["iemocap"] = {}
  for k, n in SIZES:
    labels, positive = iemocap_labels(n, seed=n)
    data["iemocap"][k] = mult_split(n, L=(20, 20, 20), D=(300, 74, 35), labels=labels, ids=False)
    data["iemocap"][k]["positive"] = positive
  dump({k: {a: v for a, v in d.items() if a != "positive"} for k, d in data["iemocap"].items()},
       f"{root}/iemocap/iemocap_data.pkl")
  return str(root), data


def _build(name, config, data_dir, manual, **kwargs):
  builder = tfds.builder(name, config=config, data_dir=str(data_dir), manual_dir=str(manual),
                         **kwargs)
  builder.download_and_prepare()
  return builder


def _records(builder, split):
  source = builder.as_data_source(split)
  return source.__getitems__(list(range(len(source))))


@pytest.fixture(scope="module")
def built(manual_dir, tmp_path_factory):
  """Every fixture config built once into one data dir: {config: builder}."""
  root, _ = manual_dir
  data_dir = tmp_path_factory.mktemp("tfds")
  out = {c: _build("mmsa", c, data_dir, root) for c in
         ("mosi_unaligned", "mosi_aligned", "sims_unaligned", "mosi_mult_aligned")}
  out["iemocap"] = _build("iemocap", "mult_aligned", data_dir, root)
  out["data_dir"] = str(data_dir)
  return out


# ----------------------------------------------------------------------------- MMSA


def test_mosi_unaligned_features_masks_labels(built, manual_dir):
  builder, data = built["mosi_unaligned"], manual_dir[1]["mosi_unaligned"]
  assert builder.info.metadata["task"] == "regression"
  assert builder.info.metadata["shapes"] == {"text": [50, 768], "audio": [375, 5],
                                             "vision": [500, 20]}
  assert {k: v.num_examples for k, v in builder.info.splits.items()} == {
      "train": 6, "validation": 2, "test": 2}
  for split, key in mmsa.SPLIT_KEYS.items():
    d = data[key]
    for i, r in enumerate(_records(builder, split)):
      assert r["id"].decode() == d["id"][i] and r["raw_text"].decode() == d["raw_text"][i]
      assert r["label"] == d["regression_labels"][i]
      np.testing.assert_array_equal(r["text"], d["text"][i])
      audio = d["audio"][i].copy()
      audio[np.isneginf(audio)] = 0
      np.testing.assert_array_equal(r["audio"], audio)
      vision = np.nan_to_num(d["vision"][i], nan=0.0)
      np.testing.assert_array_equal(r["vision"], vision)
      assert r["audio"].dtype == np.float32 and np.isfinite(r["audio"]).all()
      assert r["text_mask"].dtype == bool
      np.testing.assert_array_equal(r["text_mask"], d["text_bert"][i, 1] == 1)
      np.testing.assert_array_equal(r["text_ids"], d["text_bert"][i, 0].astype(np.int32))
      for m, steps in (("audio", 375), ("vision", 500)):
        length = d[f"{m}_lengths"][i]
        assert r[f"{m}_mask"].shape == (steps,)
        assert r[f"{m}_mask"].sum() == length and r[f"{m}_mask"][:length].all()
  assert builder.info.metadata["mask_source"] == {
      "text": "text_bert[:, 1] (BERT attention mask)", "audio": "audio_lengths",
      "vision": "vision_lengths"}
  f = builder.info.metadata["file"]
  assert f["release_sha256"] == mmsa.RELEASE_SHA256["MOSI/Processed/unaligned_50.pkl"]
  assert f["matches_release"] is False and len(f["sha256"]) == 64


def test_nonfinite_values_are_counted_per_split(built, manual_dir):
  counts = built["mosi_unaligned"].info.metadata["nonfinite"]
  assert counts["train"]["audio"] == {"-inf": 3, "+inf": 0, "nan": 0, "examples": 2}
  assert counts["train"]["vision"] == {"-inf": 0, "+inf": 0, "nan": 1, "examples": 1}
  assert counts["train"]["text"]["examples"] == 0
  for split in ("validation", "test"):
    assert counts[split]["audio"] == {"-inf": 1, "+inf": 0, "nan": 0, "examples": 1}
  # Independently: the fixture's own -inf count.
  data = manual_dir[1]["mosi_unaligned"]
  assert counts["train"]["audio"]["-inf"] == int(np.isneginf(data["train"]["audio"]).sum())


def test_nonfinite_counts_are_logged(manual_dir, tmp_path, caplog):
  with caplog.at_level("WARNING", logger="mmbal.data.mmsa"):
    _build("mmsa", "mosi_unaligned", tmp_path, manual_dir[0])
  assert any("audio has 3 -inf, 0 +inf and 0 NaN values in 2 of 6 examples" in m
             for m in caplog.messages)


def test_aligned_float64_object_ids_and_all_true_masks(built, manual_dir):
  builder, data = built["mosi_aligned"], manual_dir[1]["mosi_aligned"]
  assert builder.info.metadata["shapes"] == {"text": [50, 768], "audio": [50, 5],
                                             "vision": [50, 20]}
  assert builder.info.metadata["mask_source"]["audio"] == "none: all steps (no audio_lengths)"
  records = _records(builder, "train")
  for i, r in enumerate(records):
    assert r["id"].decode() == data["train"]["id"][i]
    assert r["audio_mask"].all() and r["vision_mask"].all() and r["audio"].dtype == np.float32
    np.testing.assert_allclose(r["text"], data["train"]["text"][i].astype(np.float32))
  assert builder.info.metadata["nonfinite"]["train"]["audio"]["-inf"] == 1


def test_sims_labels_and_unimodal_labels(built, manual_dir):
  builder, data = built["sims_unaligned"], manual_dir[1]["sims_unaligned"]
  assert builder.info.metadata["shapes"] == {"text": [39, 768], "audio": [400, 33],
                                             "vision": [55, 709]}
  for split, key in mmsa.SPLIT_KEYS.items():
    for i, r in enumerate(_records(builder, split)):
      assert -1 <= r["label"] <= 1 and r["label"] == data[key]["regression_labels"][i]
      for m, k in zip(mmsa.MODALITIES, "TAV"):
        assert r[f"label_{m}"] == data[key][f"regression_labels_{k}"][i]
  assert builder.info.metadata["file"]["matches_release"] is False


def test_mult_format_mosi(built, manual_dir):
  builder, data = built["mosi_mult_aligned"], manual_dir[1]["mosi_mult_aligned"]
  assert "text_ids" not in builder.info.features
  assert builder.info.metadata["shapes"]["text"] == [50, 300]
  assert builder.info.metadata["file"]["release_sha256"] is None
  records = _records(builder, "test")
  assert [r["id"].decode() for r in records] == ["vid$_$0$_$1", "vid$_$1$_$2"]
  for i, r in enumerate(records):
    assert r["label"] == data["test"]["labels"][i, 0, 0] and r["text_mask"].all()
  assert builder.info.metadata["nonfinite"]["test"]["audio"]["-inf"] == 1


def test_load_gives_regression_batches_with_masks(built):
  data = mmbal.data.load("mmsa", data_dir=built["data_dir"], config="mosi_unaligned",
                         in_memory=True)
  spec = data.spec
  assert spec.task == "regression" and spec.num_classes == 1
  assert spec.modalities == {"text": (50, 768), "audio": (375, 5), "vision": (500, 20)}
  assert spec.masks == ("text", "audio", "vision")
  assert spec.split_sizes == {"train": 6, "validation": 2, "test": 2}
  batches = list(mmbal.data.train_iterator(data.train, 2, seed=0, num_epochs=1, shard_index=0,
                                           shard_count=1))
  assert len(batches) == 3
  for b in batches:
    assert b["label"].shape == (2,) and b["label"].dtype == np.float32
    assert b["audio"].shape == (2, 375, 5) and b["audio"].dtype == np.float32
    assert np.isfinite(b["audio"]).all()
    assert b["audio_mask"].shape == (2, 375) and b["audio_mask"].dtype == bool
    assert b["text_mask"].shape == (2, 50) and b["vision_mask"].shape == (2, 500)
  (batch,) = mmbal.data.eval_batches(data.test, 4, shard_index=0, shard_count=1)
  assert batch["mask"].tolist() == [True, True, False, False]
  assert batch["label"].dtype == np.float32 and batch["text"].shape == (4, 50, 768)
  assert not batch["audio_mask"][2:].any() and batch["text_mask"][:2].any()
  # A subset of modalities carries only its masks.
  data = mmbal.data.load("mmsa", data_dir=built["data_dir"], config="mosi_unaligned",
                         modalities=("audio",))
  assert data.spec.masks == ("audio",)
  assert set(data.test.gather([0])) == {"audio", "audio_mask", "label"}


# ----------------------------------------------------------------------------- IEMOCAP


def test_iemocap_multi_hot_labels(built, manual_dir):
  builder, data = built["iemocap"], manual_dir[1]["iemocap"]
  assert builder.info.metadata["task"] == "multilabel"
  assert builder.info.metadata["class_names"] == ["neutral", "happy", "sad", "angry"]
  assert builder.info.metadata["shapes"] == {"text": [20, 300], "audio": [20, 74],
                                             "vision": [20, 35]}
  for split, key in mmsa.SPLIT_KEYS.items():
    records = _records(builder, split)
    for i, r in enumerate(records):
      positive = data[key]["positive"][i]
      np.testing.assert_array_equal(r["label"], positive)
      assert r["label"].dtype == np.int32 and r["id"].decode() == f"{key}/{i}"
      assert r["emotion"] == (positive.argmax() if positive.sum() == 1 else -1)
  assert builder.info.metadata["emotions_per_example"]["train"] == {"0": 1, "1": 4, "2+": 1}
  assert builder.info.metadata["label_pairs_not_one_hot"] == {"train": 0, "validation": 0,
                                                              "test": 0}
  loaded = mmbal.data.load("iemocap", data_dir=built["data_dir"], config="mult_aligned")
  assert loaded.spec.task == "multilabel" and loaded.spec.num_classes == 4
  (batch,) = mmbal.data.eval_batches(loaded.validation, 2, shard_index=0, shard_count=1)
  assert batch["label"].shape == (2, 4) and batch["label"].dtype == np.int32
  assert batch["audio"].shape == (2, 20, 74) and batch["audio_mask"].all()


def test_iemocap_unaligned_file_missing(manual_dir, tmp_path):
  with pytest.raises(ManualDirError, match=r"iemocap_data_noalign\.pkl: missing.*mult_unaligned"):
    _build("iemocap", "mult_unaligned", tmp_path, manual_dir[0])


def test_iemocap_label_shape_checked(tmp_path):
  data = {k: mult_split(n, L=(20, 20, 20), D=(300, 74, 35),
                        labels=np.zeros((n, 4), np.float32), ids=False) for k, n in SIZES}
  dump(data, f"{tmp_path}/m/iemocap/iemocap_data.pkl")
  with pytest.raises(ManualDirError, match=r"split 'train' key 'labels' has shape \(6, 4\); "
                                           r"expected \(N, 4, 2\)"):
    _build("iemocap", "mult_aligned", tmp_path / "d", tmp_path / "m")


# ----------------------------------------------------------------------------- errors


def _broken(tmp_path, change, file="MOSI/Processed/unaligned_50.pkl", config="mosi_unaligned"):
  """Builds `config` from a fixture changed by `change(data)`; returns the error message."""
  data = mosi_unaligned()
  change(data)
  dump(data, f"{tmp_path}/manual/mmsa/{file}")
  with pytest.raises(ManualDirError) as e:
    _build("mmsa", config, tmp_path / "data", tmp_path / "manual")
  return str(e.value)


class _Evil:
  def __init__(self, path):
    self.path = path

  def __reduce__(self):
    return (os.mkdir, (self.path,))


def test_restricted_unpickler_refuses_objects(tmp_path):
  marker = str(tmp_path / "ran")
  message = _broken(tmp_path, lambda d: d["train"].update(id=_Evil(marker)))
  assert "refusing to load posix.mkdir" in message or "refusing to load os.mkdir" in message
  assert "unaligned_50.pkl" in message and not os.path.exists(marker)
  # Plain data loads; numpy arrays, dicts, lists, strings and bytes.
  path = tmp_path / "plain.pkl"
  value = {"a": [np.arange(3), "x", b"y", 1.5], "b": np.array(["s"], dtype=object)}
  for protocol in (2, 4, 5):
    path.write_bytes(pickle.dumps(value, protocol=protocol))
    out = manual.read_plain_pickle(path)
    np.testing.assert_array_equal(out["a"][0], np.arange(3))
    assert out["a"][1:] == ["x", b"y", 1.5] and out["b"][0] == "s"


def test_missing_and_malformed_files(tmp_path):
  (tmp_path / "manual" / "mmsa").mkdir(parents=True)
  (tmp_path / "manual" / "mmsa" / "other.txt").write_text("x")
  with pytest.raises(ManualDirError, match=r"MOSI/Processed/unaligned_50\.pkl: missing; "
                                           r"config 'mosi_unaligned'"):
    _build("mmsa", "mosi_unaligned", tmp_path / "data", tmp_path / "manual")
  path = tmp_path / "manual" / "mmsa" / "MOSI" / "Processed" / "unaligned_50.pkl"
  path.parent.mkdir(parents=True)
  path.write_bytes(b"not a pickle at all")
  with pytest.raises(ManualDirError, match=r"unaligned_50\.pkl: not a readable pickle"):
    _build("mmsa", "mosi_unaligned", tmp_path / "data", tmp_path / "manual")
  path.write_bytes(pickle.dumps([1, 2]))
  with pytest.raises(ManualDirError, match=r"unaligned_50\.pkl: expected a dict with keys"):
    _build("mmsa", "mosi_unaligned", tmp_path / "data", tmp_path / "manual")


def test_manual_dir_may_hold_the_files_directly(tmp_path, manual_dir):
  os.makedirs(tmp_path / "flat" / "SIMS" / "Processed")
  os.symlink(f"{manual_dir[0]}/mmsa/SIMS/Processed/unaligned_39.pkl",
             tmp_path / "flat" / "SIMS" / "Processed" / "unaligned_39.pkl")
  builder = _build("mmsa", "sims_unaligned", tmp_path / "data", tmp_path / "flat")
  assert builder.info.metadata["manual_dir"] == str(tmp_path / "flat")


@pytest.mark.parametrize("change, pattern", [
    (lambda d: d.pop("valid"), r"unaligned_50\.pkl: no split \['valid'\]"),
    (lambda d: d["test"].pop("audio_lengths"),
     r"unaligned_50\.pkl: split 'test' has no key 'audio_lengths' \(unaligned MMSA files"),
    (lambda d: d["train"].pop("regression_labels"),
     r"split 'train' has no key 'regression_labels'"),
    (lambda d: d["valid"].update(vision=d["valid"]["vision"][:1]),
     r"split 'valid' key 'vision' has 1 rows"),
    (lambda d: d["train"]["audio_lengths"].__setitem__(3, 376),
     r"split 'train' index 3 \(id vid0_3\$_\$3\): audio_lengths = 376 does not fit the audio "
     r"sequence of 375 steps"),
    (lambda d: d["test"]["vision_lengths"].__setitem__(1, -1),
     r"split 'test' index 1 \(id vid2_1\$_\$1\): vision_lengths = -1"),
    (lambda d: d["train"].update(text_bert=d["train"]["text_bert"][:, :, :49]),
     r"split 'train' key 'text_bert' has shape \(6, 3, 49\); expected \(N, 3, 50\)"),
    (lambda d: d["valid"]["text_bert"].__setitem__((1, 1, 0), 0.5),
     r"split 'valid' index 1 \(id vid1_1\$_\$1\): the attention mask"),
    (lambda d: d["test"]["regression_labels"].__setitem__(0, np.nan),
     r"split 'test' index 0 \(id vid2_0\$_\$0\): regression_labels = nan; expected a finite "
     r"value in \[-3, 3\]"),
    (lambda d: d["train"]["regression_labels"].__setitem__(5, 3.5),
     r"split 'train' index 5 .*regression_labels = 3.5"),
    (lambda d: d["test"].update(audio=d["test"]["audio"][:, :, :4]),
     r"split 'valid' key 'audio' has per-example shape|split 'test' key 'audio' has per-example "
     r"shape \[375, 4\]"),
    (lambda d: d["train"].update(text=np.array(["a"] * 6)),
     r"split 'train' key 'text': expected a numeric array of 3 dimensions"),
])
def test_manual_dir_errors_name_file_split_key_and_index(tmp_path, change, pattern):
  message = _broken(tmp_path, change)
  assert "unaligned_50.pkl" in message
  import re  # pylint: disable=import-outside-toplevel
  assert re.search(pattern, message), message


def test_aligned_config_refuses_an_unaligned_file(tmp_path):
  message = _broken(tmp_path, lambda d: None, file="MOSI/Processed/aligned_50.pkl",
                    config="mosi_aligned")
  assert "an aligned file should have one sequence length" in message


# ----------------------------------------------------------------------------- data layer


class _FakeRecords:
  def __init__(self, labels):
    self.labels = labels

  def __len__(self):
    return len(self.labels)

  def __getitems__(self, idx):
    return [{"label": self.labels[i]} for i in idx]


def test_regression_labels_checked_and_task_inferred():
  labels = np.array([0.5, -2.0, 0.0], np.float32)
  np.testing.assert_array_equal(
      pipeline._checked_labels(_FakeRecords(labels), 1, "train", "regression"), labels)
  with pytest.raises(ValueError, match=r"finite regression labels in split 'test', found inf "
                                       r"at index 1"):
    pipeline._checked_labels(_FakeRecords(np.array([0.0, np.inf], np.float32)), 1, "test",
                             "regression")
  with pytest.raises(ValueError, match="one float label per example in split 'train'"):
    pipeline._checked_labels(_FakeRecords(np.array([1, 2])), 1, "train", "regression")
  scalar = tfds.features.Tensor(shape=(), dtype=np.float32)
  assert pipeline._label_task("x", scalar, None) == ("regression", 1)
  assert pipeline._label_task("x", scalar, "regression") == ("regression", 1)
  with pytest.raises(ValueError, match="float scalar Tensor"):
    pipeline._label_task("x", scalar, "classification")


# ----------------------------------------------------------------------------- configs


@pytest.mark.parametrize("name, config, bins", [("mosi", "mosi_unaligned", "mosi"),
                                                ("mosei", "mosei_unaligned", "mosi"),
                                                ("sims", "sims_unaligned", "sims")])
def test_configs_read_the_mmsa_builder(name, config, bins):
  from mmbal.train import config as train_config  # pylint: disable=import-outside-toplevel
  c = train_config.load_config(f"{ROOT}/configs/{name}/joint.py")
  train_config.check_config(c)
  assert (c.data.name, c.data.builder_config) == ("mmsa", config)
  assert tuple(c.data.modalities) == ("text", "audio", "vision")
  assert c.model.fusion == "concat" and c.eval.regression_bins == bins


def test_mosi_config_trains_end_to_end(built, manual_dir, tmp_path):
  """The trainer on the MOSI fixture: regression from the data (spec.task), sequence encoders."""
  from mmbal.train import config as train_config  # pylint: disable=import-outside-toplevel
  from mmbal.train.loop import train_and_evaluate  # pylint: disable=import-outside-toplevel
  downloads = os.path.join(built["data_dir"], "downloads")
  os.makedirs(downloads, exist_ok=True)
  if not os.path.exists(os.path.join(downloads, "manual")):
    os.symlink(manual_dir[0], os.path.join(downloads, "manual"))  # TFDS's default manual dir.
  c = train_config.load_config(f"{ROOT}/configs/mosi/joint.py")
  train_config.apply_overrides(c, [
      f"data.data_dir={built['data_dir']}", "train.batch_size=2", "train.num_epochs=1",
      "eval.batch_size=2", "mesh.data=2", "log.progress=False", "model.feature_dim=8",
      "model.hidden_dim=8", "eval.linear_probe=False"])
  train_and_evaluate(c, tmp_path / "run")
  results = json.loads((tmp_path / "run" / "results.json").read_text())
  assert set(results["test"]["unimodal"]) == {"text", "audio", "vision"}
  assert np.isfinite(results["test"]["regression"]["fused"]["mae"])


def test_lnln_trains_and_sweeps_missing_rates(built, manual_dir, tmp_path):
  """method.name=lnln on the MOSI fixture: the protocol in training, the sweep at the end."""
  from mmbal.train import config as train_config  # pylint: disable=import-outside-toplevel
  from mmbal.train.loop import train_and_evaluate  # pylint: disable=import-outside-toplevel
  downloads = os.path.join(built["data_dir"], "downloads")
  os.makedirs(downloads, exist_ok=True)
  if not os.path.exists(os.path.join(downloads, "manual")):
    os.symlink(manual_dir[0], os.path.join(downloads, "manual"))
  c = train_config.load_config(f"{ROOT}/configs/mosi/lnln.py")
  train_config.apply_overrides(c, [
      f"data.data_dir={built['data_dir']}", "train.batch_size=2", "train.num_epochs=2",
      "optimizer.warmup_steps=1", "eval.batch_size=2", "mesh.data=2", "log.progress=False",
      "method.lnln.dim=16", "method.lnln.num_tokens=2", "method.lnln.heads=2",
      "method.lnln.head_dim=8", "method.lnln.fusion_depth=1", "method.lnln.block_depth=1",
      "method.lnln.eval_seeds=1"])
  run = train_and_evaluate(c, tmp_path / "run")
  results = json.loads((tmp_path / "run" / "results.json").read_text())
  sweep = results["lnln_missing"]
  assert list(sweep["rates"]) == [f"{r / 10:.1f}" for r in range(10)]
  assert np.isfinite(sweep["average"]["mae"]) and 0 <= sweep["average"]["acc2_has0"] <= 1
  # Rate 0 is the unmodified test split: the same MAE as the plain evaluation.
  assert sweep["rates"]["0.0"]["mae"] == pytest.approx(results["test"]["regression"]["fused"]["mae"],
                                                       rel=1e-5)
  logged = [json.loads(l) for l in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
  train = [r for r in logged if r["split"] == "train"]
  assert {"cc", "adv", "rec"} <= set(train[-1]["loss"])
  assert int(run.state.step) > 0
  # LNLN's own model, rebuilt for the regression task (parameters compared: no second compile).
  assert_restores(tmp_path / "run", run.state.best_params)


def _method_state_used(method, opt_state):
  """The method's regression quantity in its optimizer state is finite and was updated."""
  from mmbal import objectives, transforms  # pylint: disable=import-outside-toplevel
  from mmbal.transforms._state import find_state  # pylint: disable=import-outside-toplevel
  if method == "agm":      # running means of the floored L1 scores (0 before any step)
    s = find_state(opt_state, transforms.AgmState, "test")
    v = np.array([float(x) for x in s.running_scores.values()])
    return np.all(np.isfinite(v)) and np.all(v > 0) and int(s.count) > 0
  if method == "msam":     # normalised Shapley values of the sign-agreement subset values
    s = find_state(opt_state, transforms.MsamState, "test")
    v = np.array([float(x) for x in s.shapley.values()])
    return (np.isfinite(v).all() and abs(v.sum() - 1) < 1e-5 and int(s.count) > 0
            and float(s.perturbation_norm) > 0)
  if method == "balgrad":  # KL reweighting from the unimodal L1 losses
    s = find_state(opt_state, transforms.BalGradState, "test")
    v = np.array([float(x) for x in s.weights.values()])
    return np.isfinite(v).all() and abs(v.sum() - 1) < 1e-5 and np.ptp(v) > 0
  if method == "pmr":      # prototypes of the Acc-7 bins ([M, 7, D]) that occur in the labels
    s = find_state(opt_state, objectives.PrototypeState, "test")
    return s.prototypes.shape[1] == 7 and bool(s.seen.any()) and np.isfinite(s.prototypes).all()
  return True


@pytest.mark.parametrize("method", ["ogm_ge", "cggm", "pcgrad", "mla", "agm", "msam", "balgrad",
                                    "pmr"])
def test_balancing_methods_run_on_regression(built, manual_dir, tmp_path, method):
  """Each method's MOSI config trains on the regression fixture (their documented scores)."""
  from mmbal.train import config as train_config  # pylint: disable=import-outside-toplevel
  from mmbal.train.loop import train_and_evaluate  # pylint: disable=import-outside-toplevel
  downloads = os.path.join(built["data_dir"], "downloads")
  os.makedirs(downloads, exist_ok=True)
  if not os.path.exists(os.path.join(downloads, "manual")):
    os.symlink(manual_dir[0], os.path.join(downloads, "manual"))
  c = train_config.load_config(f"{ROOT}/configs/mosi/{method}.py")
  train_config.apply_overrides(c, [
      f"data.data_dir={built['data_dir']}", "train.batch_size=2", "train.num_epochs=1",
      "eval.batch_size=2", "mesh.data=2", "log.progress=False", "model.feature_dim=8",
      "model.hidden_dim=8"])
  run = train_and_evaluate(c, tmp_path / "run")
  assert np.isfinite(run.results["test"]["regression"]["fused"]["mae"])
  assert _method_state_used(method, run.state.opt_state)
  if method in ("agm", "pmr"):   # rebuilt from the workdir as trained (PMR: 7 bins, not 1)
    assert_restores(tmp_path / "run")
  if method == "pmr":            # the CLI on a regression run: eval works, diagnose refuses
    _eval_and_diagnose_a_regression_run(tmp_path / "run")


def _eval_and_diagnose_a_regression_run(workdir):
  from mmbal.train.cli import main  # pylint: disable=import-outside-toplevel
  result = main(["eval", "--workdir", str(workdir), "--robustness", "--kinds", "missing",
                 "--seeds", "0"])
  curve = result["curves"]["missing"]["text"]["accuracy"]   # sign accuracy per missing rate
  assert len(curve) == len(result["rates"]) and all(0.0 <= a <= 1.0 for a in curve)
  with pytest.raises(SystemExit, match="task is regression"):
    main(["diagnose", "--workdir", str(workdir)])
