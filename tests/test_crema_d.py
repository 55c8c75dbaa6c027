"""Tests of the CREMA-D builder (`mmbal.data.crema_d`) and its input pipeline (`mmbal.data.frames`).

The fixture writes 10 synthetic clips in the exact upstream layouts (OGM-GE's headerless
CRLF split files and BOM + CRLF `stat.csv`, D&R's LF `val.csv`, 16 kHz 16-bit PCM WAVs,
`Image-01-FPS/<stem>/00030.jpg` frames, `(1024, 128)` float32 fbanks as `.npy` and as
zip-format `torch.save` files, `visual/<stem>/frame_000NN.jpg` frames); no CREMA-D content.
"""

import collections
import io
import json
import math
import os
import pickle
import shutil
import wave
import zipfile

import numpy as np
import pytest
import tensorflow_datasets as tfds
from PIL import Image

import mmbal.data
from mmbal.data import crema_d
from mmbal.data import frames
from mmbal.train import config as train_config

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
STEMS = [f"10{a:02d}_{s}_{e}_XX" for a, s, e in
         [(1, "DFA", "ANG"), (1, "IEO", "NEU"), (2, "TIE", "HAP"), (2, "ITS", "SAD"),
          (3, "IWW", "FEA"), (3, "MTI", "DIS"), (4, "TSI", "ANG"), (4, "WSI", "HAP"),
          (5, "IOM", "SAD"), (5, "ITH", "NEU")]]
PT_STEMS = STEMS[2:4]  # Their fbanks are torch.save files instead of .npy.
DURATIONS = [1.5 + 0.25 * i for i in range(10)]
TFDS_NAME = crema_d.CremaD.name


# ----------------------------------------------------------------------------- torch.save writer


class _Global:
  """Pickled as the GLOBAL opcode `module.name`, as torch's pickles name its functions."""

  def __init__(self, module, name):
    self.module, self.name = module, name

  def __call__(self, *args):  # Only pickled, never called.
    raise NotImplementedError


class _Storage:
  def __init__(self, key, type_name, numel):
    self.key, self.type_name, self.numel = key, type_name, numel


class _Tensor:
  def __init__(self, storage, size, stride):
    self.args = (storage, 0, tuple(size), tuple(stride), False, collections.OrderedDict())

  def __reduce_ex__(self, protocol):
    return _Global("torch._utils", "_rebuild_tensor_v2"), self.args


class _TorchPickler(pickle._Pickler):  # pylint: disable=protected-access
  dispatch = dict(pickle._Pickler.dispatch)  # pylint: disable=protected-access

  def _save_global(self, obj):
    self.write(pickle.GLOBAL + f"{obj.module}\n{obj.name}\n".encode())

  dispatch[_Global] = _save_global

  def persistent_id(self, obj):
    if isinstance(obj, _Storage):
      return ("storage", _Global("torch", obj.type_name), obj.key, "cpu", obj.numel)
    return None


