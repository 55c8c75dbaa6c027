"""Tests of the image-text builders (Hateful Memes, UPMC Food-101, MM-IMDb) and the
precomputed-embeddings format (`mmbal.data._image_text`).

Each fixture writes ~10 synthetic examples in the exact upstream layout (file names,
jsonl / CSV / JSON quirks as in the reference notes) plus embeddings in mmbal's format
(`embeddings/ids.txt` + `image.npy` + `text.npy`, or `embeddings/embeddings.npz`); no
real content.
"""

import csv
import json
import os
import shutil

import numpy as np
import pytest
import tensorflow_datasets as tfds
from PIL import Image

import mmbal.data
from mmbal.data import _image_text
from restore_check import assert_restores
from mmbal.data import hateful_memes
from mmbal.data import mmimdb
from mmbal.data import upmc_food101
from mmbal.data.manual import ManualDirError

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
IMAGE_DIM, TEXT_DIM = 8, 6


def write_embeddings(directory, ids, *, form="npy", text_dtype=np.float16, extra=("unused",)):
  """Embeddings for `ids` (+ unused extra rows) in mmbal's format; returns {id: (image, text)}."""
  os.makedirs(directory, exist_ok=True)
  all_ids = list(ids) + list(extra)
  rng = np.random.default_rng(len(all_ids))
  image = rng.normal(size=(len(all_ids), IMAGE_DIM)).astype(np.float32)
  text = rng.normal(size=(len(all_ids), TEXT_DIM)).astype(text_dtype)
  if form == "npy":
    np.save(f"{directory}/image.npy", image)
    np.save(f"{directory}/text.npy", text)
    with open(f"{directory}/ids.txt", "w") as f:
      f.write("".join(f"{i}\n" for i in all_ids))
  else:
    np.savez(f"{directory}/embeddings.npz", ids=np.array(all_ids), image=image, text=text)
  return {str(i): (image[r], text[r].astype(np.float32)) for r, i in enumerate(all_ids)}


def _records(builder, split):
  source = builder.as_data_source(split)
  return {r["id"].decode(): r for r in source.__getitems__(list(range(len(source))))}


def _build(name, data_dir, manual_dir, **kwargs):
  builder = tfds.builder(name, data_dir=str(data_dir), manual_dir=str(manual_dir), **kwargs)
  builder.download_and_prepare()
  return builder


def _copy(manual, tmp_path, name):
  shutil.copytree(manual, tmp_path / "manual")
  return str(tmp_path / "manual"), str(tmp_path / "manual" / name)


def _check_loaded(data, sizes, num_classes, task="classification", label_shape=()):
  assert data.spec.modalities == {"image": (IMAGE_DIM,), "text": (TEXT_DIM,)}
  assert data.spec.num_classes == num_classes and data.spec.task == task
  assert data.spec.split_sizes == sizes
  batches = list(mmbal.data.train_iterator(data.train, 2, seed=0, num_epochs=1, shard_index=0,
                                           shard_count=1))
  assert len(batches) == sizes["train"] // 2
  for b in batches:
    assert b["image"].shape == (2, IMAGE_DIM) and b["image"].dtype == np.float32
    assert b["text"].shape == (2, TEXT_DIM) and b["text"].dtype == np.float32
    assert b["label"].shape == (2,) + label_shape and b["label"].dtype == np.int32
  for split in ("validation", "test"):
    (batch,) = mmbal.data.eval_batches(data[split], 4, shard_index=0, shard_count=1)
    n = sizes[split]
    assert batch["mask"].tolist() == [True] * n + [False] * (4 - n)
    assert batch["image"].shape == (4, IMAGE_DIM) and batch["label"].shape == (4,) + label_shape
    assert not batch["image"][n:].any() and not batch["label"][n:].any()


# ----------------------------------------------------------------------------- embeddings format


def test_normalize_id():
  assert [_image_text.normalize_id(x) for x in (1235, "01235", b"0000001", " a.jpg ", np.int64(7))] \
      == ["1235", "1235", "1", "a.jpg", "7"]


def test_embeddings_npy_and_npz_forms(tmp_path):
  ids = ["01235", "7", "x/y.jpg"]
  expected = write_embeddings(tmp_path / "a", ids)
  write_embeddings(tmp_path / "b", [1235, 7, 9], form="npz", extra=())
  for directory in ("a", "b"):
    e = _image_text.read_embeddings(str(tmp_path / directory))
    assert e.dims == {"image": IMAGE_DIM, "text": TEXT_DIM}
    assert e.row(["1235"]) == 0 and e.row(["nope", "7"]) == 1 and e.row(["nope"]) is None
  e = _image_text.read_embeddings(str(tmp_path / "a"))
  np.testing.assert_array_equal(e.vector("image", 2), expected["x/y.jpg"][0])
  assert e.vector("text", 2).dtype == np.float32


def _emb_dir(tmp_path, **arrays):
  """An embeddings dir of 3 ids with the given arrays replaced."""
  d = tmp_path / "emb"
  write_embeddings(d, ["a", "b", "c"], extra=())
  for name, value in arrays.items():
    if name == "ids":
      (d / "ids.txt").write_text(value)
    else:
      np.save(d / f"{name}.npy", value)
  return str(d)


