"""TFDS builder for UCF-101 as RGB frames + optical flow (BalanceBenchmark's two modalities).

Registered with TFDS as `mmbal_ucf101` (TFDS's catalog has a video `ucf101` of its own);
`mmbal.data.load("ucf101", ...)` resolves to it.

UCF-101 (Soomro, Zamir & Shah, arXiv:1212.0402, 2012;
https://www.crcv.ucf.edu/data/UCF101.php): 13,320 YouTube clips of 101 actions, cut from
longer videos into groups (`g01` ... `g25`); the three official train/test splits keep
groups apart. BalanceBenchmark uses it as an
imbalanced pair of modalities: RGB frames and TV-L1 optical flow. Nothing is downloaded:
the builder reads the files users already have from `<manual_dir>/ucf101/` (or
`<manual_dir>` itself when it holds `ucfTrainTestlist/`):

    ucfTrainTestlist/classInd.txt          `1 ApplyEyeMakeup` ... (UCF101TrainTestSplits-
    ucfTrainTestlist/trainlist0{1,2,3}.txt   RecognitionTask.zip): `Class/v_Class_gNN_cMM.avi 1`
    ucfTrainTestlist/testlist0{1,2,3}.txt    and `Class/v_Class_gNN_cMM.avi`
    rgb/{video}/*.jpg                      RGB frames (BalanceBenchmark: 1 fps,
                                           frame_00001.jpg ...; any names, ordered by the
                                           last number in the name)
    flow/u/{video}/*.jpg, flow/v/{video}/*.jpg   the flow's x and y components as grey JPEGs
                                           (feichtenhofer/twostreamfusion: frame000001.jpg ...)

`video` is the list entry's file name without `.avi` (`v_ApplyEyeMakeup_g08_c01`); the
label comes from its folder (`HandstandPushups/v_HandStandPushups_g01_c01.avi`: the folder
and file names differ in case upstream). The lists may have a BOM, CRLF line ends and blank
lines; a train list's class index must agree with classInd.txt for the folder.

Configs: `split1` (default), `split2`, `split3`: the official splits. Labels: classInd.txt's
order (its index minus 1), set as the ClassLabel's names when the data set is built;
BalanceBenchmark numbers the classes by `sorted(names)` instead:
`info.metadata["sorted_order"]` and `convert_labels(labels, names, order)` map between them.

Stored features: `id` (video), `label`, `group`, `frames` (every RGB frame's JPEG bytes)
with `num_frames`, `flow_u` / `flow_v` (every flow frame's JPEG bytes; a video whose u and v
counts differ is skipped) with `num_flow_frames`. Model inputs (`input_decoder`):
`visual` `[K, S, S, 3]` (ImageNet-normalised, as BalanceBenchmark) and `flow` `[K, S, S, 2]`
(u and v in [0, 1], not normalised, as BalanceBenchmark's `a_norm=False`); with
`visual_layout=channels` `[S, S, 3K]` and `[S, S, 2K]`. K = `num_frames` (default 3, as
BalanceBenchmark; `flow_num_frames` sets the flow's K separately), S = `image_size` (224).
Frames are sampled one per segment (random in training, centres in evaluation); training
augmentation is a random resized crop and horizontal flip, the same crop and flip for a
flow frame's u and v, and a flip turns u into 1 - u (the x-displacement changes sign).
Pipeline options follow a colon: `config="split1:num_frames=3,image_size=112,
visual_layout=channels,augment=true,flow_num_frames=3"`.

Splits: `test` = testlist0N.txt. `validation`: carved from trainlist0N.txt by whole groups
(clips of one group come from one long video, so a clip-level carve would leak): the train
videos of the `max(1, round(G / 9))` lowest-numbered of the list's G groups (split 1: groups
8 and 9 of 8-25). `train` = the rest. BalanceBenchmark selects on test.

Clips with missing or malformed files (no RGB, u or v directory, no frames, a truncated
JPEG) are skipped, counted per split and reason in `info.metadata["skipped"]` (first ones in
`["skipped_examples"]`); more than `max_skipped_fraction` (builder argument, default 0.05)
of a split skipped is an error naming the reasons.
"""

from __future__ import annotations

import dataclasses
import io
import os
import re
from typing import Any, Sequence

import numpy as np
import tensorflow_datasets as tfds
from PIL import Image

from mmbal.data import frames
from mmbal.data import manual
from mmbal.data.manual import ManualDirError

LIST_DIR = "ucfTrainTestlist"
PIPELINE_KEYS = ("num_frames", "image_size", "visual_layout", "augment", "flow_num_frames")
VALIDATION_DIVISOR = 9
_VIDEO = re.compile(r"^v_[A-Za-z0-9]+_g(\d+)_c(\d+)$")

