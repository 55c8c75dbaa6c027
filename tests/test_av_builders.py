"""Tests of the audio-visual builders: Kinetics-Sounds, AVE, VGGSound, UCF-101.

Each fixture generator writes ~10 synthetic clips in the exact upstream layout of
`../shared/reference/datasets.md` (list and CSV formats with their quirks, file names,
array shapes and dtypes); no real content. Shared writers: `jpg`, `wav`.
"""

import dataclasses
import io
import os
import shutil
import wave

import numpy as np
import pytest
import tensorflow_datasets as tfds
from PIL import Image

import mmbal.data
from mmbal.data import audio_features
from mmbal.data import frames
from mmbal.data import kinetics_sounds as ks
from mmbal.data import manual
from mmbal.train import config as train_config

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


# ----------------------------------------------------------------------------- shared writers


def jpg(path, rng, size=(64, 48), mode="RGB"):
  """A random JPEG of `size` (width, height), RGB or grey ("L")."""
  os.makedirs(os.path.dirname(path), exist_ok=True)
  shape = (size[1], size[0], 3) if mode == "RGB" else (size[1], size[0])
  Image.fromarray(rng.integers(0, 255, shape, dtype=np.uint8), mode).save(path)


def wav(path, seconds, rng, rate=16000, tone=None):
  """16-bit PCM mono WAV: noise, or a sine of frequency `tone`."""
  os.makedirs(os.path.dirname(path), exist_ok=True)
  n = int(rate * seconds)
  x = (np.sin(2 * np.pi * tone * np.arange(n) / rate) if tone else rng.standard_normal(n))
  with wave.open(str(path), "wb") as w:
    w.setnchannels(1)
    w.setsampwidth(2)
    w.setframerate(rate)
    w.writeframes((0.1 * x * 32767).astype("<i2").tobytes())


def write(path, text, **kwargs):
  os.makedirs(os.path.dirname(path), exist_ok=True)
  with open(path, "w", newline="", **kwargs) as f:
    f.write(text)
  return str(path)


def records(builder, split):
  """{id: record} of a prepared split (the id feature is named `id`)."""
  source = builder.as_data_source(split)
  return {r["id"].decode(): r for r in source.__getitems__(list(range(len(source))))}


def build(name, config, data_dir, manual_dir, **kwargs):
  builder = tfds.builder(name, config=config, data_dir=str(data_dir), manual_dir=str(manual_dir),
                         **kwargs)
  builder.download_and_prepare()
  return builder


def check_pipeline(data, modalities, batch=2):
  """train_iterator / eval_batches give float batches of the spec's shapes, masks on padding."""
  assert data.spec.modalities == modalities
  it = mmbal.data.train_iterator(data.train, batch, seed=0, num_epochs=1, shard_index=0,
                                 shard_count=1)
  first = next(it)
  for name, shape in modalities.items():
    assert first[name].shape == (batch,) + shape and first[name].dtype == np.float32
  assert first["label"].dtype == np.int32
  n = len(data.test)
  evals = list(mmbal.data.eval_batches(data.test, n + 1, shard_index=0, shard_count=1))
  assert len(evals) == 1 and evals[0]["mask"].tolist() == [True] * n + [False]
  for name, shape in modalities.items():
    assert evals[0][name].shape == (n + 1,) + shape and not evals[0][name][n:].any()


def check_config(path, builder_name, data_dir, modalities):
  """A joint.py config checks, names the builder, and its pipeline options give images."""
  c = train_config.load_config(f"{ROOT}/{path}")
  train_config.check_config(c)
  assert tuple(c.data.modalities) == modalities and c.model.image_encoder == "resnet18"
  builder = tfds.builder(builder_name, config=c.data.builder_config, data_dir=str(data_dir))
  shapes = frames.input_decoder(builder).shapes
  # [H, W, C] images and [K, H, W, C] clips (encoded per frame) for the ResNets.
  assert all(len(shapes[m]) in (3, 4) for m in modalities)
  return c


# ----------------------------------------------------------------------------- Kinetics-Sounds

KS_IDS = [f"fixKS{i:06d}_000010_000020" for i in range(8)] + ["fixKS000008_25", "fixKS000009_7"]
KS_LABELS = [i % 31 for i in range(10)]
KS_MISSING = KS_IDS[9]          # No frame directory: skipped.
KS_PT, KS_WAV = KS_IDS[1], KS_IDS[2]


def write_kinetics_sounds(root):
  """OGM-GE's layout: LF `{id},10,{label}` lists, (1024, 128) fbanks, frame_0000{1..9}.jpg.

  One fbank is a torch.save file, one clip has a WAV instead; the last clip has no frames.
  Under `lists/ks34/`: BalanceBenchmark-style space-separated lists with a BOM, CRLF, a
  header line, named labels and class_names.txt.
  """
  from test_crema_d import torch_save  # pylint: disable=import-outside-toplevel
  rng = np.random.default_rng(0)
  os.makedirs(f"{root}/audio", exist_ok=True)
  for i, vid in enumerate(KS_IDS):
    fb = np.full((1024, 128), 4.503877 / (2 * 5.141276), np.float32)
    fb[:998] = rng.standard_normal((998, 128))     # A 10-s clip: 998 real frames.
    if vid == KS_PT:
      torch_save(f"{root}/audio/{vid}.pt", fb)
    elif vid == KS_WAV:
      wav(f"{root}/audio/{vid}.wav", 3, rng, tone=1000)
    else:
      np.save(f"{root}/audio/{vid}.npy", fb)
    if vid != KS_MISSING:
      for t in range(1, 10):
        jpg(f"{root}/visual/{vid}/frame_0000{t}.jpg", rng)
  line = lambda i: f"{KS_IDS[i]},10,{KS_LABELS[i]}\n"
  write(f"{root}/lists/my_train.txt", "".join(line(i) for i in range(6)))
  write(f"{root}/lists/my_test.txt", "".join(line(i) for i in range(6, 10)))
  names = [f"class {k}" for k in range(34)]
  write(f"{root}/lists/ks34/class_names.txt", "".join(n + "\r\n" for n in names))
  row = lambda i: f"{KS_IDS[i]} 10 {names[33 - i]}\r\n"
  write(f"{root}/lists/ks34/my_train.txt", "name duration label\r\n" +
        "".join(row(i) for i in range(5)), encoding="utf-8-sig")
  write(f"{root}/lists/ks34/my_val.txt", row(5), encoding="utf-8-sig")
  write(f"{root}/lists/ks34/my_test.txt", "".join(row(i) for i in range(6, 9)),
        encoding="utf-8-sig")