@pytest.mark.parametrize("arrays,message", [
    (dict(image=np.zeros((2, 4), np.float32)), r"image.npy: 2 rows, but .*ids.txt has 3 ids"),
    (dict(text=np.zeros((3, 4), np.int64)), r"text.npy: expected float text embeddings .*int64"),
    (dict(image=np.zeros(3, np.float32)), r"image.npy: expected a 2-D array \[N, D\]"),
    (dict(ids="a\n\nc\n"), r"ids.txt:2: empty line"),
    (dict(ids="a\nb\na\n"), r"ids.txt:3: id 'a' repeats .*ids.txt:1"),
    (dict(ids="1\nb\n001\n"), r"ids.txt:3: id '001' repeats .*ids.txt:1"),
])
def test_embedding_format_errors(tmp_path, arrays, message):
  with pytest.raises(ManualDirError, match=message):
    _image_text.read_embeddings(_emb_dir(tmp_path, **arrays))


def test_embedding_file_errors(tmp_path):
  with pytest.raises(ManualDirError, match=r"emb: missing; expected the precomputed embeddings"):
    _image_text.read_embeddings(str(tmp_path / "emb"))
  d = _emb_dir(tmp_path)
  os.remove(f"{d}/text.npy")
  with pytest.raises(ManualDirError, match=r"text.npy: missing; expected a float array"):
    _image_text.read_embeddings(d)
  np.savez(f"{d}/embeddings.npz", ids=np.array(["a"]), image=np.zeros((1, 2)))
  with pytest.raises(ManualDirError, match=r"holds both embeddings.npz and ids.txt"):
    _image_text.read_embeddings(d)
  for f in ("ids.txt", "image.npy"):
    os.remove(f"{d}/{f}")
  with pytest.raises(ManualDirError, match=r"embeddings.npz: no array \['text'\]"):
    _image_text.read_embeddings(d)
  np.savez(f"{d}/embeddings.npz", ids=np.array([object()], dtype=object), image=np.zeros((1, 2)),
           text=np.zeros((1, 2)))
  with pytest.raises(ManualDirError, match=r"embeddings.npz: not a readable .npz"):
    _image_text.read_embeddings(d)
  (tmp_path / "bad").mkdir()
  for name in ("ids.txt", "image.npy", "text.npy"):
    (tmp_path / "bad" / name).write_text("a\n")
  with pytest.raises(ManualDirError, match=r"image.npy: not a readable .npy file"):
    _image_text.read_embeddings(str(tmp_path / "bad"))


def test_non_finite_used_rows_name_the_file_and_id(tmp_path):
  image = np.zeros((3, 4), np.float32)
  image[1, 2] = np.nan
  e = _image_text.read_embeddings(_emb_dir(tmp_path, image=image))
  e.check_finite({0: "id-a", 2: "id-c"})  # Row 1 is not used: fine.
  with pytest.raises(ManualDirError, match=r"image.npy: the image embedding of id id-b \(row 1\) "
                                           r"has NaN or inf"):
    e.check_finite({0: "id-a", 1: "id-b"})


# ----------------------------------------------------------------------------- Hateful Memes

HM_IDS = [1235, 42953, 10398, 5643, 83745, 1, 99999, 31024, 7, 50432]
HM_FILES = {"train.jsonl": HM_IDS[:5], "dev_seen.jsonl": HM_IDS[5:7],
            "dev_unseen.jsonl": HM_IDS[6:8], "test_seen.jsonl": HM_IDS[8:9],
            "test_unseen.jsonl": HM_IDS[9:]}


def write_hateful_memes(root):
  """The upstream layout: five jsonl files (test_unseen unlabelled), img/NNNNN.png."""
  os.makedirs(f"{root}/img", exist_ok=True)
  for name, ids in HM_FILES.items():
    lines = []
    for k, i in enumerate(ids):
      row = {"id": i, "img": f"img/{i:05d}.png", "text": f"meme text {i}, \"quoted\""}
      if name == "train.jsonl" and k == 1:
        row["id"] = f"{i:05d}"  # Some copies write the id as a string.
      if name != "test_unseen.jsonl":
        row["label"] = i % 2
      lines.append(json.dumps(row))
    if name == "train.jsonl":  # BOM, CRLF and a blank line.
      with open(f"{root}/{name}", "w", newline="", encoding="utf-8-sig") as f:
        f.write("\r\n".join(lines[:2] + [""] + lines[2:]) + "\r\n")
    else:
      with open(f"{root}/{name}", "w") as f:
        f.write("\n".join(lines) + "\n")
  for i in HM_IDS:
    Image.fromarray(np.full((12, 12, 3), i % 255, np.uint8)).save(f"{root}/img/{i:05d}.png")
  # Embedding ids as the user's loop over img/ may write them: zero-padded.
  return write_embeddings(f"{root}/embeddings", [f"{i:05d}" for i in HM_IDS])


@pytest.fixture(scope="module")
def hm_manual(tmp_path_factory):
  path = tmp_path_factory.mktemp("hm_manual")
  vectors = write_hateful_memes(path / "hateful_memes")
  return str(path), {str(int(k)): v for k, v in vectors.items() if k != "unused"}


@pytest.fixture(scope="module")
def hm_data_dir(tmp_path_factory):
  return tmp_path_factory.mktemp("hm_tfds")


