"""TFDS builder for UPMC Food-101 (image + recipe title, 101 classes), from a manual directory.

Registered with TFDS as `mmbal_upmc_food101` (TFDS's catalog has the image-only ETH
`food101`); `mmbal.data.load("upmc_food101", ...)` (or `"food101"`) resolves to it.

UPMC Food-101 (Wang et al., "Recipe recognition with large multimodal food dataset",
ICME workshops 2015): about 90,000 web pages of recipes for the 101 ETH Food-101 classes,
each an image and the page's title. Web-scraped, no licence stated: research use.
Nothing is downloaded; the builder reads the title CSVs and the user's precomputed
embeddings from `<manual_dir>/upmc_food101/` (or `<manual_dir>` itself when it holds
`texts/train_titles.csv`):

    texts/train_titles.csv, texts/test_titles.csv   rows `file name,title,class`, e.g.
                                      apple_pie_0.jpg,"Apple pie recipe, easy",apple_pie
    images/{train,test}/{class}/{file name}   not read (the embeddings stand for them)
    embeddings/ids.txt, image.npy, text.npy   (or embeddings/embeddings.npz): the
                                      precomputed embeddings (`mmbal.data._image_text`)

Ids: `{split}/{file name}` (`train/apple_pie_0.jpg`, `test/apple_pie_3.jpg`); in the
embeddings the bare file name (`apple_pie_0.jpg`) also matches when it is in only one
of the two CSVs. The CSVs may have a UTF-8 BOM, CRLF line ends, blank lines and a
header line (the original files have none; BalanceBenchmark's copy has
`Image_path,text,label`); titles containing commas are quoted, as the csv module writes
them. A row with another number of fields or an unknown class is an error naming the file
and line; a file name repeated within a CSV is skipped and counted (`duplicate id`).

Labels: the 101 class names in Python-sorted order (`sorted()`, as BalanceBenchmark and
CGGM: `cheese_plate` (16) before `cheesecake` (17)); `convert_labels` maps to and from
the ETH / Hugging Face order (`"eth"`, the two swapped).

Splits: `test` = test_titles.csv. `validation` = a fixed, mmbal-defined carve from
train_titles.csv (UPMC has no validation split; MMBT's 5,000-row dev split is not seeded):
`mmbal.data.stratified_split` of the train rows (in file order, repeated file names
dropped, labels in the sorted order) with min(5,000, round(n / 10)) rows and seed 0;
`train` = the rest. Never the test set.

Features: `id`, `label`, `image`, `text` (float32 embeddings), `raw_text` (the title),
`image_file` (`images/{split}/{class}/{file name}`).
"""

from __future__ import annotations

import csv
import io
import os

import numpy as np
import tensorflow_datasets as tfds

from mmbal.data import _image_text
from mmbal.data import _split
from mmbal.data._image_text import Example
from mmbal.data import manual
from mmbal.data.manual import ManualDirError

CLASSES_SORTED = tuple("""
    apple_pie baby_back_ribs baklava beef_carpaccio beef_tartare beet_salad beignets
    bibimbap bread_pudding breakfast_burrito bruschetta caesar_salad cannoli
    caprese_salad carrot_cake ceviche cheese_plate cheesecake chicken_curry
    chicken_quesadilla chicken_wings chocolate_cake chocolate_mousse churros
    clam_chowder club_sandwich crab_cakes creme_brulee croque_madame cup_cakes
    deviled_eggs donuts dumplings edamame eggs_benedict escargots falafel filet_mignon
    fish_and_chips foie_gras french_fries french_onion_soup french_toast fried_calamari
    fried_rice frozen_yogurt garlic_bread gnocchi greek_salad grilled_cheese_sandwich
    grilled_salmon guacamole gyoza hamburger hot_and_sour_soup hot_dog huevos_rancheros
    hummus ice_cream lasagna lobster_bisque lobster_roll_sandwich macaroni_and_cheese
    macarons miso_soup mussels nachos omelette onion_rings oysters pad_thai paella
    pancakes panna_cotta peking_duck pho pizza pork_chop poutine prime_rib
    pulled_pork_sandwich ramen ravioli red_velvet_cake risotto samosa sashimi scallops
    seaweed_salad shrimp_and_grits spaghetti_bolognese spaghetti_carbonara spring_rolls
    steak strawberry_shortcake sushi tacos takoyaki tiramisu tuna_tartare waffles
    """.split())
# ETH Food-101 (and Hugging Face `food101`) order: `cheesecake` before `cheese_plate`.
CLASSES_ETH = CLASSES_SORTED[:16] + (CLASSES_SORTED[17], CLASSES_SORTED[16]) + CLASSES_SORTED[18:]
LABEL_ORDERS = {"sorted": CLASSES_SORTED, "eth": CLASSES_ETH}
SPLIT_FILES = {"train": "texts/train_titles.csv", "test": "texts/test_titles.csv"}
VALIDATION_SEED = 0
VALIDATION_MAX = 5000
VALIDATION_DIVISOR = 10
_IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")

_CITATION = """\
@inproceedings{wang2015recipe,
  author = {Wang, Xin and Kumar, Devinder and Thome, Nicolas and Cord, Matthieu and
            Precioso, Frederic},
  title = {Recipe recognition with large multimodal food dataset},
  booktitle = {IEEE International Conference on Multimedia \\& Expo Workshops (ICMEW)},
  year = {2015}
}"""


def convert_labels(labels, from_order: str, to_order: str) -> np.ndarray:
  """Maps integer labels between the class orders `"sorted"` (mmbal's) and `"eth"`."""
  return manual.convert_labels(labels, from_order, to_order, LABEL_ORDERS)