def torch_save(path, array, *, transposed=False):
  """Writes `array` like `torch.save(torch.from_numpy(array), path)` (zip format, torch >= 1.6).

  `transposed`: store the data column-major (a transposed tensor's strides).
  """
  array = np.asarray(array)
  type_name = {np.float32: "FloatStorage", np.int64: "LongStorage"}[array.dtype.type]
  data = np.asfortranarray(array) if transposed else np.ascontiguousarray(array)
  item = array.dtype.itemsize
  stride = [s // item for s in data.strides]
  buf = io.BytesIO()
  _TorchPickler(buf, protocol=2).dump(_Tensor(_Storage("0", type_name, array.size), array.shape,
                                              stride))
  prefix = os.path.splitext(os.path.basename(path))[0]
  with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as z:
    z.writestr(f"{prefix}/data.pkl", buf.getvalue())
    z.writestr(f"{prefix}/byteorder", "little")
    z.writestr(f"{prefix}/data/0", data.tobytes(order="A"))
    z.writestr(f"{prefix}/version", "3\n")


# ----------------------------------------------------------------------------- fixture


def write_fixture(root):
  """10 clips in the upstream layouts under `root` (= `<manual_dir>/crema_d`)."""
  os.makedirs(f"{root}/AudioWAV", exist_ok=True)
  os.makedirs(f"{root}/splits", exist_ok=True)
  os.makedirs(f"{root}/audio", exist_ok=True)
  rng = np.random.default_rng(0)
  for i, stem in enumerate(STEMS):
    sr, dur = 16000, DURATIONS[i]
    x = (0.1 * np.sin(2 * np.pi * 220 * np.arange(int(sr * dur)) / sr) * 32767).astype("<i2")
    with wave.open(f"{root}/AudioWAV/{stem}.wav", "wb") as w:
      w.setnchannels(1)
      w.setsampwidth(2)
      w.setframerate(sr)
      w.writeframes(x.tobytes())
    d = f"{root}/Image-01-FPS/{stem}"
    os.makedirs(d, exist_ok=True)
    for k in range(int(np.ceil(dur))):  # One frame per second, OGM-GE's names.
      Image.fromarray(rng.integers(0, 255, (48, 64, 3), dtype=np.uint8)).save(
          f"{d}/{30 * k:05d}.jpg")
    d = f"{root}/visual/{stem}"
    os.makedirs(d, exist_ok=True)
    for k in range(1, 4):  # The .pt variant's names.
      Image.fromarray(rng.integers(0, 255, (48, 64, 3), dtype=np.uint8)).save(
          f"{d}/frame_000{k:02d}.jpg")
    fb = np.full((1024, 128), (0 + 4.503877) / (2 * 5.141276), np.float32)
    fb[:150] = rng.normal(size=(150, 128)).astype(np.float32)
    if stem in PT_STEMS:
      torch_save(f"{root}/audio/{stem}.pt", fb)
    else:
      np.save(f"{root}/audio/{stem}.npy", fb)
  lab = lambda s: s.split("_")[2]
  with open(f"{root}/splits/train.csv", "w", newline="") as f:  # OGM-GE: no header, CRLF.
    f.write("".join(f"{s},{lab(s)}\r\n" for s in STEMS[:6]))
  with open(f"{root}/splits/test.csv", "w", newline="") as f:
    f.write("".join(f"{s},{lab(s)}\r\n" for s in STEMS[6:]))
  with open(f"{root}/splits/val.csv", "w") as f:  # D&R: LF, no header.
    f.write("".join(f"{s},{lab(s)}\n" for s in STEMS[4:6]))
  with open(f"{root}/splits/stat.csv", "w", newline="", encoding="utf-8-sig") as f:  # BOM + CRLF.
    f.write("".join(f"{c}\r\n" for c in crema_d.EMOTIONS_OGM_GE))


@pytest.fixture(scope="module")
def manual(tmp_path_factory):
  """A manual dir holding `crema_d/` with the 10-clip fixture."""
  path = tmp_path_factory.mktemp("manual")
  write_fixture(path / "crema_d")
  return str(path)


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
  return str(tmp_path_factory.mktemp("crema_tfds"))


def _build(config, data_dir, manual_dir, **kwargs):
  builder = tfds.builder(TFDS_NAME, config=config, data_dir=data_dir, manual_dir=manual_dir,
                         **kwargs)
  builder.download_and_prepare()
  return builder


@pytest.fixture(scope="module")
def ogm_ge(data_dir, manual):
  return _build("ogm_ge", data_dir, manual)


@pytest.fixture(scope="module")
def fbank(data_dir, manual):
  return _build("fbank", data_dir, manual)


def _records(builder, split):
  """{stem: record} of a prepared split."""
  source = builder.as_data_source(split)
  return {r["id"].decode(): r for r in source.__getitems__(list(range(len(source))))}


def _copy(manual, tmp_path):
  """A private copy of the fixture manual dir, to damage."""
  shutil.copytree(manual, tmp_path / "manual")
  return str(tmp_path / "manual"), str(tmp_path / "manual" / "crema_d")


# ----------------------------------------------------------------------------- audio


def test_ogm_ge_spectrogram_of_every_fixture_wav(manual):
  for i, stem in enumerate(STEMS):
    samples, rate = crema_d.read_wav(f"{manual}/crema_d/AudioWAV/{stem}.wav")
    assert rate == 16000 and samples.dtype == np.float32
    assert len(samples) == int(16000 * DURATIONS[i]) and np.abs(samples).max() <= 1.0
    spec = crema_d.ogm_ge_spectrogram(samples, rate)
    assert spec.shape == (257, 188) and spec.dtype == np.float32
    # A 220 Hz tone: the strongest bin is 220 / (22050 / 512) = 5.1 -> 5, in every frame.
    assert np.all(np.argmax(spec[:, 2:-2], axis=0) == 5)


def test_ogm_ge_spectrogram_matches_the_definition():
  rng = np.random.default_rng(1)
  x = rng.uniform(-0.5, 0.5, 30000).astype(np.float32)  # Already 22,050 Hz: no resampling.
  spec = crema_d.ogm_ge_spectrogram(x, 22050)
  tiled = np.tile(x, 3)[:66150]
  padded = np.concatenate([np.zeros(256), tiled, np.zeros(256)])
  hann = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(512) / 512)  # Periodic Hann.
  for t in (0, 1, 100, 187):
    frame = padded[353 * t: 353 * t + 512] * hann
    expected = np.log(np.abs(np.fft.rfft(frame)) + 1e-7)
    np.testing.assert_allclose(spec[:, t], expected, rtol=1e-5, atol=1e-4)
  short = crema_d.ogm_ge_spectrogram(x[:5000], 22050)  # < 1 s: tiled until 3 s long.
  assert short.shape == (257, 188)


