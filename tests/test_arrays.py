"""`arrays` builder: your own data from a .npz, per-split .npz, a MATLAB multi-view .mat or
one CSV per view (small generated files of each layout), checked before anything is built."""
import json

import numpy as np
import pytest
import scipy.io

import mmbal.data
from mmbal.data import arrays

N, K = 40, 4


def _views(rng, n=N):
  labels = np.arange(n) % K
  return dict(vec=rng.normal(size=(n, 5)) * 10 + 3 + labels[:, None],
              img=rng.normal(size=(n, 6, 6, 1)) + labels[:, None, None, None],
              label=labels)


def _load(path, tmp_path, config=None, **kw):
  return mmbal.data.load("arrays", data_dir=str(tmp_path / "tfds"), path=str(path), config=config,
                         in_memory=True, **kw)


def _all(source):
  return source.to_numpy()


def test_npz_file_is_split_standardised_on_train_and_recorded(tmp_path):
  rng = np.random.default_rng(0)
  np.savez(tmp_path / "views.npz", **_views(rng))
  data = _load(tmp_path / "views.npz", tmp_path, val_fraction=0.25)
  assert data.spec.modalities == {"vec": (5,), "img": (6, 6, 1)} and data.spec.num_classes == K
  sizes = data.spec.split_sizes
  assert sizes["test"] == 8 and sizes["train"] + sizes["validation"] == 32   # test_fraction 0.2
  meta = data.builder.info.metadata
  assert meta["layout"]["input"] == "one .npz" and "test_fraction=0.2" in meta["layout"]["split"]
  # Train-only statistics: the train + validation examples (the builder's train split) have
  # mean 0 and std 1 per feature, the test split does not exactly.
  train = np.concatenate([_all(data.train)["vec"], _all(data.validation)["vec"]])
  np.testing.assert_allclose(train.mean(0), 0, atol=1e-5)
  np.testing.assert_allclose(train.std(0), 1, atol=1e-5)
  img = np.concatenate([_all(data.train)["img"], _all(data.validation)["img"]])
  np.testing.assert_allclose(img.mean(axis=(0, 1, 2)), 0, atol=1e-5)   # per channel
  assert len(meta["standardisation"]["vec"]["mean"]) == 5


def test_per_split_npz_folder_uses_its_own_validation_split(tmp_path):
  rng = np.random.default_rng(1)
  folder = tmp_path / "splits"
  folder.mkdir()
  for split, n in (("train", 24), ("validation", 8), ("test", 12)):
    np.savez(folder / f"{split}.npz", **_views(rng, n))
  data = _load(folder, tmp_path, config="standardize=false")
  assert data.spec.split_sizes == {"train": 24, "validation": 8, "test": 12}
  raw = np.load(folder / "test.npz")["vec"]
  np.testing.assert_allclose(np.sort(_all(data.test)["vec"][:, 0]), np.sort(raw[:, 0]), rtol=1e-6)