def read_titles_csv(path: str) -> list[tuple[int, str, str, str]]:
  """Rows `(line number, file name, title, class)` of a UPMC titles CSV, in file order.

  Raises:
    ManualDirError: naming the file and line, for a row that is not
      `file name,title,class` with one of the 101 classes.
  """
  try:
    with open(path, "rb") as f:
      text = f.read().decode("utf-8-sig")
  except FileNotFoundError:
    raise ManualDirError(f"{path}: missing; expected rows 'file name,title,class'") from None
  except UnicodeDecodeError as e:
    raise ManualDirError(f"{path}: expected a UTF-8 CSV file ({e})") from None
  reader = csv.reader(io.StringIO(text, newline=""))
  rows, first = [], True
  try:
    for fields in reader:
      lineno = reader.line_num
      if not any(f.strip() for f in fields):
        continue
      fields = [f.strip() for f in fields]
      if first and len(fields) == 3 and fields[2] not in CLASSES_SORTED \
          and not fields[0].lower().endswith(_IMAGE_SUFFIXES):
        first = False
        continue  # A header line such as BalanceBenchmark's `Image_path,text,label`.
      first = False
      where = f"{path}:{lineno}"
      if len(fields) != 3:
        raise ManualDirError(f"{where}: expected 3 fields 'file name,title,class' (titles "
                             f"with commas quoted), got {len(fields)}: {fields!r}")
      name, title, label = fields
      if not name:
        raise ManualDirError(f"{where}: empty file name")
      if label not in CLASSES_SORTED:
        raise ManualDirError(f"{where}: expected one of the 101 Food-101 classes (e.g. "
                             f"apple_pie), got {label!r}")
      rows.append((lineno, name, title, label))
  except csv.Error as e:
    raise ManualDirError(f"{path}:{reader.line_num}: malformed CSV ({e})") from None
  if not rows:
    raise ManualDirError(f"{path}: expected rows 'file name,title,class', found none")
  return rows


class UpmcFood101(_image_text.ImageTextBuilder):
  """UPMC Food-101 from a manual directory; see the module docstring.

  Registered with TFDS as `mmbal_upmc_food101` (TFDS's catalog has an image-only
  `food101`); `mmbal.data.load("upmc_food101", ...)` resolves to it.
  """

  name = "mmbal_upmc_food101"
  VERSION = tfds.core.Version("1.0.0")
  RELEASE_NOTES = {"1.0.0": "Titles, precomputed embeddings, validation carved from train."}
  MANUAL_NAME = "upmc_food101"
  MANUAL_MARKER = SPLIT_FILES["train"]
  MANUAL_EXAMPLE = "upmc_food101/texts/train_titles.csv"
  MANUAL_DOWNLOAD_INSTRUCTIONS = """\
  Put the UPMC Food-101 files in <manual_dir>/upmc_food101/ (manual_dir:
  <data_dir>/downloads/manual, or the builder argument manual_dir=):
  texts/train_titles.csv and texts/test_titles.csv, and your precomputed embeddings
  embeddings/ids.txt + image.npy + text.npy (or embeddings/embeddings.npz with arrays
  ids, image, text), ids like train/apple_pie_0.jpg."""
  CLASS_NAMES = CLASSES_SORTED
  HOMEPAGE = "https://visiir.isir.upmc.fr/explore"
  CITATION = _CITATION
  LICENSE = "No licence stated (web-scraped; research use)"

  def _layout_problems(self, root: str) -> list[str]:
    return [f"{os.path.join(root, f)}: missing; expected UPMC's {os.path.basename(f)} (rows "
            f"'file name,title,class')" for f in SPLIT_FILES.values()
            if not os.path.isfile(os.path.join(root, f))]

  def _read_examples(self, root: str):
    rows = {}
    for split, name in SPLIT_FILES.items():
      path = os.path.join(root, name)
      seen, kept = {}, []
      for lineno, file_name, title, label in read_titles_csv(path):
        if file_name in seen:
          self._skip(split, f"{split}/{file_name}",
                     f"duplicate id: {path}:{lineno} repeats line {seen[file_name]}")
          continue
        seen[file_name] = lineno
        kept.append((file_name, title, label))
      rows[split] = kept
    in_train = {r[0] for r in rows["train"]}
    in_both = in_train & {r[0] for r in rows["test"]}
    train = rows["train"]
    num_val = min(VALIDATION_MAX, int(round(len(train) / VALIDATION_DIVISOR)))
    if not 0 < num_val < len(train):
      raise ManualDirError(f"{os.path.join(root, SPLIT_FILES['train'])}: {len(train)} rows are "
                           f"too few to carve a validation split")
    labels = np.array([CLASSES_SORTED.index(r[2]) for r in train])
    val_idx, train_idx = _split.stratified_split(labels, num_val, VALIDATION_SEED)
    groups = dict(train=("train", [train[i] for i in train_idx]),
                  validation=("train", [train[i] for i in val_idx]),
                  test=("test", rows["test"]))

    def example(source, file_name, title, label):
      qualified = f"{source}/{file_name}"
      keys = (qualified,) if file_name in in_both else (qualified, file_name)
      return Example(id=qualified, keys=keys, label=CLASSES_SORTED.index(label),
                     raw_text=title, image_file=f"images/{source}/{label}/{file_name}")

    examples = {split: [example(source, *r) for r in split_rows]
                for split, (source, split_rows) in groups.items()}
    validation = dict(source="carved", rule=(
        f"stratified_split(train_titles.csv rows, labels in sorted order, min("
        f"{VALIDATION_MAX}, round(n / {VALIDATION_DIVISOR})) = {num_val}, "
        f"seed={VALIDATION_SEED})"))
    return examples, validation
