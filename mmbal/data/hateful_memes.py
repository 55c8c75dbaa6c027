"""TFDS builder for Hateful Memes (image + text, binary), from a manual directory.

Hateful Memes (Kiela et al., NeurIPS 2020; https://hatefulmemeschallenge.com): memes
whose text and image are each harmless but hateful together. Access requires accepting
the data set's licence (research, non-commercial; images licensed from Getty Images);
nothing is downloaded. The builder reads the upstream jsonl files and the user's
precomputed embeddings from `<manual_dir>/hateful_memes/` (or `<manual_dir>` itself when
it holds `train.jsonl`):

    train.jsonl                       8,500 rows {"id": 42953, "img": "img/42953.png",
                                      "label": 0, "text": "..."}
    dev_seen.jsonl                    validation (500); `dev.jsonl` of the phase-1 release
                                      (the same rows) is used when dev_seen.jsonl is absent
    test_seen.jsonl                   test (1,000), labelled (phase-2 release)
    dev_unseen.jsonl, test_unseen.jsonl   optional: stored as extra splits of those names
                                      when every row has a label
    img/                              not read (the embeddings stand for the images)
    embeddings/ids.txt, image.npy, text.npy   (or embeddings/embeddings.npz): the
                                      precomputed embeddings (`mmbal.data._image_text`);
                                      ids are the jsonl `id`s (`1235` and `01235` both match)

The jsonl files may have a UTF-8 BOM, CRLF line ends and blank lines; `id` may be an
integer or a string of digits; `label` must be 0 (not hateful) or 1 (hateful).

Splits: `train` = train.jsonl, `validation` = dev_seen.jsonl, `test` = test_seen.jsonl
(the official seen splits; selection on dev_seen, never on test). A row of train,
validation or test without a label is an error (early copies ship a label-less
`test.jsonl`; the labelled `test_seen.jsonl` came with the phase-2 release); ids shared
by two of these splits are an error; a repeated id within a file is skipped and counted
(`duplicate id`). The unseen files are optional extra splits; one with unlabelled rows is
left out and the reason is in `info.metadata["left_out"]`.

Features: `id` (the jsonl id as a decimal string), `label` (`not_hateful`, `hateful`),
`image`, `text` (float32 embeddings), `raw_text` (the meme's text), `image_file` (`img`).
The usual metric is AUROC (with accuracy).
"""

from __future__ import annotations

import json
import os

import tensorflow_datasets as tfds

from mmbal.data import _image_text
from mmbal.data import manual
from mmbal.data._image_text import Example
from mmbal.data.manual import ManualDirError

CLASS_NAMES = ("not_hateful", "hateful")
SPLIT_FILES = {"train": ("train.jsonl",), "validation": ("dev_seen.jsonl", "dev.jsonl"),
               "test": ("test_seen.jsonl",)}
EXTRA_SPLIT_FILES = {"dev_unseen": "dev_unseen.jsonl", "test_unseen": "test_unseen.jsonl"}

_CITATION = """\
@inproceedings{kiela2020hateful,
  author = {Kiela, Douwe and Firooz, Hamed and Mohan, Aravind and Goswami, Vedanuj and
            Singh, Amanpreet and Ringshia, Pratik and Testuggine, Davide},
  title = {The Hateful Memes Challenge: Detecting Hate Speech in Multimodal Memes},
  booktitle = {Advances in Neural Information Processing Systems},
  year = {2020}
}"""


def read_jsonl(path: str) -> list[tuple[int, dict]]:
  """The rows of a Hateful Memes jsonl file as `(line number, row)`, each checked.

  A row is `{"id", "text", ["img"], ["label"]}`; the returned row has `id` (int), `text`,
  `img` (default `img/{id:05d}.png`) and `label` (0, 1 or None when absent).

  Raises:
    ManualDirError: naming the file and line, for a line that is not such a JSON object.
  """
  rows = []
  for lineno, line in manual.read_lines(path, "one JSON object per line"):
    where = f"{path}:{lineno}"
    try:
      row = json.loads(line)
    except json.JSONDecodeError as e:
      raise ManualDirError(f"{where}: expected a JSON object per line ({e})") from None
    if not isinstance(row, dict):
      raise ManualDirError(f"{where}: expected a JSON object per line, got {type(row).__name__}")
    i = row.get("id")
    if isinstance(i, str) and i.strip().isascii() and i.strip().isdigit():
      i = int(i)
    if not isinstance(i, int) or isinstance(i, bool) or i < 0:
      raise ManualDirError(f"{where}: expected 'id' a non-negative integer, got {row.get('id')!r}")
    text = row.get("text")
    if not isinstance(text, str):
      raise ManualDirError(f"{where}: expected 'text' a string, got {text!r}")
    label = row.get("label")
    if label is not None and (isinstance(label, bool) or label not in (0, 1)):
      raise ManualDirError(f"{where}: expected 'label' 0 (not hateful) or 1 (hateful), "
                           f"got {label!r}")
    img = row.get("img", f"img/{i:05d}.png")
    if not isinstance(img, str):
      raise ManualDirError(f"{where}: expected 'img' a path string, got {img!r}")
    rows.append((lineno, dict(id=i, text=text, img=img, label=label)))
  return rows