_CITATION = """\
@article{soomro2012ucf101,
  author = {Soomro, Khurram and Zamir, Amir Roshan and Shah, Mubarak},
  title = {{UCF101}: A Dataset of 101 Human Actions Classes From Videos in The Wild},
  journal = {arXiv preprint arXiv:1212.0402}, year = {2012}
}"""


class Ucf101Config(tfds.core.BuilderConfig):
  """An official split (1, 2 or 3) with `num_classes` classes in classInd.txt."""

  def __init__(self, *, name: str, split: int, num_classes: int = 101, description: str = ""):
    if split not in (1, 2, 3):
      raise ValueError(f"split: expected 1, 2 or 3, got {split!r}")
    super().__init__(name=name, description=description or f"Official split {split}.")
    self.split = split
    self.num_classes = num_classes


PRESETS = tuple(Ucf101Config(name=f"split{k}", split=k) for k in (1, 2, 3))


# ----------------------------------------------------------------------------- lists


def read_class_index(path: str) -> list[str]:
  """classInd.txt -> class names in index order (`1 ApplyEyeMakeup` is index 0)."""
  entries = {}
  for lineno, fields in manual.read_rows(path, None, what="'INDEX ClassName' rows"):
    if len(fields) != 2 or not fields[0].isdigit():
      raise ManualDirError(f"{path}:{lineno}: expected 'INDEX ClassName', got {' '.join(fields)!r}")
    entries[int(fields[0])] = fields[1]
  if sorted(entries) != list(range(1, len(entries) + 1)) or not entries:
    raise ManualDirError(f"{path}: expected indices 1..N, each once, got {sorted(entries)[:5]}...")
  names = [entries[i] for i in range(1, len(entries) + 1)]
  if len(set(names)) != len(names):
    raise ManualDirError(f"{path}: expected distinct class names")
  return names


def read_list(path: str, names: Sequence[str]) -> list[dict[str, Any]]:
  """Rows `{video, label, group, line}` of a train or test list, in file order.

  Raises:
    ManualDirError: naming the file and line, for an entry that is not
      `Class/v_Class_gNN_cMM.avi [index]` with a class of classInd.txt and, when given, its
      index, or a repeated video.
  """
  index = {n: i for i, n in enumerate(names)}
  rows, seen = [], {}
  for lineno, fields in manual.read_rows(path, None, what="'Class/v_Class_gNN_cMM.avi' rows"):
    where = f"{path}:{lineno}"
    folder, slash, file = fields[0].partition("/")
    video = os.path.splitext(file)[0]
    match = _VIDEO.match(video)
    if len(fields) > 2 or not slash or not match:
      raise ManualDirError(f"{where}: expected 'Class/v_Class_gNN_cMM.avi [index]', got "
                           f"{' '.join(fields)!r}")
    if folder not in index:
      raise ManualDirError(f"{where}: class folder {folder!r} is not in classInd.txt")
    if len(fields) == 2 and fields[1] != str(index[folder] + 1):
      raise ManualDirError(f"{where}: index {fields[1]} disagrees with classInd.txt's "
                           f"{index[folder] + 1} for {folder}")
    if video in seen:
      raise ManualDirError(f"{where}: video {video} repeats line {seen[video]}")
    seen[video] = lineno
    rows.append(dict(video=video, label=index[folder], group=int(match.group(1)), line=lineno))
  if not rows:
    raise ManualDirError(f"{path}: expected 'Class/v_Class_gNN_cMM.avi' rows, found none")
  return rows


def assign_splits(list_dir: str, split: int, names: Sequence[str],
                  ) -> tuple[dict[str, list[dict[str, Any]]], dict[str, Any]]:
  """train / validation / test rows of an official split, and how validation was made."""
  train = read_list(os.path.join(list_dir, f"trainlist0{split}.txt"), names)
  test = read_list(os.path.join(list_dir, f"testlist0{split}.txt"), names)
  test_videos = {r["video"] for r in test}
  both = [r["video"] for r in train if r["video"] in test_videos]
  if both:
    raise ManualDirError(f"{list_dir}: trainlist0{split}.txt and testlist0{split}.txt share "
                         f"{len(both)} videos (e.g. {both[:3]}); expected disjoint splits")
  groups = sorted({r["group"] for r in train})
  held = groups[:max(1, int(round(len(groups) / VALIDATION_DIVISOR)))]
  if len(held) == len(groups):
    raise ManualDirError(f"trainlist0{split}.txt: {len(groups)} group(s) are too few to carve a "
                         f"validation split by groups")
  rows = dict(train=[r for r in train if r["group"] not in held],
              validation=[r for r in train if r["group"] in held], test=test)
  info = dict(source="carved", groups=held,
              rule=f"train videos of the max(1, round(G / {VALIDATION_DIVISOR})) "
                   f"lowest-numbered of the G={len(groups)} train groups")
  return rows, info