def test_read_wav_rejects_non_wav(tmp_path):
  path = tmp_path / "x.wav"
  path.write_bytes(b"RIFF\x00\x00\x00\x00WAVEjunk")
  with pytest.raises(ValueError, match="not a readable WAV file"):
    crema_d.read_wav(path)


# ----------------------------------------------------------------------------- torch files


def test_torch_files_are_read_without_torch(tmp_path):
  x = np.arange(12, dtype=np.float32).reshape(3, 4)
  torch_save(tmp_path / "a.pt", x)
  torch_save(tmp_path / "b.pt", x, transposed=True)
  np.testing.assert_array_equal(crema_d.read_torch_tensor(tmp_path / "a.pt"), x)
  np.testing.assert_array_equal(crema_d.read_torch_tensor(tmp_path / "b.pt"), x)
  # Anything but a plain tensor is refused, not executed.
  with zipfile.ZipFile(tmp_path / "c.pt", "w") as z:
    z.writestr("c/data.pkl", pickle.dumps(print, protocol=2))
  with pytest.raises(ValueError, match=r"builtin\w*\.print is not part of a plain tensor"):
    crema_d.read_torch_tensor(tmp_path / "c.pt")


@pytest.mark.skipif(__import__("importlib").util.find_spec("torch") is not None,
                    reason="torch is installed: legacy files are read with it")
def test_legacy_torch_file_names_the_missing_package(tmp_path):
  (tmp_path / "old.pt").write_bytes(b"\x80\x02\x8a\x0alegacy")  # A pre-1.6 file's magic.
  with pytest.raises(ModuleNotFoundError, match="needs the package 'torch'"):
    crema_d.read_torch_tensor(tmp_path / "old.pt")


def test_fbank_checks_shape_and_counts_real_frames(tmp_path):
  np.save(tmp_path / "bad.npy", np.zeros((1024, 64), np.float32))
  with pytest.raises(ValueError, match=r"shape \(1024, 128\)"):
    crema_d.read_fbank(tmp_path / "bad.npy")
  fb = np.full((1024, 128), crema_d.FBANK_PAD_VALUE, np.float32)
  fb[:7] = 1.0
  np.save(tmp_path / "ok.npy", fb[None])  # (1, 1024, 128) is accepted too.
  assert crema_d.num_fbank_frames(crema_d.read_fbank(tmp_path / "ok.npy")) == 7


# ----------------------------------------------------------------------------- split files