@pytest.fixture(scope="module")
def ks_manual(tmp_path_factory):
  path = tmp_path_factory.mktemp("ks_manual")
  write_kinetics_sounds(path / "kinetics_sounds")
  return str(path)


@pytest.fixture(scope="module")
def ks_data_dir(tmp_path_factory):
  return tmp_path_factory.mktemp("ks_tfds")


@pytest.fixture(scope="module")
def ks31(ks_manual, ks_data_dir):
  return build("kinetics_sounds", "ks31", ks_data_dir, ks_manual, max_skipped_fraction=0.3)


def test_ks_lists(tmp_path):
  rows, repeated = ks.read_list(write(tmp_path / "a.txt", "a_1,10,3\r\nb_2,10,30\r\na_1,10,3\n"),
                                31)
  assert rows == [("a_1", 3), ("b_2", 30)] and repeated == 1
  rows, _ = ks.read_list(write(tmp_path / "b.txt", "id label\na_1 10 4\nb_2 7\n",
                               encoding="utf-8-sig"), 31)
  assert rows == [("a_1", 4), ("b_2", 7)]
  for text, message in [
      ("a_1,10,31\n", r"c.txt:1: expected a label an integer in \[0, 31\), got '31'; "
                      r"a list with more classes needs config ks32 or ks34"),
      ("a_1,10,3\nb_2\n", r"c.txt:2: expected '\{id\},10,\{label\}'"),
      ("a_1,10,3\nb_2,10,x\n", r"c.txt:2: expected a label an integer"),
      ("header,line\n", r"c.txt: expected '\{id\},10,\{label\}' rows, found none")]:
    with pytest.raises(manual.ManualDirError, match=message):
      ks.read_list(write(tmp_path / "c.txt", text), 31)


def test_ks_validation_is_carved_from_train_by_a_fixed_rule(tmp_path):
  ids = [f"v{i:03d}" for i in range(100)]
  write(tmp_path / "my_train.txt", "".join(f"{v},10,{i % 5}\n" for i, v in enumerate(ids)))
  write(tmp_path / "my_test.txt", "t1,10,0\nt2,10,1\n")
  rows, info, _ = ks.assign_splits(str(tmp_path), 31)
  val = [v for v, _ in rows["validation"]]
  assert info["source"] == "carved" and len(val) == 10 and len(rows["train"]) == 90
  val_idx, _ = mmbal.data.stratified_split(np.arange(100) % 5, 10, seed=0)
  assert val == [ids[i] for i in val_idx]
  assert not set(val) & {v for v, _ in rows["test"]}
  write(tmp_path / "my_val.txt", "t1,10,0\n")
  with pytest.raises(manual.ManualDirError, match="my_val.txt: 1 clips of my_test.txt"):
    ks.assign_splits(str(tmp_path), 31)


def test_ks31_builder(ks31, ks_manual):
  splits = {k: v.num_examples for k, v in ks31.info.splits.items()}
  assert splits == {"train": 5, "validation": 1, "test": 3}   # 6 / 4 rows, 1 carved, 1 skipped.
  meta = ks31.info.metadata
  assert meta["validation"]["source"] == "carved"
  assert meta["skipped"] == {"train": {}, "validation": {}, "test": {"missing frames": 1}}
  assert KS_MISSING in meta["skipped_examples"]["test"]["missing frames"][0]
  assert ks31.info.features["label"].num_classes == 31
  root = f"{ks_manual}/kinetics_sounds"
  seen = set()
  for split in ("train", "validation", "test"):
    for vid, r in records(ks31, split).items():
      i = KS_IDS.index(vid)
      seen.add(vid)
      assert (i < 6) == (split != "test") and r["label"] == KS_LABELS[i]
      assert list(r["frames"]) == [open(f"{root}/visual/{vid}/frame_0000{t}.jpg", "rb").read()
                                   for t in range(1, 10)] and r["num_frames"] == 9
      if vid == KS_WAV:    # The fbank computed from the WAV: 3 s -> 298 frames.
        expected, real = audio_features.ogm_ge_fbank(*manual.read_wav(f"{root}/audio/{vid}.wav"))
        assert real == 298 and r["num_fbank_frames"] == 298
        np.testing.assert_allclose(r["fbank"], expected)
        assert np.all(r["fbank"][298:] == manual.FBANK_PAD_VALUE)
      else:
        stored = (manual.read_torch_tensor(f"{root}/audio/{vid}.pt") if vid == KS_PT
                  else np.load(f"{root}/audio/{vid}.npy"))
        np.testing.assert_array_equal(r["fbank"], stored)
        assert r["num_fbank_frames"] == 998
  assert seen == set(KS_IDS) - {KS_MISSING}