@pytest.fixture(scope="module")
def hm(hm_manual, hm_data_dir):
  return _build("hateful_memes", hm_data_dir, hm_manual[0])


def test_hateful_memes_builder(hm, hm_manual):
  _, vectors = hm_manual
  assert {k: v.num_examples for k, v in hm.info.splits.items()} == {
      "train": 5, "validation": 2, "test": 1, "dev_unseen": 2}
  meta = hm.info.metadata
  assert "rows without a label" in meta["left_out"]["test_unseen"]
  assert meta["validation"]["source"] == "dev_seen.jsonl"
  assert meta["shapes"] == {"image": [IMAGE_DIM], "text": [TEXT_DIM]}
  assert meta["task"] == "classification" and meta["class_names"] == ["not_hateful", "hateful"]
  assert meta["embeddings"]["unused_rows"] == 2  # "unused" and the left-out test_unseen row
  assert all(not v for v in meta["skipped"].values())
  assert hm.info.features["label"].names == ["not_hateful", "hateful"]
  expected = {"train": HM_IDS[:5], "validation": HM_IDS[5:7], "test": HM_IDS[8:9],
              "dev_unseen": HM_IDS[6:8]}
  for split, ids in expected.items():
    records = _records(hm, split)
    assert sorted(records) == sorted(str(i) for i in ids)
    for key, r in records.items():
      i = int(key)
      assert r["label"] == i % 2
      assert r["raw_text"].decode() == f"meme text {i}, \"quoted\""
      assert r["image_file"].decode() == f"img/{i:05d}.png"
      np.testing.assert_array_equal(r["image"], vectors[key][0])
      np.testing.assert_array_equal(r["text"], vectors[key][1])
      assert r["image"].dtype == np.float32 and r["text"].dtype == np.float32


def test_hateful_memes_load(hm, hm_manual, hm_data_dir):
  del hm
  data = mmbal.data.load("hateful_memes", data_dir=str(hm_data_dir), manual_dir=hm_manual[0])
  _check_loaded(data, {"train": 5, "validation": 2, "test": 1}, 2)
  data = mmbal.data.load("hateful_memes", data_dir=str(hm_data_dir), manual_dir=hm_manual[0],
                         modalities=("text",), in_memory=True)
  assert list(data.spec.modalities) == ["text"] and data.train.to_numpy()["text"].shape == (5, 6)


def test_hateful_memes_npz_embeddings(tmp_path, hm_manual, hm):
  manual_dir, root = _copy(hm_manual[0], tmp_path, "hateful_memes")
  shutil.rmtree(f"{root}/embeddings")
  vectors = write_embeddings(f"{root}/embeddings", HM_IDS, form="npz")  # Integer ids.
  builder = _build("hateful_memes", tmp_path / "d", manual_dir)
  assert builder.info.metadata["embeddings"]["files"]["ids"].endswith("embeddings.npz (ids)")
  for key, r in _records(builder, "train").items():
    np.testing.assert_array_equal(r["image"], vectors[key][0])
  assert {k: v.num_examples for k, v in builder.info.splits.items()} == {
      k: v.num_examples for k, v in hm.info.splits.items()}


def test_hateful_memes_jsonl_errors(tmp_path):
  path = tmp_path / "x.jsonl"
  for text, message in [
      ('{"id": 1, "text": "a", "label": 0}\n{"id": 2, "text": "b", "label": 0\n',
       r"x.jsonl:2: expected a JSON object per line"),
      ('[1, 2]\n', r"x.jsonl:1: expected a JSON object per line, got list"),
      ('{"id": "1a", "text": "a"}\n', r"x.jsonl:1: expected 'id' a non-negative integer"),
      ('{"id": 1, "label": 0}\n', r"x.jsonl:1: expected 'text' a string"),
      ('{"id": 1, "text": "a", "label": 2}\n', r"x.jsonl:1: expected 'label' 0 .* or 1"),
      ('{"id": 1, "text": "a", "label": true}\n', r"x.jsonl:1: expected 'label' 0 .* or 1")]:
    path.write_text(text)
    with pytest.raises(ManualDirError, match=message):
      hateful_memes.read_jsonl(str(path))
  path.write_text('{"id": "01235", "text": "t"}\n')
  assert hateful_memes.read_jsonl(str(path)) == [
      (1, dict(id=1235, text="t", img="img/01235.png", label=None))]


def test_hateful_memes_manual_dir_errors(tmp_path, hm_manual):
  empty = tmp_path / "empty"
  empty.mkdir()
  with pytest.raises(ManualDirError, match="manual directory is missing or empty"):
    _build("hateful_memes", tmp_path / "d0", empty)
  manual_dir, root = _copy(hm_manual[0], tmp_path, "hateful_memes")
  os.remove(f"{root}/test_seen.jsonl")
  os.remove(f"{root}/embeddings/text.npy")
  with pytest.raises(ManualDirError) as error:
    _build("hateful_memes", tmp_path / "d1", manual_dir)
  assert f"{root}/test_seen.jsonl: missing; expected the test rows" in str(error.value)
  assert f"{root}/embeddings/text.npy: missing" in str(error.value)
  # An unlabelled test file (the phase-1 release) is an error, not a silent skip.
  shutil.copy(f"{root}/test_unseen.jsonl", f"{root}/test_seen.jsonl")
  np.save(f"{root}/embeddings/text.npy", np.zeros((11, TEXT_DIM), np.float32))
  with pytest.raises(ManualDirError, match=r"test_seen.jsonl:1: no 'label'; the test split needs"):
    _build("hateful_memes", tmp_path / "d2", manual_dir)
  # Validation rows that are also train rows.
  shutil.copy(f"{root}/dev_seen.jsonl", f"{root}/test_seen.jsonl")
  with pytest.raises(ManualDirError, match=r"dev_seen.jsonl and .*test_seen.jsonl: 2 ids in both"):
    _build("hateful_memes", tmp_path / "d3", manual_dir)