def _write(path, text, **kwargs):
  with open(path, "w", newline="", **kwargs) as f:
    f.write(text)
  return str(path)


def test_split_csv_quirks(tmp_path):
  bom_crlf = _write(tmp_path / "a.csv", "1001_DFA_ANG_XX,ANG\r\n1002_IEO_NEU_XX,NEU\r\n",
                    encoding="utf-8-sig")
  header_lf = _write(tmp_path / "b.csv", "name,label\n1001_DFA_ANG_XX,ANG\n\n1002_IEO_NEU_XX,NEU\n")
  expected = [("1001_DFA_ANG_XX", "ANG"), ("1002_IEO_NEU_XX", "NEU")]
  assert crema_d.read_split_csv(bom_crlf) == expected
  assert crema_d.read_split_csv(header_lf) == expected
  for text, message in [
      ("1001_DFA_ANG_XX,ANG\n1002_IEO_NEU_XX\n", r"c.csv:2: expected 'stem,LABEL'"),
      ("1001_DFA_ANG_XX.flv,ANG\n", r"c.csv:1: expected a CREMA-D clip name"),
      ("1001_DFA_ANG_XX,ANG\n1002_IEO_NEU_XX,Neutral\n", r"c.csv:2: expected a label in"),
      ("1001_DFA_ANG_XX,SAD\n", r"c.csv:1: label SAD disagrees with the emotion ANG"),
      ("1001_DFA_ANG_XX,ANG\n1001_DFA_ANG_XX,ANG\n",
       r"c.csv:2: clip 1001_DFA_ANG_XX repeats line 1"),
      ("name,label\n", r"c.csv: expected 'stem,LABEL' rows, found none")]:
    with pytest.raises(crema_d.ManualDirError, match=message):
      crema_d.read_split_csv(_write(tmp_path / "c.csv", text))


def _splits(tmp_path, **files):
  d = tmp_path / "splits"
  d.mkdir(parents=True, exist_ok=True)
  for name, stems in files.items():
    _write(d / f"{name}.csv", "".join(f"{s},{s.split('_')[2]}\r\n" for s in stems))
  return str(d)


def test_validation_rules(tmp_path):
  # D&R's val.csv.
  rows, info = crema_d.assign_splits(_splits(tmp_path / "a", train=STEMS[:6], test=STEMS[6:],
                                             val=STEMS[4:6], my_train=STEMS[:4]))
  assert [s for s, _ in rows["validation"]] == STEMS[4:6] and info["source"] == "val.csv"
  assert [s for s, _ in rows["train"]] == STEMS[:4]
  assert [s for s, _ in rows["test"]] == STEMS[6:]
  # Only my_train.csv: validation is the rest of train.csv.
  rows, info = crema_d.assign_splits(_splits(tmp_path / "b", train=STEMS[:6], test=STEMS[6:],
                                             my_train=STEMS[1:6]))
  assert [s for s, _ in rows["validation"]] == STEMS[:1] and info["source"] == "my_train.csv"
  # Neither: carved from train.csv by the fixed rule, never from test.
  big = [f"1{a:03d}_DFA_{e}_XX" for a in range(30) for e in crema_d.EMOTIONS_SORTED]
  split_dir = _splits(tmp_path / "c", train=big[:150], test=big[150:])
  rows, info = crema_d.assign_splits(split_dir)
  val = [s for s, _ in rows["validation"]]
  assert info["source"] == "carved" and len(val) == round(150 / 9) == 17
  assert set(val) <= set(big[:150]) and len(rows["train"]) == 133
  assert rows == crema_d.assign_splits(split_dir)[0]  # Fixed rule: the same every time.
  labels = np.array([crema_d.EMOTIONS_SORTED.index(s.split("_")[2]) for s in big[:150]])
  val_idx, _ = mmbal.data.stratified_split(labels, 17, seed=0)
  assert val == [big[i] for i in val_idx]