class HatefulMemes(_image_text.ImageTextBuilder):
  """Hateful Memes from a manual directory; see the module docstring."""

  name = "hateful_memes"
  VERSION = tfds.core.Version("1.0.0")
  RELEASE_NOTES = {"1.0.0": "Seen splits (dev_seen validation), precomputed embeddings."}
  MANUAL_NAME = "hateful_memes"
  MANUAL_MARKER = "train.jsonl"
  MANUAL_EXAMPLE = "hateful_memes/train.jsonl"
  MANUAL_DOWNLOAD_INSTRUCTIONS = """\
  Put the Hateful Memes files in <manual_dir>/hateful_memes/ (manual_dir:
  <data_dir>/downloads/manual, or the builder argument manual_dir=): train.jsonl,
  dev_seen.jsonl, test_seen.jsonl (optionally dev_unseen.jsonl, test_unseen.jsonl), and
  your precomputed embeddings embeddings/ids.txt + image.npy + text.npy (or
  embeddings/embeddings.npz with arrays ids, image, text), ids = the jsonl ids."""
  CLASS_NAMES = CLASS_NAMES
  HOMEPAGE = "https://hatefulmemeschallenge.com"
  CITATION = _CITATION
  LICENSE = "Hateful Memes dataset licence (research, non-commercial)"

  def _split_file(self, root: str, split: str) -> str | None:
    for name in SPLIT_FILES[split]:
      if os.path.isfile(os.path.join(root, name)):
        return os.path.join(root, name)
    return None

  def _layout_problems(self, root: str) -> list[str]:
    problems = []
    for split, names in SPLIT_FILES.items():
      if self._split_file(root, split) is None:
        hint = (" (labelled; the phase-1 test.jsonl has no labels)" if split == "test" else "")
        problems.append(f"{os.path.join(root, names[0])}: missing; expected the {split} rows "
                        f"as jsonl{hint}")
    return problems

  def _read_examples(self, root: str):
    examples, ids_of = {}, {}
    files = {split: self._split_file(root, split) for split in SPLIT_FILES}
    for split, path in files.items():
      examples[split], ids_of[split] = self._examples(split, path, require_labels=True)
    names = list(files)
    for a in range(len(names)):
      for b in range(a + 1, len(names)):
        shared = sorted(ids_of[names[a]] & ids_of[names[b]])
        if shared:
          raise ManualDirError(f"{files[names[a]]} and {files[names[b]]}: {len(shared)} ids in "
                               f"both (e.g. {shared[:3]}); expected disjoint splits")
    self.info.metadata["left_out"] = {}
    for split, name in EXTRA_SPLIT_FILES.items():
      path = os.path.join(root, name)
      if os.path.isfile(path):
        rows, _ = self._examples(split, path, require_labels=False)
        if rows is None:
          self.info.metadata["left_out"][split] = f"{path}: rows without a label"
        else:
          examples[split] = rows
    validation = dict(source=os.path.basename(files["validation"]),
                      rule="the official dev_seen split")
    return examples, validation

  def _examples(self, split, path, *, require_labels):
    """(examples, ids) of a file; None examples when a label is missing and not required."""
    out, seen = [], {}
    for lineno, row in read_jsonl(path):
      if row["label"] is None:
        if require_labels:
          raise ManualDirError(f"{path}:{lineno}: no 'label'; the {split} split needs labels"
                               + (" (test_seen.jsonl of the phase-2 release has them)"
                                  if split == "test" else ""))
        return None, set()
      key = str(row["id"])
      if key in seen:
        self._skip(split, key, f"duplicate id: {path}:{lineno} repeats line {seen[key]}")
        continue
      seen[key] = lineno
      out.append(Example(id=key, keys=(key,), label=row["label"], raw_text=row["text"],
                         image_file=row["img"]))
    return out, set(seen)