def test_hateful_memes_skips_and_embedding_errors(tmp_path, hm_manual):
  manual_dir, root = _copy(hm_manual[0], tmp_path, "hateful_memes")
  ids = (open(f"{root}/embeddings/ids.txt").read().split())
  with open(f"{root}/embeddings/ids.txt", "w") as f:  # 01235 (train) has no embedding now.
    f.write("".join(f"{i}\n" for i in ["zzz" if i == "01235" else i for i in ids]))
  with open(f"{root}/train.jsonl", "a") as f:  # A repeated row.
    f.write(json.dumps({"id": 10398, "img": "img/10398.png", "text": "again", "label": 0}) + "\n")
  with pytest.raises(ManualDirError, match=r"hateful_memes train: 2 of 6 clips skipped, more than "
                                           r"max_skipped_fraction=0.05: 1 x duplicate id .*1 x "
                                           r"missing embedding \(e.g. 1235: .*id 1235 is not in "
                                           r".*ids.txt"):
    _build("hateful_memes", tmp_path / "d0", manual_dir)
  builder = _build("hateful_memes", tmp_path / "d1", manual_dir, max_skipped_fraction=0.5)
  assert builder.info.metadata["skipped"]["train"] == {"duplicate id": 1, "missing embedding": 1}
  assert sorted(_records(builder, "train")) == sorted(str(i) for i in HM_IDS[1:5])
  image = np.load(f"{root}/embeddings/image.npy")
  image[ids.index("00007"), 0] = np.inf  # The test example.
  np.save(f"{root}/embeddings/image.npy", image)
  with pytest.raises(ManualDirError, match=r"image.npy: the image embedding of id 7 \(row 8\) has "
                                           r"NaN or inf"):
    _build("hateful_memes", tmp_path / "d2", manual_dir, max_skipped_fraction=0.5)


def test_hateful_memes_config_trains_end_to_end(tmp_path, hm_manual):
  from mmbal.train import config as train_config  # pylint: disable=import-outside-toplevel
  from mmbal.train.loop import train_and_evaluate  # pylint: disable=import-outside-toplevel
  data_dir = tmp_path / "tfds"
  (data_dir / "downloads").mkdir(parents=True)
  os.symlink(hm_manual[0], data_dir / "downloads" / "manual")  # TFDS's default manual dir.
  c = train_config.load_config(f"{ROOT}/configs/hateful_memes/joint.py")
  train_config.apply_overrides(c, [f"data.data_dir={data_dir}", "train.batch_size=2",
                                   "train.num_epochs=1", "eval.batch_size=2", "mesh.data=2",
                                   "log.progress=False"])
  train_and_evaluate(c, tmp_path / "run")
  results = json.loads((tmp_path / "run" / "results.json").read_text())
  assert set(results["test"]["unimodal"]) == {"image", "text"}
  assert 0.0 <= results["test"]["fused"]["accuracy"] <= 1.0


# ----------------------------------------------------------------------------- multi-label spec


class _Records:
  def __init__(self, labels):
    self.labels = labels

  def __len__(self):
    return len(self.labels)

  def __getitems__(self, idx):
    return [{"label": np.asarray(self.labels[i])} for i in idx]


def test_label_checks_and_task():
  from mmbal.data import pipeline  # pylint: disable=import-outside-toplevel
  multi = _Records([[0, 1, 1], [1, 0, 0]])
  assert pipeline._checked_labels(multi, 3, "train", "multilabel").shape == (2, 3)
  with pytest.raises(ValueError, match=r"multi-hot vectors of width 4 in split 'train'"):
    pipeline._checked_labels(multi, 4, "train", "multilabel")
  with pytest.raises(ValueError, match=r"multi-hot values 0 or 1 in split 'test', found \[2\]"):
    pipeline._checked_labels(_Records([[0, 2, 1]]), 3, "test", "multilabel")
  with pytest.raises(ValueError, match=r"values in \[0, 2\) in split 'train', found \[2\]"):
    pipeline._checked_labels(_Records([0, 2]), 2, "train")
  tensor = tfds.features.Tensor(shape=(23,), dtype=np.int32)
  assert pipeline._label_task("x", tensor, None) == ("multilabel", 23)
  assert pipeline._label_task("x", tensor, "multilabel") == ("multilabel", 23)
  assert pipeline._label_task("x", tfds.features.ClassLabel(num_classes=4), None) == (
      "classification", 4)
  with pytest.raises(ValueError, match="an integer Tensor of shape"):
    pipeline._label_task("x", tensor, "classification")
  with pytest.raises(ValueError, match=r"task: expected one of \['classification', 'multilabel', "
                                       r"'regression'\]"):
    pipeline._label_task("x", tensor, "ranking")
  with pytest.raises(ValueError, match="a float scalar Tensor"):  # An int vector is no regression.
    pipeline._label_task("x", tensor, "regression")