@pytest.mark.parametrize("files,message", [
    (dict(train=STEMS[:6], test=STEMS[5:]), r"train.csv and .*test.csv: 1 clips in both"),
    (dict(train=STEMS[:6], test=STEMS[6:], val=STEMS[5:7]),
     r"val.csv: 1 clips of test.csv .*never from the test set"),
    (dict(train=STEMS[:6], test=STEMS[6:], val=STEMS[4:6], my_train=STEMS[:3]),
     r"my_train.csv and .*val.csv: expected to partition train.csv"),
    (dict(test=STEMS[6:]), r"train.csv: missing; expected OGM-GE's train.csv"),
])
def test_split_file_errors(tmp_path, files, message):
  with pytest.raises(crema_d.ManualDirError, match=message):
    crema_d.assign_splits(_splits(tmp_path, **files))


def test_label_orders():
  assert crema_d.EMOTIONS_SORTED == tuple(sorted(crema_d.EMOTIONS_OGM_GE))
  ogm = np.arange(6)
  srt = crema_d.convert_labels(ogm, "ogm_ge", "sorted")
  assert [crema_d.EMOTIONS_SORTED[i] for i in srt] == list(crema_d.EMOTIONS_OGM_GE)
  np.testing.assert_array_equal(crema_d.convert_labels(srt, "sorted", "ogm_ge"), ogm)


# ----------------------------------------------------------------------------- builders


def test_ogm_ge_builder(ogm_ge, manual):
  assert {k: v.num_examples for k, v in ogm_ge.info.splits.items()} == {
      "train": 4, "validation": 2, "test": 4}
  assert ogm_ge.info.metadata["validation"]["source"] == "val.csv"
  assert ogm_ge.info.metadata["skipped"] == {"train": {}, "validation": {}, "test": {}}
  assert ogm_ge.info.features["label"].names == list(crema_d.EMOTIONS_OGM_GE)
  split_of = {**{s: "train" for s in STEMS[:4]}, **{s: "validation" for s in STEMS[4:6]},
              **{s: "test" for s in STEMS[6:]}}
  for split in ("train", "validation", "test"):
    for stem, r in _records(ogm_ge, split).items():
      i = STEMS.index(stem)
      assert split_of[stem] == split
      assert r["label"] == crema_d.EMOTIONS_OGM_GE.index(stem.split("_")[2])
      assert r["actor_id"] == int(stem[:4])
      frame_dir = f"{manual}/crema_d/Image-01-FPS/{stem}"
      names = [f"{30 * k:05d}.jpg" for k in range(math.ceil(DURATIONS[i]))]
      assert r["num_frames"] == len(names) == len(r["frames"])
      assert list(r["frames"]) == [open(f"{frame_dir}/{n}", "rb").read() for n in names]
      expected = crema_d.ogm_ge_spectrogram(
          *crema_d.read_wav(f"{manual}/crema_d/AudioWAV/{stem}.wav"))
      np.testing.assert_array_equal(r["spectrogram"], expected)


def test_sorted_label_order_config(data_dir, manual):
  builder = _build("ogm_ge_sorted", data_dir, manual)
  assert builder.info.features["label"].names == list(crema_d.EMOTIONS_SORTED)
  for stem, r in _records(builder, "train").items():
    assert r["label"] == crema_d.EMOTIONS_SORTED.index(stem.split("_")[2])


def test_fbank_builder(fbank, manual):
  assert {k: v.num_examples for k, v in fbank.info.splits.items()} == {
      "train": 4, "validation": 2, "test": 4}
  assert fbank.info.features["label"].names == list(crema_d.EMOTIONS_SORTED)
  for split in ("train", "validation", "test"):
    for stem, r in _records(fbank, split).items():
      d = f"{manual}/crema_d"
      stored = (crema_d.read_torch_tensor(f"{d}/audio/{stem}.pt") if stem in PT_STEMS
                else np.load(f"{d}/audio/{stem}.npy"))
      assert stored.shape == (1024, 128)
      np.testing.assert_array_equal(r["fbank"], stored)
      assert r["num_fbank_frames"] == 150
      assert r["label"] == crema_d.EMOTIONS_SORTED.index(stem.split("_")[2])
      assert list(r["frames"]) == [open(f"{d}/visual/{stem}/frame_000{k:02d}.jpg", "rb").read()
                                   for k in (1, 2, 3)]