def convert_labels(labels, names: Sequence[str], order: Sequence[str]) -> np.ndarray:
  """Labels indexing `names` (classInd order) -> indices into `order` (e.g. `sorted(names)`)."""
  if sorted(order) != sorted(names) or len(order) != len(names):
    raise ValueError("order: expected the same class names as the data set's, in some order")
  index = {n: i for i, n in enumerate(order)}
  return np.array([index[n] for n in names])[np.asarray(labels)]


# ----------------------------------------------------------------------------- flow input


@dataclasses.dataclass(frozen=True)
class FlowInput:
  """Stored u / v grey JPEG sequences -> K sampled flow frames `[K, S, S, 2]` (or `[S, S, 2K]`).

  Frames are sampled as `frames.FramesInput` does; in training with `augment`, each u / v
  pair gets one random resized crop and one horizontal flip, and a flip maps u to 1 - u.
  Values in [0, 1] (not normalised).
  """

  options: frames.FrameOptions = frames.FrameOptions()
  u_feature: str = "flow_u"
  v_feature: str = "flow_v"

  @property
  def random(self) -> bool:
    return True

  @property
  def shape(self) -> tuple[int, ...]:
    s, k = self.options.image_size, self.options.num_frames
    return (k, s, s, 2) if self.options.layout == "frames" else (s, s, 2 * k)

  def _decode(self, data: bytes, box, flip: bool) -> np.ndarray:
    size = (self.options.image_size, self.options.image_size)
    with Image.open(io.BytesIO(data)) as img:
      img = img.convert("L").resize(size, Image.Resampling.BILINEAR, box=box)
      if flip:
        img = img.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
      return np.asarray(img, dtype=np.float32) / 255.0

  def __call__(self, record, rng: np.random.Generator | None) -> np.ndarray:
    us, vs = record[self.u_feature], record[self.v_feature]
    idx = frames.frame_indices(min(len(us), len(vs)), self.options.num_frames, rng)
    out = []
    for i in idx:
      box, flip = None, False
      if rng is not None and self.options.augment:
        with Image.open(io.BytesIO(us[i])) as img:
          width, height = img.size
        box = frames.random_resized_crop_box(width, height, rng, self.options.crop_scale)
        flip = bool(rng.random() < 0.5)
      u, v = self._decode(us[i], box, flip), self._decode(vs[i], box, flip)
      out.append(np.stack([1.0 - u if flip else u, v], axis=-1))
    x = np.stack(out)
    if self.options.layout == "channels":
      x = x.transpose(1, 2, 0, 3).reshape(self.shape)
    return x


# ----------------------------------------------------------------------------- builder