# ----------------------------------------------------------------------------- UPMC Food-101

FOOD_CLASSES = ["apple_pie", "cheese_plate", "cheesecake"]
FOOD_TRAIN = [f"{c}_{n}.jpg" for c in FOOD_CLASSES for n in range(3)][:7]
FOOD_TEST = [f"{c}_3.jpg" for c in FOOD_CLASSES]


def _food_title(name):
  return f"{name.rsplit('_', 1)[0].replace('_', ' ')} recipe, easy"


def write_food101(root):
  """The upstream layout: headerless CRLF titles CSVs (quoted commas), images, texts_txt."""
  for split, names in (("train", FOOD_TRAIN), ("test", FOOD_TEST)):
    for name in names:
      c = name.rsplit("_", 1)[0]
      os.makedirs(f"{root}/images/{split}/{c}", exist_ok=True)
      Image.fromarray(np.full((12, 12, 3), 7, np.uint8)).save(f"{root}/images/{split}/{c}/{name}")
      os.makedirs(f"{root}/texts_txt/{c}", exist_ok=True)
      with open(f"{root}/texts_txt/{c}/{name[:-4]}.txt", "w") as f:
        f.write(f"My {c} recipe. Ingredients: flour, sugar, eggs")
  os.makedirs(f"{root}/texts", exist_ok=True)
  with open(f"{root}/texts/train_titles.csv", "w", newline="") as f:  # Original: no header.
    csv.writer(f).writerows([n, _food_title(n), n.rsplit("_", 1)[0]] for n in FOOD_TRAIN)
  with open(f"{root}/texts/test_titles.csv", "w", newline="", encoding="utf-8-sig") as f:
    f.write("Image_path,text,label\n")  # BalanceBenchmark's header, BOM, LF.
    csv.writer(f, lineterminator="\n").writerows(
        [n, _food_title(n), n.rsplit("_", 1)[0]] for n in FOOD_TEST)
  # Train rows by bare file name, test rows split-qualified: both forms match.
  return write_embeddings(f"{root}/embeddings", FOOD_TRAIN + [f"test/{n}" for n in FOOD_TEST])


@pytest.fixture(scope="module")
def food_manual(tmp_path_factory):
  path = tmp_path_factory.mktemp("food_manual")
  vectors = write_food101(path / "upmc_food101")
  return str(path), vectors


@pytest.fixture(scope="module")
def food_data_dir(tmp_path_factory):
  return tmp_path_factory.mktemp("food_tfds")


@pytest.fixture(scope="module")
def food(food_manual, food_data_dir):
  return _build(upmc_food101.UpmcFood101.name, food_data_dir, food_manual[0])


def test_food101_builder(food, food_manual):
  _, vectors = food_manual
  assert {k: v.num_examples for k, v in food.info.splits.items()} == {
      "train": 6, "validation": 1, "test": 3}
  assert food.info.features["label"].names == sorted(upmc_food101.CLASSES_ETH)
  assert food.info.metadata["validation"]["source"] == "carved"
  # The fixed rule: a stratified tenth of the train CSV's rows, seed 0.
  labels = np.array([upmc_food101.CLASSES_SORTED.index(n.rsplit("_", 1)[0]) for n in FOOD_TRAIN])
  val_idx, _ = mmbal.data.stratified_split(labels, 1, seed=0)
  assert sorted(_records(food, "validation")) == [f"train/{FOOD_TRAIN[i]}" for i in val_idx]
  seen = []
  for split in ("train", "validation", "test"):
    for key, r in _records(food, split).items():
      source, name = key.split("/")
      assert source == ("test" if split == "test" else "train")
      c = name.rsplit("_", 1)[0]
      assert r["label"] == upmc_food101.CLASSES_SORTED.index(c)
      assert r["raw_text"].decode() == _food_title(name)
      assert r["image_file"].decode() == f"images/{source}/{c}/{name}"
      np.testing.assert_array_equal(r["image"], vectors[name if source == "train" else key][0])
      np.testing.assert_array_equal(r["text"], vectors[name if source == "train" else key][1])
      seen.append(key)
  assert sorted(seen) == sorted([f"train/{n}" for n in FOOD_TRAIN] + [f"test/{n}" for n in FOOD_TEST])


def test_food101_load_by_either_name(food, food_manual, food_data_dir):
  del food
  for name in ("upmc_food101", "food101"):
    data = mmbal.data.load(name, data_dir=str(food_data_dir), manual_dir=food_manual[0])
    assert data.builder.name == "mmbal_upmc_food101"
    _check_loaded(data, {"train": 6, "validation": 1, "test": 3}, 101)


def test_food101_label_orders():
  assert upmc_food101.CLASSES_SORTED == tuple(sorted(upmc_food101.CLASSES_SORTED))
  assert len(set(upmc_food101.CLASSES_ETH)) == 101
  assert upmc_food101.CLASSES_ETH[16:18] == ("cheesecake", "cheese_plate")
  srt = np.arange(101)
  eth = upmc_food101.convert_labels(srt, "sorted", "eth")
  assert [upmc_food101.CLASSES_ETH[i] for i in eth] == list(upmc_food101.CLASSES_SORTED)
  np.testing.assert_array_equal(upmc_food101.convert_labels(eth, "eth", "sorted"), srt)