def test_mat_cell_array_stored_features_by_examples_with_1_based_labels(tmp_path):
  rng = np.random.default_rng(2)
  v = _views(rng)
  cell = np.empty((1, 2), dtype=object)
  cell[0, 0], cell[0, 1] = v["vec"].T, v["img"].reshape(N, -1)   # view 1 is d x N
  scipy.io.savemat(tmp_path / "mv.mat", {"X": cell, "gt": (v["label"] + 1)[:, None]})
  data = _load(tmp_path / "mv.mat", tmp_path)
  assert data.spec.modalities == {"view1": (5,), "view2": (36,)} and data.spec.num_classes == K
  layout = data.builder.info.metadata["layout"]
  assert layout["view1"] == "features x examples (transposed)"
  assert layout["view2"] == "examples x features" and "shifted" in layout["labels"]
  labels = np.concatenate([_all(s)["label"] for s in (data.train, data.validation, data.test)])
  assert sorted(np.bincount(labels)) == [N // K] * K


def test_mat_numbered_keys_and_csv_folder_with_header_and_class_names(tmp_path):
  rng = np.random.default_rng(3)
  v = _views(rng)
  scipy.io.savemat(tmp_path / "xy.mat", {"x1": v["vec"], "x2": v["img"].reshape(N, -1),
                                         "Y": v["label"][None, :]})
  assert set(_load(tmp_path / "xy.mat", tmp_path).spec.modalities) == {"x1", "x2"}
  folder = tmp_path / "csv"
  folder.mkdir()
  np.savetxt(folder / "audio.csv", v["vec"], delimiter=",", header="a,b,c,d,e", comments="")
  np.savetxt(folder / "text.csv", v["img"].reshape(N, -1)[:, :3], delimiter=",")
  (folder / "label.csv").write_text("label\n" + "\n".join(["cat", "dog", "eel", "fox"][y]
                                                          for y in v["label"]) + "\n")
  data = _load(folder, tmp_path)
  assert data.spec.modalities == {"audio": (5,), "text": (3,)}
  assert data.builder.info.features["label"].names == ["cat", "dog", "eel", "fox"]


@pytest.mark.parametrize("change, message", [
    (lambda v: v["vec"].__setitem__((3, 1), np.nan),
     r"views.npz: 'vec' has NaN or inf values in 1 examples \(the first: example 3\)"),
    (lambda v: v.__setitem__("img", v["img"][:-1]), r"'img' has shape \(39, 6, 6, 1\); expected 40"),
    (lambda v: v.__setitem__("label", v["label"] + 0.5), "expected integer class labels"),
    (lambda v: v.pop("label"), "no 'label' array"),
    (lambda v: v.__setitem__("label", v["label"] - 1), "expected labels >= 0"),
])
def test_bad_arrays_are_refused_naming_file_and_key(tmp_path, change, message):
  v = _views(np.random.default_rng(4))
  change(v)
  np.savez(tmp_path / "views.npz", **v)
  with pytest.raises(arrays.ArraysError, match=message):
    _load(tmp_path / "views.npz", tmp_path)
  assert not (tmp_path / "tfds" / "arrays").exists()   # nothing built


def test_bad_options_and_empty_splits(tmp_path):
  np.savez(tmp_path / "views.npz", **_views(np.random.default_rng(5), n=4))
  with pytest.raises(arrays.ArraysError, match="leaves an empty split"):
    _load(tmp_path / "views.npz", tmp_path, config="test_fraction=0.01")
  with pytest.raises(ValueError, match="test_fraction: expected a value in"):
    _load(tmp_path / "views.npz", tmp_path, config="test_fraction=2")
  with pytest.raises(ValueError, match="data.path: .* does not exist"):
    _load(tmp_path / "nothing.npz", tmp_path)


def test_train_diagnose_and_robustness_from_a_npz_without_code(tmp_path, capsys):
  """The user's path: `mmbal train data.name=arrays data.path=...`, then `mmbal diagnose` and
  `mmbal eval --robustness` on the workdir."""
  from mmbal.train.cli import main  # pylint: disable=import-outside-toplevel
  np.savez(tmp_path / "views.npz", **_views(np.random.default_rng(6), n=60))
  work = tmp_path / "run"
  main(["train", "--workdir", str(work), "data.name=arrays", f"data.path={tmp_path / 'views.npz'}",
        f"data.data_dir={tmp_path / 'tfds'}", "train.num_steps=3", "train.batch_size=8",
        "eval.batch_size=8", "model.feature_dim=8", "model.hidden_dim=8", "log.progress=False"])
  results = json.loads((work / "results.json").read_text())
  assert set(results["test"]["unimodal"]) == {"vec", "img"}   # the file's modalities, by default
  diagnosis = main(["diagnose", "--workdir", str(work)])
  assert diagnosis is not None
  sweep = main(["eval", "--workdir", str(work), "--robustness", "--kinds", "missing", "--seeds", "0"])
  assert {"vec", "img"} <= set(sweep["curves"]["missing"])
  capsys.readouterr()