def test_ks34_lists_with_names_bom_crlf_header(ks_manual, tmp_path):
  builder = build("kinetics_sounds", "ks34", tmp_path, ks_manual)
  assert builder.info.metadata["validation"]["source"] == "my_val.txt"
  assert {k: v.num_examples for k, v in builder.info.splits.items()} == {
      "train": 5, "validation": 1, "test": 3}
  label = builder.info.features["label"]
  assert label.num_classes == 34 and label.names[33] == "class 33"
  for vid, r in records(builder, "train").items():
    assert r["label"] == 33 - KS_IDS.index(vid)
  # The names survive a reload from disk.
  again = tfds.builder("kinetics_sounds", config="ks34", data_dir=str(tmp_path))
  assert again.info.features["label"].names == label.names


def test_ks_manual_dir_errors(ks_manual, tmp_path):
  copy = tmp_path / "m"
  shutil.copytree(ks_manual, copy)
  root = copy / "kinetics_sounds"
  os.remove(root / "lists" / "my_test.txt")
  shutil.rmtree(root / "visual")
  with pytest.raises(manual.ManualDirError) as error:
    build("kinetics_sounds", "ks31", tmp_path / "d", copy)
  assert f"{root}/lists/my_test.txt: missing" in str(error.value)
  assert f"{root}/visual: missing or empty" in str(error.value)
  # The default max_skipped_fraction (0.05): one of four test clips skipped is too many.
  with pytest.raises(manual.ManualDirError, match=r"kinetics_sounds test: 1 of 4 clips skipped.*"
                                                  r"1 x missing frames"):
    build("kinetics_sounds", "ks31", tmp_path / "d2", ks_manual)


def test_ks_load_and_pipeline(ks31, ks_data_dir, ks_manual):
  del ks31
  data = mmbal.data.load("kinetics_sounds", data_dir=str(ks_data_dir), manual_dir=ks_manual,
                         config="ks31:image_size=16", max_skipped_fraction=0.3)
  assert data.spec.num_classes == 31
  assert data.spec.split_sizes == {"train": 5, "validation": 1, "test": 3}
  check_pipeline(data, {"audio": (1024, 128), "visual": (3, 16, 16, 3)})
  data = mmbal.data.load("kinetics_sounds", data_dir=str(ks_data_dir), manual_dir=ks_manual,
                         config="ks31:image_size=16,visual_layout=channels,audio_layout=image",
                         max_skipped_fraction=0.3)
  check_pipeline(data, {"audio": (1024, 128, 1), "visual": (16, 16, 9)})


def test_ks_config(ks31, ks_data_dir):
  del ks31
  c = check_config("configs/kinetics_sounds/joint.py", "kinetics_sounds", ks_data_dir,
                   ("audio", "visual"))
  assert c.data.name == "kinetics_sounds"