def test_food101_csv_quirks_and_errors(tmp_path):
  path = tmp_path / "t.csv"
  path.write_bytes('\ufeffImage_path,text,label\r\n\r\na_1.jpg,"Pie, with ""quotes""",apple_pie\r\n'
                   .encode())
  assert upmc_food101.read_titles_csv(str(path)) == [
      (3, "a_1.jpg", 'Pie, with "quotes"', "apple_pie")]
  for text, message in [
      ("a.jpg,Pie, with commas,apple_pie\n", r"t.csv:1: expected 3 fields 'file name,title,class'"),
      ("a.jpg,Pie,apple_pie\nb.jpg,Pie,pie\n", r"t.csv:2: expected one of the 101 Food-101 classes"),
      ("a.jpg,Pie,apple_pie\n,Pie,apple_pie\n", r"t.csv:2: empty file name"),
      ("Image_path,text,label\n", r"t.csv: expected rows 'file name,title,class', found none")]:
    path.write_text(text)
    with pytest.raises(ManualDirError, match=message):
      upmc_food101.read_titles_csv(str(path))


def test_food101_manual_dir_errors_and_skips(tmp_path, food_manual):
  manual_dir, root = _copy(food_manual[0], tmp_path, "upmc_food101")
  os.rename(f"{root}/texts/test_titles.csv", f"{root}/texts/test.csv")
  with pytest.raises(ManualDirError, match=r"texts/test_titles.csv: missing; expected UPMC's "
                                           r"test_titles.csv"):
    _build(upmc_food101.UpmcFood101.name, tmp_path / "d0", manual_dir)
  os.rename(f"{root}/texts/test.csv", f"{root}/texts/test_titles.csv")
  # A test row named like a train row: the bare name no longer identifies the train row,
  # so train/apple_pie_0.jpg has no embedding; a repeated train row is skipped.
  with open(f"{root}/texts/test_titles.csv", "a") as f:
    f.write("apple_pie_0.jpg,Another pie,apple_pie\n")
  with open(f"{root}/texts/train_titles.csv", "a") as f:
    f.write("apple_pie_1.jpg,Again,apple_pie\r\n")
  builder = _build(upmc_food101.UpmcFood101.name, tmp_path / "d1", manual_dir,
                   max_skipped_fraction=0.5)
  skipped = builder.info.metadata["skipped"]
  assert skipped["test"] == {"missing embedding": 1}  # test/apple_pie_0.jpg.
  assert {**skipped["train"], **skipped["validation"]} == {"duplicate id": 1, "missing embedding": 1}
  records = {**_records(builder, "train"), **_records(builder, "validation")}
  assert "train/apple_pie_0.jpg" not in records and len(records) == 6


# ----------------------------------------------------------------------------- MM-IMDb

MM_IDS = [f"{i:07d}" for i in range(1, 11)]
MM_GENRES = [["Drama"], ["Comedy", "Romance"], ["News"], ["Adult", "Drama"], ["Horror", "Thriller"],
             ["Documentary"], ["Film-Noir", "Crime"], ["Short"], ["Sci-Fi", "Action"], ["Western"]]


def _plots(i):
  return [] if i == 7 else ["short plot.", "a much longer plot " * (i + 1)]


def write_mmimdb(root):
  """The mmimdb.tar.gz layout (mmimdb/split.json, mmimdb/dataset/{id}.json + .jpeg)."""
  mm = f"{root}/mmimdb"
  os.makedirs(f"{mm}/dataset", exist_ok=True)
  for i, (m, g) in enumerate(zip(MM_IDS, MM_GENRES)):
    with open(f"{mm}/dataset/{m}.json", "w") as f:
      json.dump({"title": f"Movie {i}", "genres": g, "plot": _plots(i), "year": 2000 + i}, f)
    Image.fromarray(np.full((60, 40, 3), i, np.uint8)).save(f"{mm}/dataset/{m}.jpeg")
  with open(f"{mm}/split.json", "w") as f:
    json.dump({"train": MM_IDS[:6], "dev": MM_IDS[6:8], "test": MM_IDS[8:]}, f)
  # Ids as integers would print them: without the leading zeros.
  return write_embeddings(f"{root}/embeddings", [int(m) for m in MM_IDS])


@pytest.fixture(scope="module")
def mm_manual(tmp_path_factory):
  path = tmp_path_factory.mktemp("mm_manual")
  vectors = write_mmimdb(path / "mmimdb")
  return str(path), vectors


@pytest.fixture(scope="module")
def mm_data_dir(tmp_path_factory):
  return tmp_path_factory.mktemp("mm_tfds")


@pytest.fixture(scope="module")
def mm(mm_manual, mm_data_dir):
  return _build("mmimdb", mm_data_dir, mm_manual[0])


def _expected_multi_hot(i):
  y = np.zeros(23, np.int32)
  for g in MM_GENRES[i]:
    if g in mmimdb.GENRES:
      y[mmimdb.GENRES.index(g)] = 1
  return y