def test_frames_are_ordered_by_their_last_number(tmp_path):
  for name in ("img_10.jpg", "img_2.jpg", "frame_00001.jpg", "notes.txt", "cover.jpg"):
    (tmp_path / name).write_bytes(b"")
  assert [os.path.basename(p) for p in frames.list_frames(tmp_path)] == [
      "frame_00001.jpg", "img_2.jpg", "img_10.jpg", "cover.jpg"]


# ----------------------------------------------------------------------------- manual-dir errors


def test_missing_manual_dir_and_directories(tmp_path, manual):
  empty = tmp_path / "empty"
  empty.mkdir()
  with pytest.raises(crema_d.ManualDirError, match="manual directory is missing or empty"):
    _build("ogm_ge", str(tmp_path / "d0"), str(empty))
  manual_dir, root = _copy(manual, tmp_path)
  shutil.rmtree(f"{root}/Image-01-FPS")
  os.remove(f"{root}/splits/test.csv")
  with pytest.raises(crema_d.ManualDirError) as error:
    _build("ogm_ge", str(tmp_path / "d1"), manual_dir)
  assert f"{root}/splits/test.csv: missing; expected OGM-GE's test.csv" in str(error.value)
  assert f"{root}/Image-01-FPS: missing or empty; config 'ogm_ge' expects" in str(error.value)
  shutil.copy(f"{root}/splits/train.csv", f"{root}/splits/test.csv")
  shutil.rmtree(f"{root}/visual")  # The fbank config needs visual/, not Image-01-FPS/.
  with pytest.raises(crema_d.ManualDirError, match=f"{root}/visual: missing or empty"):
    _build("fbank", str(tmp_path / "d2"), manual_dir)