def test_kaldi_fbank_matches_a_frame_computed_by_hand():
  rate, rng = 16000, np.random.default_rng(3)
  x = rng.standard_normal(16000) * 0.1
  fb = audio_features.kaldi_fbank(x, rate, num_mel_bins=128)
  assert fb.shape == (1 + (16000 - 400) // 160, 128) and fb.dtype == np.float32
  t = 7
  frame = x[160 * t: 160 * t + 400].copy()
  frame -= frame.mean()
  frame = np.array([frame[i] - 0.97 * frame[max(i - 1, 0)] for i in range(400)])
  frame *= [0.5 - 0.5 * np.cos(2 * np.pi * i / 399) for i in range(400)]
  power = np.abs(np.fft.rfft(np.concatenate([frame, np.zeros(112)]))) ** 2
  mel = lambda f: 1127 * np.log(1 + f / 700)
  lo, hi = mel(20), mel(8000)
  step = (hi - lo) / 129
  expected = []
  for b in range(128):
    left, centre, right = lo + b * step, lo + (b + 1) * step, lo + (b + 2) * step
    weights = [max(0.0, min((mel(k * 31.25) - left) / (centre - left),
                            (right - mel(k * 31.25)) / (right - centre))) for k in range(256)]
    expected.append(np.log(max(np.dot(weights, power[:256]), np.finfo(np.float32).eps)))
  np.testing.assert_allclose(fb[t], expected, rtol=1e-5, atol=1e-5)
  tone = np.sin(2 * np.pi * 1000 * np.arange(16000) / 16000)
  centre_bin = int(round((mel(1000) - lo) / step - 1))
  assert np.all(audio_features.kaldi_fbank(tone, rate, num_mel_bins=128).argmax(1) == centre_bin)



# ----------------------------------------------------------------------------- AVE

from mmbal.data import ave  # pylint: disable=wrong-import-position

AVE_ROWS = [("Church bell", "fixAVE00001", 0, 10), ("Bark", "fixAVE00002", 2, 7),
            ("Male speech, man speaking", "fixAVE00003", 0, 10),
            ("Female speech, woman speaking", "fixAVE00003", 0, 10),  # Same video, other class.
            ("Banjo", "fixAVE00004", 0, 0),                            # Zero-length segment.
            ("Goat", "fixAVE00005", 3, 9), ("Cat", "fixAVE00006", 0, 10),
            ("Bus", "fixAVE00007", 1, 5), ("Horse", "fixAVE00008", 0, 10),
            ("Flute", "fixAVE00009", 4, 10),
            ("Acoustic guitar", "fixAVE00006", 0, 10)]                # In train and test.
AVE_SPLITS = {"train": AVE_ROWS[:6], "validation": AVE_ROWS[6:8], "test": AVE_ROWS[8:]}
AVE_WAV = ("fixAVE00002", "fixAVE00004")       # WAVs; fixAVE00005 a .npy; the rest PMR .pkl.


def write_ave(root):
  """AVE_Dataset.zip's lists (`&`-separated; Annotations.txt and testSet.txt with a header,
  valSet.txt with CRLF), PMR's pickled float64 (257, 1004) spectrograms or 10-s 16 kHz
  WAVs, 10 frames `{25k:05d}.jpg` per video."""
  import pickle  # pylint: disable=import-outside-toplevel
  rng = np.random.default_rng(1)
  line = lambda r: f"{r[0]}&{r[1]}&good&{r[2]}&{r[3]}"
  header = "Category&VideoID&Quality&StartTime&EndTime"
  write(f"{root}/Annotations.txt", "\n".join([header] + [line(r) for r in AVE_ROWS]) + "\n")
  write(f"{root}/trainSet.txt", "".join(line(r) + "\n" for r in AVE_SPLITS["train"]))
  write(f"{root}/valSet.txt", "".join(line(r) + "\r\n" for r in AVE_SPLITS["validation"]))
  write(f"{root}/testSet.txt", header + "\n" + "".join(line(r) + "\n" for r in AVE_SPLITS["test"]))
  for vid in sorted({r[1] for r in AVE_ROWS}):
    if vid in AVE_WAV:
      wav(f"{root}/audio/{vid}.wav", 10, rng, rate=22050 if vid == "fixAVE00004" else 16000)
    elif vid == "fixAVE00005":
      np.save(f"{root}/audio/{vid}.npy", rng.standard_normal((257, 1004)).astype(np.float32))
    else:
      os.makedirs(f"{root}/audio", exist_ok=True)
      with open(f"{root}/audio/{vid}.pkl", "wb") as f:
        pickle.dump(rng.standard_normal((257, 1004)), f)
    for k in range(10):
      jpg(f"{root}/frames/{vid}/{25 * k:05d}.jpg", rng)


@pytest.fixture(scope="module")
def ave_manual(tmp_path_factory):
  path = tmp_path_factory.mktemp("ave_manual")
  write_ave(path / "ave")
  return str(path)


@pytest.fixture(scope="module")
def ave_data_dir(tmp_path_factory):
  return tmp_path_factory.mktemp("ave_tfds")


@pytest.fixture(scope="module")
def ave_all(ave_manual, ave_data_dir):
  return build("ave", "all", ave_data_dir, ave_manual)


def _rows(builder, split):
  source = builder.as_data_source(split)
  return sorted(((r["id"].decode(), int(r["row"])), r)
                for r in source.__getitems__(list(range(len(source)))))


def test_ave_builder(ave_all, ave_manual):
  assert len(ave.CLASSES) == ave.NUM_CLASSES == 28
  assert {k: v.num_examples for k, v in ave_all.info.splits.items()} == {
      "train": 6, "validation": 2, "test": 3}
  meta = ave_all.info.metadata
  assert meta["skipped"] == {"train": {}, "validation": {}, "test": {}}
  assert meta["cross_split_ids"]["examples"] == ["fixAVE00006"]
  assert meta["empty_segments"] == {"train": 1}
  assert meta["pmr_class_order"] == ["Horse", "Flute", "Acoustic guitar"]
  assert ave_all.info.features["label"].names == list(ave.CLASSES)
  root = f"{ave_manual}/ave"
  for split, expected in AVE_SPLITS.items():
    got = _rows(ave_all, split)
    assert sorted((k[0], ave.CLASSES[r["label"]], int(r["start_s"]), int(r["end_s"]))
                  for k, r in got) == sorted((v, c, s, e) for c, v, s, e in expected)
    for (vid, _), r in got:
      assert list(r["frames"]) == [open(f"{root}/frames/{vid}/{25 * k:05d}.jpg", "rb").read()
                                   for k in range(10)]
      assert r["spectrogram"].shape == (257, 1004) and r["spectrogram"].dtype == np.float32
      if vid in ("fixAVE00001", "fixAVE00003"):
        np.testing.assert_allclose(r["spectrogram"],
                                   ave.audio_features.read_pickled_array(f"{root}/audio/{vid}.pkl"),
                                   rtol=1e-6)
  bark = dict(_rows(ave_all, "train"))[("fixAVE00002", 2)]
  samples, rate = manual.read_wav(f"{root}/audio/fixAVE00002.wav")
  np.testing.assert_allclose(bark["spectrogram"],
                             audio_features.pmr_spectrogram(samples[2 * rate: 7 * rate]), atol=1e-5)
  assert abs(bark["spectrogram"].mean()) < 1e-4 and abs(bark["spectrogram"].std() - 1) < 1e-3


@pytest.mark.parametrize("config,kept", [("first", "Male speech, man speaking"),
                                         ("last", "Female speech, woman speaking")])
def test_ave_repeated_videos(config, kept, ave_manual, tmp_path):
  builder = build("ave", config, tmp_path, ave_manual)
  train = [(k[0], ave.CLASSES[r["label"]]) for k, r in _rows(builder, "train")]
  assert len(train) == 5 and ("fixAVE00003", kept) in train


def test_ave_split_file_errors_and_label_orders(tmp_path):
  for text, message in [
      ("Bark&a&good&0&10\nBark&b&good&0\n", r"x.txt:2: expected 'Category&VideoID"),
      ("Dog&a&good&0&10\n", r"x.txt:1: expected one of the 28 AVE categories, got 'Dog'"),
      ("Bark&a&good&5&2\n", r"x.txt:1: expected integer times 0 <= StartTime <= EndTime"),
      ("Category&VideoID&Quality&StartTime&EndTime\r\n", r"x.txt: expected .* found none")]:
    with pytest.raises(manual.ManualDirError, match=message):
      ave.read_split(write(tmp_path / "x.txt", text))
  order = list(reversed(ave.CLASSES))
  np.testing.assert_array_equal(ave.convert_labels([0, 27], order), [27, 0])


def test_ave_missing_files(ave_manual, tmp_path):
  copy = tmp_path / "m"
  shutil.copytree(ave_manual, copy)
  root = copy / "ave"
  os.remove(root / "valSet.txt")
  with pytest.raises(manual.ManualDirError, match=f"{root}/valSet.txt: missing; expected the "
                                                  f"official validation list"):
    build("ave", "all", tmp_path / "d0", copy)
  write(root / "valSet.txt", "Cat&fixAVE00006&good&0&10\nBus&fixAVE00007&good&1&5\n"
                            "Goat&fixAVE00005&good&3&9\n")
  shutil.rmtree(root / "frames" / "fixAVE00007")
  with open(root / "audio" / "fixAVE00006.pkl", "wb") as f:
    f.write(b"cos\nsystem\n(S'echo unsafe'\ntR.")     # Not an array: refused, never run.
  builder = build("ave", "all", tmp_path / "d1", copy, max_skipped_fraction=0.7)
  assert builder.info.metadata["skipped"]["validation"] == {"missing frames": 1,
                                                            "malformed audio": 1}
  assert "os.system is not part of a numpy array" in str(
      builder.info.metadata["skipped_examples"]["validation"]["malformed audio"])


def test_ave_load_and_pipeline(ave_all, ave_data_dir, ave_manual):
  del ave_all
  data = mmbal.data.load("ave", data_dir=str(ave_data_dir), manual_dir=ave_manual,
                         config="all:image_size=16")
  assert data.spec.num_classes == 28
  assert data.spec.split_sizes == {"train": 6, "validation": 2, "test": 3}
  check_pipeline(data, {"audio": (1004, 257), "visual": (3, 16, 16, 3)})


def test_ave_config(ave_all, ave_data_dir):
  del ave_all
  c = check_config("configs/ave/joint.py", "ave", ave_data_dir, ("audio", "visual"))
  assert c.data.name == "ave"


# ----------------------------------------------------------------------------- VGGSound

from mmbal.data import vggsound  # pylint: disable=wrong-import-position

VGG_CLASSES = ["people marching", "dog barking", "vehicle horn, car horn, honking"]
VGG_ROWS = [(f"fix-VGG_{i:03d}", i, VGG_CLASSES[i % 3], "train" if i < 6 else "test")
            for i in range(10)]
VGG_MISSING = 9                 # No files: skipped.


class VggSoundFixture(vggsound.VggSound):
  """The VGGSound builder with a 3-class config for the fixture's CSV."""

  name = "vggsound_fixture3"
  BUILDER_CONFIGS = [vggsound.VggSoundConfig(name="c3", num_classes=3)]


def write_vggsound(root):
  """The official CSV (no header; quoted labels with commas; here CRLF and one repeated row),
  16-kHz WAVs of 3-10 s, 5 frames `{25k:05d}.jpg`; clip 1's frame directory keeps OGM-GE's
  `.mp4`, clip 2 uses the zero-padded name `{id}_{start:06d}`, clip 3 a 22,050-Hz WAV under
  BalanceBenchmark's per-split `audio/train/`."""
  rng = np.random.default_rng(2)
  line = lambda r: f'{r[0]},{r[1]},"{r[2]}",{r[3]}\r\n' if "," in r[2] else \
      f"{r[0]},{r[1]},{r[2]},{r[3]}\r\n"
  write(f"{root}/vggsound.csv", "".join(line(r) for r in VGG_ROWS) + line(VGG_ROWS[0]))
  for i, (y, start, _, split) in enumerate(VGG_ROWS):
    if i == VGG_MISSING:
      continue
    clip = f"{y}_{start:06d}" if i == 2 else f"{y}_{start}"
    audio = f"{root}/audio/{split}/{clip}.wav" if i == 3 else f"{root}/audio/{clip}.wav"
    wav(audio, 3 + i % 6, rng, rate=22050 if i == 3 else 16000)
    frame_dir = f"{root}/frames/{clip}.mp4" if i == 1 else f"{root}/frames/{clip}"
    for k in range(5):
      jpg(f"{frame_dir}/{25 * k:05d}.jpg", rng)


@pytest.fixture(scope="module")
def vgg_manual(tmp_path_factory):
  path = tmp_path_factory.mktemp("vgg_manual")
  write_vggsound(path / "vggsound")
  return str(path)


@pytest.fixture(scope="module")
def vgg_data_dir(tmp_path_factory):
  return tmp_path_factory.mktemp("vgg_tfds")


@pytest.fixture(scope="module")
def vgg3(vgg_manual, vgg_data_dir):
  return build("vggsound_fixture3", "c3", vgg_data_dir, vgg_manual)


def test_vggsound_csv(tmp_path):
  rows, repeated = vggsound.read_csv(write(
      tmp_path / "a.csv", '# YouTube ID,start,label,split\r\nab_c,1,"horn, car",test\r\n'
                          'ab_c,1,"horn, car",test\r\nxy,30,dog,train\r\n', encoding="utf-8-sig"))
  assert [(r["ytid"], r["start"], r["label"], r["split"]) for r in rows] == [
      ("ab_c", 1, "horn, car", "test"), ("xy", 30, "dog", "train")] and repeated == 1
  for text, message in [("a,1,horn, car,test\n", r"b.csv:1: expected 'YouTubeID,start_seconds"),
                        ("a,1,dog,test\nb,x1,dog,test\n", r"b.csv:2: expected an integer"),
                        ("a,1,dog,val\n", r"b.csv:1: expected the split 'train' or 'test'")]:
    with pytest.raises(manual.ManualDirError, match=message):
      vggsound.read_csv(write(tmp_path / "b.csv", text))
  assert vggsound.clip_names("ab", 7) == ("ab_7", "ab_000007")


def test_vggsound_builder(vgg3, vgg_manual):
  assert {k: v.num_examples for k, v in vgg3.info.splits.items()} == {
      "train": 5, "validation": 1, "test": 3}
  meta = vgg3.info.metadata
  assert meta["repeated"] == 1 and meta["validation"]["source"] == "carved"
  assert meta["skipped"] == {"train": {}, "validation": {}, "test": {"missing audio": 1}}
  assert meta["first_appearance_order"] == VGG_CLASSES
  names = vgg3.info.features["label"].names
  assert names == sorted(VGG_CLASSES)
  root = f"{vgg_manual}/vggsound"
  seen = set()
  for split in ("train", "validation", "test"):
    for clip, r in records(vgg3, split).items():
      i = [k for k, row in enumerate(VGG_ROWS) if clip == f"{row[0]}_{row[1]}"][0]
      seen.add(i)
      assert (split == "test") == (i >= 6) and names[r["label"]] == VGG_ROWS[i][2]
      assert r["waveform"].shape == (160000,) and r["waveform"].dtype == np.int16
      assert r["num_samples"] == 16000 * (3 + i % 6) and r["num_frames"] == 5
      if i == 0:   # 3 s, tiled by doubling to 12 s, the first 10 s kept.
        samples, _ = manual.read_wav(f"{root}/audio/{clip}.wav")
        expected = np.tile(samples, 4)[:160000]
        np.testing.assert_allclose(r["waveform"] / 32767, expected, atol=1e-4)
  assert seen == set(range(9))
  np.testing.assert_array_equal(
      vggsound.convert_labels([0, 1, 2], names, VGG_CLASSES),
      [VGG_CLASSES.index(n) for n in names])


def test_vggsound_class_count_and_missing_csv(vgg_manual, tmp_path):
  with pytest.raises(manual.ManualDirError, match=r"vggsound.csv: 3 distinct labels, config "
                                                  r"'vggsound' expects 309"):
    build("vggsound", "vggsound", tmp_path / "d0", vgg_manual)
  copy = tmp_path / "m"
  shutil.copytree(vgg_manual, copy)
  os.remove(copy / "vggsound" / "vggsound.csv")
  with pytest.raises(manual.ManualDirError, match=r"vggsound.csv: missing; expected the official"):
    build("vggsound", "vggsound", tmp_path / "d1", copy / "vggsound")


def test_vggsound_audio_crops(vgg3, vgg_data_dir, vgg_manual):
  del vgg3
  data = mmbal.data.load("vggsound_fixture3", data_dir=str(vgg_data_dir), manual_dir=vgg_manual,
                         config="c3:image_size=16")
  assert data.spec.num_classes == 3
  check_pipeline(data, {"audio": (626, 129), "visual": (3, 16, 16, 3)})
  record = data.test.records[0]
  np.testing.assert_array_equal(data.test[0]["audio"],
                                vggsound.crop_spectrogram(record["waveform"], 40000))
  x = record["waveform"][40000:120000] / 32768.0
  np.testing.assert_allclose(data.test[0]["audio"], audio_features.log_stft(x).T, rtol=1e-6)
  batches = list(mmbal.data.train_iterator(data.train, 5, seed=0, num_epochs=2, shard_index=0,
                                           shard_count=1))
  assert not np.array_equal(batches[0]["audio"], batches[1]["audio"])  # Fresh crops per epoch.
  data = mmbal.data.load("vggsound_fixture3", data_dir=str(vgg_data_dir), manual_dir=vgg_manual,
                         config="c3:image_size=16,audio_layout=image,visual_layout=channels")
  assert data.spec.modalities == {"audio": (626, 129, 1), "visual": (16, 16, 9)}


def test_vggsound_config(vgg3, vgg_data_dir, vgg_manual):
  del vgg3
  c = train_config.load_config(f"{ROOT}/configs/vggsound/joint.py")
  train_config.check_config(c)
  assert c.data.name == "vggsound" and c.model.image_encoder == "resnet18"
  options = c.data.builder_config.partition(":")[2]
  builder = tfds.builder("vggsound_fixture3", config="c3:" + options, data_dir=str(vgg_data_dir))
  shapes = frames.input_decoder(builder).shapes
  assert shapes == {"audio": (626, 129, 1), "visual": (3, 224, 224, 3)}


# ----------------------------------------------------------------------------- UCF-101

from mmbal.data import ucf101  # pylint: disable=wrong-import-position

UCF_CLASSES = ["ApplyEyeMakeup", "Archery", "HandstandPushups"]
UCF_VIDEOS = [(c, f"v_{'HandStandPushups' if c == 'HandstandPushups' else c}_g{g:02d}_c01")
              for g in (1, 2, 3) for c in UCF_CLASSES] + [("Archery", "v_Archery_g08_c01")]
UCF_TRAIN, UCF_TEST = UCF_VIDEOS[:6], UCF_VIDEOS[6:10]


class Ucf101Fixture(ucf101.Ucf101):
  """The UCF-101 builder with a 3-class split-1 config for the fixture's classInd.txt."""

  name = "mmbal_ucf101_fixture3"
  BUILDER_CONFIGS = [ucf101.Ucf101Config(name="split1", split=1, num_classes=3)]


def write_ucf101(root):
  """UCF101TrainTestSplits' CRLF lists (train with 1-based class indices, test without),
  6 RGB frames `frame_0000{1..6}.jpg` per video (the first video only 2), 8 grey flow
  frames `frame00000{1..8}.jpg` per direction, the HandstandPushups folder/file case quirk."""
  rng = np.random.default_rng(4)
  lists = f"{root}/ucfTrainTestlist"
  write(f"{lists}/classInd.txt", "".join(f"{i + 1} {c}\r\n" for i, c in enumerate(UCF_CLASSES)))
  write(f"{lists}/trainlist01.txt",
        "".join(f"{c}/{v}.avi {UCF_CLASSES.index(c) + 1}\r\n" for c, v in UCF_TRAIN))
  write(f"{lists}/testlist01.txt", "".join(f"{c}/{v}.avi\r\n" for c, v in UCF_TEST))
  for j, (_, v) in enumerate(UCF_TRAIN + UCF_TEST):
    for k in range(1, 3 if j == 0 else 7):
      jpg(f"{root}/rgb/{v}/frame_0000{k}.jpg", rng)
    for d in ("u", "v"):
      for k in range(1, 9):
        jpg(f"{root}/flow/{d}/{v}/frame{k:06d}.jpg", rng, mode="L")


@pytest.fixture(scope="module")
def ucf_manual(tmp_path_factory):
  path = tmp_path_factory.mktemp("ucf_manual")
  write_ucf101(path / "ucf101")
  return str(path)


@pytest.fixture(scope="module")
def ucf_data_dir(tmp_path_factory):
  return tmp_path_factory.mktemp("ucf_tfds")


@pytest.fixture(scope="module")
def ucf3(ucf_manual, ucf_data_dir):
  return build("mmbal_ucf101_fixture3", "split1", ucf_data_dir, ucf_manual)


def test_ucf_lists(tmp_path, ucf_manual):
  lists = f"{ucf_manual}/ucf101/ucfTrainTestlist"
  assert ucf101.read_class_index(f"{lists}/classInd.txt") == UCF_CLASSES
  rows, info = ucf101.assign_splits(lists, 1, UCF_CLASSES)
  assert info["groups"] == [1]    # Of train groups 1 and 2: the lowest max(1, round(2 / 9)).
  assert [r["video"] for r in rows["validation"]] == [v for _, v in UCF_TRAIN[:3]]
  assert [r["video"] for r in rows["train"]] == [v for _, v in UCF_TRAIN[3:]]
  assert [r["label"] for r in rows["test"]] == [UCF_CLASSES.index(c) for c, _ in UCF_TEST]
  for text, message in [
      ("Archery/v_Archery_g01_c01.avi 1\r\n", r"x.txt:1: index 1 disagrees with classInd.txt's 2"),
      ("Bowling/v_Bowling_g01_c01.avi\n", r"x.txt:1: class folder 'Bowling' is not in"),
      ("v_Archery_g01_c01.avi\n", r"x.txt:1: expected 'Class/v_Class_gNN_cMM.avi \[index\]'"),
      ("Archery/v_Archery_g01_c01.avi\nArchery/v_Archery_g01_c01.avi\n",
       r"x.txt:2: video .* repeats")]:
    with pytest.raises(manual.ManualDirError, match=message):
      ucf101.read_list(write(tmp_path / "x.txt", text), UCF_CLASSES)
  np.testing.assert_array_equal(ucf101.convert_labels([0, 1, 2], UCF_CLASSES,
                                                      UCF_CLASSES[::-1]), [2, 1, 0])


def test_ucf_builder(ucf3, ucf_manual):
  assert {k: v.num_examples for k, v in ucf3.info.splits.items()} == {
      "train": 3, "validation": 3, "test": 4}
  meta = ucf3.info.metadata
  assert meta["skipped"] == {"train": {}, "validation": {}, "test": {}}
  assert meta["classind_is_sorted"] and meta["sorted_order"] == UCF_CLASSES
  assert ucf3.info.features["label"].names == UCF_CLASSES
  root = f"{ucf_manual}/ucf101"
  for split, videos in (("validation", UCF_TRAIN[:3]), ("train", UCF_TRAIN[3:]),
                        ("test", UCF_TEST)):
    got = records(ucf3, split)
    assert sorted(got) == sorted(v for _, v in videos)
    for c, v in videos:
      r = got[v]
      n = 2 if v == UCF_TRAIN[0][1] else 6
      assert r["label"] == UCF_CLASSES.index(c) and r["num_frames"] == n
      assert r["group"] == int(v.split("_g")[1][:2])
      assert list(r["frames"]) == [open(f"{root}/rgb/{v}/frame_0000{k}.jpg", "rb").read()
                                   for k in range(1, n + 1)]
      assert r["num_flow_frames"] == 8
      assert list(r["flow_v"]) == [open(f"{root}/flow/v/{v}/frame{k:06d}.jpg", "rb").read()
                                   for k in range(1, 9)]


def test_ucf_flow_input(ucf3):
  record = ucf3.as_data_source("test")[0]
  options = frames.FrameOptions(num_frames=2, image_size=8, normalize=False)
  flow = ucf101.FlowInput(options)
  x = flow(record, None)          # Evaluation: centre frames 2 and 6 of 8, whole frames.
  assert x.shape == (2, 8, 8, 2) and 0 <= x.min() and x.max() <= 1
  for j, i in enumerate((2, 6)):
    expected_u = np.asarray(Image.open(io.BytesIO(record["flow_u"][i])).convert("L")
                            .resize((8, 8), Image.Resampling.BILINEAR), np.float32) / 255
    np.testing.assert_allclose(x[j, ..., 0], expected_u)
  flipped = 0
  for seed in range(8):         # Training: one crop and flip per u/v pair; flips invert u.
    rng = np.random.default_rng(seed)
    y = flow(record, rng)
    rng = np.random.default_rng(seed)
    idx = frames.frame_indices(8, 2, rng)
    box = frames.random_resized_crop_box(64, 48, rng, options.crop_scale)
    flip = rng.random() < 0.5
    flipped += flip
    u = np.asarray(Image.open(io.BytesIO(record["flow_u"][idx[0]])).convert("L")
                   .resize((8, 8), Image.Resampling.BILINEAR, box=box), np.float32) / 255
    expected = 1 - u[:, ::-1] if flip else u
    np.testing.assert_allclose(y[0, ..., 0], expected, atol=1e-6)
  assert 0 < flipped < 8
  channels = ucf101.FlowInput(dataclasses.replace(options, layout="channels"))
  assert channels(record, None).shape == channels.shape == (8, 8, 4)


def test_ucf_missing_files_and_class_count(ucf_manual, tmp_path):
  with pytest.raises(manual.ManualDirError, match=r"classInd.txt: 3 classes, config 'split1' "
                                                  r"expects 101"):
    mmbal.data.load("ucf101", data_dir=str(tmp_path / "d0"), manual_dir=ucf_manual)  # The alias.
  copy = tmp_path / "m"
  shutil.copytree(ucf_manual, copy)
  root = copy / "ucf101"
  shutil.rmtree(root / "flow" / "u" / UCF_TEST[0][1])
  os.remove(root / "flow" / "v" / UCF_TEST[1][1] / "frame000008.jpg")
  builder = build("mmbal_ucf101_fixture3", "split1", tmp_path / "d1", copy,
                  max_skipped_fraction=0.5)
  assert builder.info.metadata["skipped"]["test"] == {"missing frames": 1, "malformed flow": 1}
  os.remove(root / "ucfTrainTestlist" / "testlist01.txt")
  with pytest.raises(manual.ManualDirError, match=r"testlist01.txt: missing; expected the "):
    build("mmbal_ucf101_fixture3", "split1", tmp_path / "d2", copy)


def test_ucf_load_and_pipeline(ucf3, ucf_data_dir, ucf_manual):
  del ucf3
  data = mmbal.data.load("mmbal_ucf101_fixture3", data_dir=str(ucf_data_dir),
                         manual_dir=ucf_manual, config="split1:image_size=16,flow_num_frames=4")
  assert data.spec.num_classes == 3
  assert data.spec.split_sizes == {"train": 3, "validation": 3, "test": 4}
  check_pipeline(data, {"visual": (3, 16, 16, 3), "flow": (4, 16, 16, 2)})
  data = mmbal.data.load("mmbal_ucf101_fixture3", data_dir=str(ucf_data_dir),
                         manual_dir=ucf_manual,
                         config="split1:image_size=16,visual_layout=channels")
  check_pipeline(data, {"visual": (16, 16, 9), "flow": (16, 16, 6)})


def test_ucf_config(ucf3, ucf_data_dir):
  del ucf3
  c = train_config.load_config(f"{ROOT}/configs/ucf101/joint.py")
  train_config.check_config(c)
  assert c.data.name == "ucf101" and tuple(c.data.modalities) == ("visual", "flow")
  assert c.model.image_encoder == "resnet18"
  builder = tfds.builder("mmbal_ucf101_fixture3", config=c.data.builder_config,
                         data_dir=str(ucf_data_dir))
  assert frames.input_decoder(builder).shapes == {"visual": (3, 224, 224, 3), "flow": (3, 224, 224, 2)}


def test_ucf_config_trains_end_to_end(ucf3, ucf_data_dir, ucf_manual, tmp_path):
  """The trainer on two decoded modalities (RGB frames, flow) with fresh draws per epoch."""
  del ucf3
  import json  # pylint: disable=import-outside-toplevel
  from mmbal.train.loop import train_and_evaluate  # pylint: disable=import-outside-toplevel
  downloads = ucf_data_dir / "downloads"
  os.makedirs(downloads, exist_ok=True)
  if not os.path.exists(downloads / "manual"):
    os.symlink(ucf_manual, downloads / "manual")  # TFDS's default manual dir.
  c = train_config.load_config(f"{ROOT}/configs/ucf101/joint.py")
  train_config.apply_overrides(c, [
      f"data.data_dir={ucf_data_dir}", "data.name=mmbal_ucf101_fixture3",
      "data.builder_config=split1:visual_layout=channels,image_size=16", "train.batch_size=2",
      "train.num_epochs=1", "eval.batch_size=2", "mesh.data=2", "log.progress=False",
      "model.image_encoder=cnn"])   # ResNet-18 itself: tests/test_resnet.py
  train_and_evaluate(c, tmp_path / "run")
  results = json.loads((tmp_path / "run" / "results.json").read_text())
  assert set(results["test"]["unimodal"]) == {"visual", "flow"}
  assert 0.0 <= results["test"]["fused"]["accuracy"] <= 1.0