def test_mmimdb_builder(mm, mm_manual):
  _, vectors = mm_manual
  assert {k: v.num_examples for k, v in mm.info.splits.items()} == {
      "train": 5, "validation": 2, "test": 2}
  meta = mm.info.metadata
  assert meta["task"] == "multilabel" and meta["class_names"] == list(mmimdb.GENRES)
  assert meta["dropped_genres"] == {"News": 1, "Adult": 1}
  assert meta["filtered"] == {"train": {"no genre among the 23": 1}}
  assert all(not v for v in meta["skipped"].values())
  assert mm.info.features["label"].shape == (23,)
  expected = {"train": [0, 1, 3, 4, 5], "validation": [6, 7], "test": [8, 9]}
  for split, rows in expected.items():
    records = _records(mm, split)
    assert sorted(records) == [MM_IDS[i] for i in rows]
    for i in rows:
      r = records[MM_IDS[i]]
      assert r["label"].dtype == np.int32
      np.testing.assert_array_equal(r["label"], _expected_multi_hot(i))
      assert r["raw_text"].decode() == max(_plots(i), key=len, default="")
      assert r["image_file"].decode() == f"mmimdb/dataset/{MM_IDS[i]}.jpeg"
      np.testing.assert_array_equal(r["image"], vectors[str(i + 1)][0])
      np.testing.assert_array_equal(r["text"], vectors[str(i + 1)][1])


def test_mmimdb_load_is_multilabel(mm, mm_manual, mm_data_dir):
  del mm
  data = mmbal.data.load("mmimdb", data_dir=str(mm_data_dir), manual_dir=mm_manual[0])
  _check_loaded(data, {"train": 5, "validation": 2, "test": 2}, 23, "multilabel", (23,))
  labels = data.validation.to_numpy()["label"]
  assert sorted(map(tuple, labels.tolist())) == sorted(  # Stored order is TFDS's.
      tuple(_expected_multi_hot(i).tolist()) for i in (6, 7))


def test_mmimdb_split_json_errors(tmp_path):
  path = tmp_path / "split.json"
  for data, message in [
      ({"train": ["1"], "test": ["2"]}, r"expected 'dev' a non-empty list of ids"),
      ({"train": ["1"], "dev": [], "test": ["2"]}, r"expected 'dev' a non-empty list"),
      (["1"], r"expected a JSON object with lists")]:
    path.write_text(json.dumps(data))
    with pytest.raises(ManualDirError, match=message):
      mmimdb.read_split_json(str(path))
  path.write_text("{")
  with pytest.raises(ManualDirError, match=r"split.json: not a readable JSON file"):
    mmimdb.read_split_json(str(path))


def test_mmimdb_manual_dir_errors_and_skips(tmp_path, mm_manual):
  manual_dir, root = _copy(mm_manual[0], tmp_path, "mmimdb")
  os.rename(f"{root}/mmimdb/split.json", f"{root}/split.bak")
  os.rename(f"{root}/embeddings", f"{root}/emb.bak")
  with pytest.raises(ManualDirError) as error:
    _build("mmimdb", tmp_path / "d0", manual_dir)
  assert f"{root}/mmimdb/split.json: missing; expected MM-IMDb's split.json" in str(error.value)
  assert f"{root}/embeddings: missing; expected the precomputed embeddings" in str(error.value)
  os.rename(f"{root}/emb.bak", f"{root}/embeddings")
  with open(f"{root}/mmimdb/split.json", "w") as f:  # A dev id that is also a test id.
    json.dump({"train": MM_IDS[:6], "dev": MM_IDS[6:9], "test": MM_IDS[8:]}, f)
  with pytest.raises(ManualDirError, match=r"split.json: 1 ids in both dev and test"):
    _build("mmimdb", tmp_path / "d1", manual_dir)
  with open(f"{root}/mmimdb/split.json", "w") as f:  # A repeated train id.
    json.dump({"train": MM_IDS[:6] + MM_IDS[:1], "dev": MM_IDS[6:8], "test": MM_IDS[8:]}, f)
  os.remove(f"{root}/mmimdb/dataset/{MM_IDS[1]}.json")
  with open(f"{root}/mmimdb/dataset/{MM_IDS[4]}.json", "w") as f:
    f.write('{"genres": "Horror"}')
  with pytest.raises(ManualDirError, match=r"mmimdb train: 3 of 6 clips skipped"):
    _build("mmimdb", tmp_path / "d2", manual_dir)
  builder = _build("mmimdb", tmp_path / "d3", manual_dir, max_skipped_fraction=0.5)
  assert builder.info.metadata["skipped"]["train"] == {
      "duplicate id": 1, "missing metadata": 1, "malformed metadata": 1}
  assert sorted(_records(builder, "train")) == [MM_IDS[0], MM_IDS[3], MM_IDS[5]]