class Ucf101(manual.ManualBuilder):
  """UCF-101 (RGB + flow) from a manual directory; see the module docstring.

  Registered with TFDS as `mmbal_ucf101`; `mmbal.data.load("ucf101", ...)` resolves to it.
  """

  name = "mmbal_ucf101"
  VERSION = tfds.core.Version("1.0.0")
  RELEASE_NOTES = {"1.0.0": "Official splits 1-3, RGB and flow frames, group-wise validation."}
  BUILDER_CONFIGS = list(PRESETS)
  MANUAL_NAME = "ucf101"
  MANUAL_MARKER = LIST_DIR
  MANUAL_EXAMPLE = "ucf101/ucfTrainTestlist/classInd.txt"
  PIPELINE_KEYS = PIPELINE_KEYS
  MANUAL_DOWNLOAD_INSTRUCTIONS = """\
  Put the UCF-101 files in <manual_dir>/ucf101/ (manual_dir: <data_dir>/downloads/manual, or
  the builder argument manual_dir=): ucfTrainTestlist/ (classInd.txt, trainlist0N.txt,
  testlist0N.txt from UCF101TrainTestSplits-RecognitionTask.zip), rgb/<video>/*.jpg and
  flow/u/<video>/*.jpg, flow/v/<video>/*.jpg (video = v_Class_gNN_cMM)."""

  def __init__(self, *, config=None, manual_dir=None, max_skipped_fraction: float = 0.05,
               **kwargs):
    super().__init__(config=config, manual_dir=manual_dir,
                     max_skipped_fraction=max_skipped_fraction, **kwargs)
    options = self.pipeline_options
    self.frame_options = manual.frame_options(options, 3)
    flow_k = manual.as_int("flow_num_frames",
                           options.get("flow_num_frames", str(self.frame_options.num_frames)))
    self.flow_options = dataclasses.replace(self.frame_options, num_frames=flow_k,
                                            normalize=False)

  def input_decoder(self) -> frames.Decoder:
    """Stored records -> `{"visual": [K, S, S, 3] (or [S, S, 3K]), "flow": [K, S, S, 2]
    (or [S, S, 2K])}`."""
    return frames.Decoder({"visual": frames.FramesInput("frames", self.frame_options),
                           "flow": FlowInput(self.flow_options)})

  def _info(self) -> tfds.core.DatasetInfo:
    jpegs = lambda: tfds.features.Sequence(tfds.features.Tensor(shape=(), dtype=np.object_))
    return tfds.core.DatasetInfo(
        builder=self,
        description=__doc__,
        features=tfds.features.FeaturesDict({
            "id": tfds.features.Text(),
            "label": tfds.features.ClassLabel(num_classes=self.builder_config.num_classes),
            "group": tfds.features.Tensor(shape=(), dtype=np.int32),
            "frames": jpegs(),
            "num_frames": tfds.features.Tensor(shape=(), dtype=np.int32),
            "flow_u": jpegs(),
            "flow_v": jpegs(),
            "num_flow_frames": tfds.features.Tensor(shape=(), dtype=np.int32),
        }),
        homepage="https://www.crcv.ucf.edu/data/UCF101.php",
        citation=_CITATION,
        license="No explicit licence (YouTube-derived; research use)",
        metadata=tfds.core.MetadataDict(modalities=["visual", "flow"],
                                        split=self.builder_config.split),
    )

  # ---------------------------------------------------------------- manual directory

  def _check_layout(self, root: str):
    c = self.builder_config
    problems = []
    list_dir = os.path.join(root, LIST_DIR)
    for name in ("classInd.txt", f"trainlist0{c.split}.txt", f"testlist0{c.split}.txt"):
      path = os.path.join(list_dir, name)
      if not os.path.isfile(path):
        problems.append(f"{path}: missing; expected the official {name} "
                        f"(UCF101TrainTestSplits-RecognitionTask.zip)")
    for sub, what in (("rgb", "one directory of RGB .jpg frames per video"),
                      (os.path.join("flow", "u"), "one directory of flow-x .jpg frames per video"),
                      (os.path.join("flow", "v"), "one directory of flow-y .jpg frames per video")):
      path = os.path.join(root, sub)
      if not os.path.isdir(path) or not os.listdir(path):
        problems.append(f"{path}: missing or empty; expected {what}")
    if problems:
      raise ManualDirError("UCF-101 manual directory " + root + " is incomplete:\n  " +
                           "\n  ".join(problems))

  def _video_files(self, root: str, video: str) -> tuple[Any, str]:
    found = []
    for sub in ("rgb", os.path.join("flow", "u"), os.path.join("flow", "v")):
      files, problem = manual.check_frames(os.path.join(root, sub, video))
      if files is None:
        return None, problem
      found.append(files)
    if len(found[1]) != len(found[2]):
      return None, (f"malformed flow: {root}/flow/u/{video} has {len(found[1])} frames, "
                    f"{root}/flow/v/{video} has {len(found[2])}")
    return found, ""

  def _split_generators(self, dl_manager):
    c = self.builder_config
    root = self._root(dl_manager)
    self._check_layout(root)
    list_dir = os.path.join(root, LIST_DIR)
    class_path = os.path.join(list_dir, "classInd.txt")
    names = read_class_index(class_path)
    if len(names) != c.num_classes:
      raise ManualDirError(f"{class_path}: {len(names)} classes, config {c.name!r} expects "
                           f"{c.num_classes}")
    rows, validation = assign_splits(list_dir, c.split, names)
    self.info.features["label"].names = names
    self._start_metadata(root)
    self.info.metadata.update(validation=validation, sorted_order=sorted(names),
                              classind_is_sorted=names == sorted(names))
    items = {}
    for split, split_rows in rows.items():
      kept, skips = [], manual.Skips()
      for r in split_rows:
        found, problem = self._video_files(root, r["video"])
        if found is None:
          skips.add(r["video"], problem)
        else:
          kept.append((r, *found))
      self._record_skips(split, skips, len(split_rows))
      items[split] = kept
    return {split: self._generate_examples(split, kept, len(rows[split]))
            for split, kept in items.items()}

  def _generate_examples(self, split, items, total):
    skips = manual.Skips()
    for r, rgb, us, vs in items:
      encoded = []
      for files in (rgb, us, vs):
        data, problem = manual.read_frames(files)
        if data is None:
          skips.add(r["video"], problem)
          break
        encoded.append(data)
      else:
        yield r["video"], dict(id=r["video"], label=r["label"], group=r["group"],
                               frames=encoded[0], num_frames=len(encoded[0]), flow_u=encoded[1],
                               flow_v=encoded[2], num_flow_frames=len(encoded[1]))
    self._record_skips(split, skips, total)