def test_missing_and_malformed_clips_are_skipped_and_counted(tmp_path, manual):
  manual_dir, root = _copy(manual, tmp_path)
  os.remove(f"{root}/AudioWAV/{STEMS[0]}.wav")
  jpg = f"{root}/Image-01-FPS/{STEMS[1]}/00030.jpg"
  data = open(jpg, "rb").read()
  open(jpg, "wb").write(data[: len(data) // 2])  # Truncated: found only by decoding.
  _write(f"{root}/AudioWAV/{STEMS[6]}.wav", "not a wav")
  with pytest.raises(crema_d.ManualDirError,
                     match=r"train: 1 of 4 clips skipped, more than max_skipped_fraction=0.05: "
                           r"1 x missing audio"):
    _build("ogm_ge", str(tmp_path / "d0"), manual_dir)
  builder = _build("ogm_ge", str(tmp_path / "d1"), manual_dir, max_skipped_fraction=0.5)
  meta = builder.info.metadata
  assert meta["skipped"] == {"train": {"missing audio": 1, "malformed frame": 1}, "validation": {},
                             "test": {"malformed audio": 1}}
  assert f"{root}/AudioWAV/{STEMS[0]}.wav" in meta["skipped_examples"]["train"]["missing audio"][0]
  assert jpg in meta["skipped_examples"]["train"]["malformed frame"][0]
  assert "is not a RIFF/WAVE file" in meta["skipped_examples"]["test"]["malformed audio"][0]
  assert sorted(_records(builder, "train")) == sorted(STEMS[2:4])
  assert len(_records(builder, "test")) == 3
  # The counts survive a reload from disk.
  again = tfds.builder(TFDS_NAME, config="ogm_ge", data_dir=str(tmp_path / "d1"))
  assert again.info.metadata["skipped"]["train"] == {"missing audio": 1, "malformed frame": 1}


# ----------------------------------------------------------------------------- input pipeline


def _load(data_dir, manual, config):
  return mmbal.data.load("crema_d", data_dir=data_dir, config=config, manual_dir=manual)


def test_load_gives_float_inputs_and_the_builders_splits(ogm_ge, data_dir, manual):
  del ogm_ge  # Prepared already.
  data = _load(data_dir, manual, "ogm_ge:num_frames=2,image_size=32")
  assert data.spec.modalities == {"audio": (188, 257), "visual": (2, 32, 32, 3)}
  assert data.spec.num_classes == 6
  assert data.spec.split_sizes == {"train": 4, "validation": 2, "test": 4}
  it = mmbal.data.train_iterator(data.train, 2, seed=0, num_epochs=1, shard_index=0, shard_count=1)
  batches = list(it)
  assert len(batches) == 2
  for b in batches:
    assert b["audio"].shape == (2, 188, 257) and b["audio"].dtype == np.float32
    assert b["visual"].shape == (2, 2, 32, 32, 3) and b["visual"].dtype == np.float32
    assert b["label"].dtype == np.int32
  evals = list(mmbal.data.eval_batches(data.validation, 4, shard_index=0, shard_count=1))
  assert len(evals) == 1 and evals[0]["mask"].tolist() == [True, True, False, False]
  assert evals[0]["visual"].shape == (4, 2, 32, 32, 3)
  assert not evals[0]["visual"][2:].any() and not evals[0]["audio"][2:].any()
  # Layout options: images for the 2-D CNN encoders.
  data = _load(data_dir, manual, "ogm_ge:num_frames=3,image_size=16,visual_layout=channels,"
                                 "audio_layout=image")
  assert data.spec.modalities == {"audio": (188, 257, 1), "visual": (16, 16, 9)}
  assert data.train[0]["visual"].shape == (16, 16, 9)
  with pytest.raises(ValueError, match="expected pipeline options key=value with keys"):
    _load(data_dir, manual, "ogm_ge:frames=2")
  with pytest.raises(ValueError, match="visual_layout: expected 'frames' or 'channels'"):
    _load(data_dir, manual, "ogm_ge:visual_layout=tubes")


def _by_audio(batches):
  """{audio bytes: visual} over batches: the audio identifies an example (it is deterministic)."""
  out = {}
  for b in batches:
    for a, v in zip(b["audio"], b["visual"]):
      out.setdefault(a.tobytes(), []).append(v)
  return out


def test_training_draws_are_fresh_per_epoch_seeded_and_shard_free(ogm_ge, data_dir, manual):
  del ogm_ge
  data = _load(data_dir, manual, "ogm_ge:num_frames=2,image_size=16")
  kw = dict(num_epochs=2, shard_index=0, shard_count=1)
  run = lambda seed: list(mmbal.data.train_iterator(data.train, 4, seed=seed, **kw))
  first, again, other = run(0), run(0), run(1)
  for a, b in zip(first, again):  # Seeded.
    for k in a:
      np.testing.assert_array_equal(a[k], b[k])
  assert not np.array_equal(first[0]["visual"], other[0]["visual"])
  for visuals in _by_audio(first).values():  # Each example, once per epoch: new draws.
    assert len(visuals) == 2 and not np.array_equal(visuals[0], visuals[1])
  # Two processes draw what one process draws (the draws follow the global stream position).
  halves = [list(mmbal.data.train_iterator(data.train, 4, seed=0, num_epochs=2, shard_index=i,
                                           shard_count=2)) for i in range(2)]
  for step, whole in enumerate(first):
    np.testing.assert_array_equal(whole["visual"][0::2], halves[0][step]["visual"])
    np.testing.assert_array_equal(whole["visual"][1::2], halves[1][step]["visual"])
  # A restored iterator continues with the same draws.
  it = mmbal.data.train_iterator(data.train, 2, seed=0)
  next(it)
  state = it.get_state()
  expected = next(it)
  it2 = mmbal.data.train_iterator(data.train, 2, seed=0)
  it2.set_state(state)
  np.testing.assert_array_equal(next(it2)["visual"], expected["visual"])


def test_evaluation_is_deterministic_centre_frames(ogm_ge, data_dir, manual):
  data = _load(data_dir, manual, "ogm_ge:num_frames=2,image_size=16")
  a = list(mmbal.data.eval_batches(data.test, 4, shard_index=0, shard_count=1))
  b = list(mmbal.data.eval_batches(data.test, 4, shard_index=0, shard_count=1))
  np.testing.assert_array_equal(a[0]["visual"], b[0]["visual"])
  record = ogm_ge.as_data_source("test")[0]
  n = len(record["frames"])
  options = frames.FrameOptions(num_frames=2, image_size=16)
  expected = [frames.decode_frame(record["frames"][int((i + 0.5) * n / 2)], options, None)
              for i in range(2)]
  np.testing.assert_allclose(data.test[0]["visual"], np.stack(expected))
  np.testing.assert_array_equal(data.test[0]["audio"], record["spectrogram"].T)
  # In memory: the stored records are kept, decoding (and training draws) stay per batch.
  mem = _load(data_dir, manual, "ogm_ge:num_frames=2,image_size=16")
  mem.train.load_into_memory()
  kw = dict(seed=0, num_epochs=1, shard_index=0, shard_count=1)
  for x, y in zip(mmbal.data.train_iterator(mem.train, 4, **kw),
                  mmbal.data.train_iterator(data.train, 4, **kw)):
    np.testing.assert_array_equal(x["visual"], y["visual"])


def test_fbank_inputs(fbank, data_dir, manual):
  del fbank
  data = _load(data_dir, manual, "fbank:image_size=16")
  assert data.spec.modalities == {"audio": (1024, 128), "visual": (2, 16, 16, 3)}
  batch = next(mmbal.data.train_iterator(data.train, 2, seed=0, shard_index=0, shard_count=1))
  assert batch["audio"].shape == (2, 1024, 128) and batch["visual"].shape == (2, 2, 16, 16, 3)


def test_frame_sampling_and_crops():
  np.testing.assert_array_equal(frames.frame_indices(10, 2, None), [2, 7])
  np.testing.assert_array_equal(frames.frame_indices(1, 3, None), [0, 0, 0])
  rng = np.random.default_rng(0)
  for _ in range(50):
    idx = frames.frame_indices(9, 3, rng)
    assert 0 <= idx[0] < 3 <= idx[1] < 6 <= idx[2] < 9
    left, top, right, bottom = frames.random_resized_crop_box(64, 48, rng)
    assert 0 <= left < right <= 64 and 0 <= top < bottom <= 48


# ----------------------------------------------------------------------------- configs


@pytest.mark.parametrize("name", ["joint", "ogm_ge"])
def test_configs(name, ogm_ge):
  c = train_config.load_config(f"{ROOT}/configs/crema_d/{name}.py")
  train_config.check_config(c)
  assert c.data.name == "crema_d" and tuple(c.data.modalities) == ("audio", "visual")
  builder = tfds.builder(TFDS_NAME, config=c.data.builder_config,
                         data_dir=ogm_ge.data_dir_root)
  shapes = frames.input_decoder(builder).shapes
  assert all(len(s) == 3 for s in shapes.values())  # Images for the CNN encoders.


def test_ogm_ge_config_trains_end_to_end(tmp_path, manual):
  from mmbal.train.loop import train_and_evaluate  # pylint: disable=import-outside-toplevel
  data_dir = tmp_path / "tfds"
  (data_dir / "downloads").mkdir(parents=True)
  os.symlink(manual, data_dir / "downloads" / "manual")  # TFDS's default manual dir.
  c = train_config.load_config(f"{ROOT}/configs/crema_d/ogm_ge.py")
  train_config.apply_overrides(c, [
      f"data.data_dir={data_dir}", "train.batch_size=2", "train.num_epochs=1",
      "data.builder_config=ogm_ge:visual_layout=channels,audio_layout=image,image_size=16",
      "eval.batch_size=2", "mesh.data=2", "log.progress=False",
      "model.image_encoder=cnn"])   # ResNet-18 itself: tests/test_resnet.py
  train_and_evaluate(c, tmp_path / "run")
  results = json.loads((tmp_path / "run" / "results.json").read_text())
  assert set(results["test"]["unimodal"]) == {"audio", "visual"}
  assert 0.0 <= results["test"]["fused"]["accuracy"] <= 1.0