def test_mmimdb_hdf5_without_h5py_names_the_package(tmp_path, mm_manual, monkeypatch):
  manual_dir, root = _copy(mm_manual[0], tmp_path, "mmimdb")
  shutil.rmtree(f"{root}/embeddings")  # Not needed by config hdf5.
  with pytest.raises(ManualDirError, match=r"multimodal_imdb.hdf5: missing; config 'hdf5'"):
    _build("mmimdb", tmp_path / "d0", manual_dir, config="hdf5")
  open(f"{root}/multimodal_imdb.hdf5", "wb").close()
  find_spec = mmimdb.importlib.util.find_spec
  monkeypatch.setattr(mmimdb.importlib.util, "find_spec",
                      lambda name, *a: None if name == "h5py" else find_spec(name, *a))
  with pytest.raises(ModuleNotFoundError, match=r"multimodal_imdb.hdf5: config 'hdf5' reads HDF5 "
                                                r"files with the package 'h5py'"):
    _build("mmimdb", tmp_path / "d1", manual_dir, config="hdf5")


def write_mmimdb_hdf5(path, genre_order):
  """The authors' HDF5 layout (10 rows: train 0-5, dev 6-7, test 8-9, a Fuel split attribute)."""
  h5py = pytest.importorskip("h5py")
  rng = np.random.default_rng(0)
  n = len(MM_IDS)
  with h5py.File(path, "w") as f:
    f["features"] = rng.standard_normal((n, 300)).astype("float32")
    f["vgg_features"] = rng.standard_normal((n, 4096)).astype("float32")
    f["images"] = np.zeros((n, 3, 4, 4), "int32")
    g = np.zeros((n, 23), "int32")
    for i in range(n):
      for name in MM_GENRES[i]:
        if name in genre_order:
          g[i, genre_order.index(name)] = 1
    f["genres"] = g
    f["genres"].attrs["target_names"] = json.dumps(genre_order)
    f["imdb_ids"] = np.array(MM_IDS, dtype="S7")
    split = np.array([(name.encode(), source.encode(), start, stop)
                      for name, start, stop in (("train", 0, 6), ("dev", 6, 8), ("test", 8, 10))
                      for source in ("features", "genres")],
                     dtype=[("split", "S5"), ("source", "S12"), ("start", "<i8"), ("stop", "<i8")])
    f.attrs["split"] = split
    return {m: (f["vgg_features"][r], f["features"][r]) for r, m in enumerate(MM_IDS)}


def test_mmimdb_hdf5_config(tmp_path, mm_manual):
  manual_dir, root = _copy(mm_manual[0], tmp_path, "mmimdb")
  shutil.rmtree(f"{root}/embeddings")
  os.remove(f"{root}/mmimdb/split.json")  # The split comes from the file's attribute.
  order = list(reversed(mmimdb.GENRES))  # Reordered into mmbal's order by target_names.
  vectors = write_mmimdb_hdf5(f"{root}/multimodal_imdb.hdf5", order)
  builder = _build("mmimdb", tmp_path / "d", manual_dir, config="hdf5")
  assert {k: v.num_examples for k, v in builder.info.splits.items()} == {
      "train": 5, "validation": 2, "test": 2}
  assert builder.info.metadata["shapes"] == {"image": [4096], "text": [300]}
  for split in ("train", "validation", "test"):
    for key, r in _records(builder, split).items():
      i = MM_IDS.index(key)
      np.testing.assert_array_equal(r["label"], _expected_multi_hot(i))
      np.testing.assert_array_equal(r["image"], vectors[key][0])
      np.testing.assert_array_equal(r["text"], vectors[key][1])


def test_mmimdb_trains_multilabel_end_to_end(tmp_path, mm_manual):
  """Sigmoid losses, micro/macro F1 in the results; the run restores; single-label-only
  methods and `mmbal diagnose` refuse clearly."""
  from mmbal.train import config as train_config  # pylint: disable=import-outside-toplevel
  from mmbal.train.loop import train_and_evaluate  # pylint: disable=import-outside-toplevel
  data_dir = tmp_path / "tfds"
  (data_dir / "downloads").mkdir(parents=True)
  os.symlink(mm_manual[0], data_dir / "downloads" / "manual")
  overrides = [f"data.data_dir={data_dir}", "train.batch_size=2", "train.num_epochs=2",
               "eval.batch_size=2", "mesh.data=2", "log.progress=False"]
  c = train_config.apply_overrides(train_config.load_config(f"{ROOT}/configs/mmimdb/joint.py"),
                                   overrides)
  train_and_evaluate(c, tmp_path / "run")
  assert_restores(tmp_path / "run")   # rebuilt as a multi-label run (micro-F1 again)
  from mmbal.train.cli import main  # pylint: disable=import-outside-toplevel
  assert 0.0 <= main(["eval", "--workdir", str(tmp_path / "run")])["accuracy"] <= 1.0  # Hamming
  with pytest.raises(SystemExit, match="task is multilabel"):
    main(["diagnose", "--workdir", str(tmp_path / "run")])
  results = json.loads((tmp_path / "run" / "results.json").read_text())
  assert results["task"] == "multilabel" and "probe" not in results["test"]
  fused = results["test"]["fused"]
  assert {"accuracy", "f1_macro", "hamming", "loss"} <= set(fused)
  assert 0.0 <= fused["accuracy"] <= 1.0 and 0.0 <= fused["f1_macro"] <= 1.0
  c = train_config.apply_overrides(train_config.load_config(f"{ROOT}/configs/mmimdb/joint.py"),
                                   overrides + ["method.name=pmr"])
  with pytest.raises(ValueError, match="multi-label"):
    train_and_evaluate(c, tmp_path / "pmr")
