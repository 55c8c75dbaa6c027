"""TFDS builder `uci_mfeat`: UCI Multiple Features, 2,000 digits seen through six views.

The data (CC BY 4.0, R. P. W. Duin) is embedded in the package under
`resources/uci_mfeat/`, so building needs no download and no manual dir.

Splits: a fixed stratified split of the 2,000 digits into `train` (1,500, 150
per class) and `test` (500, 50 per class), made by `_split.stratified_split`
with seed `SPLIT_SEED`.

Standardisation happens here, in the builder: every feature of every view is
shifted and scaled by the mean and standard deviation (ddof=0) of the TRAIN
split, so the very different scales of the views do not matter (features that
are constant on train are only centred). The statistics are stored in
`info.metadata["standardisation"][view] = {"mean": [...], "std": [...]}`.
"""

import functools
import importlib.resources

import numpy as np
import tensorflow_datasets as tfds

from mmbal.data import _builder
from mmbal.data import _split

VIEWS = ("fac", "fou", "kar", "mor", "pix", "zer")
NUM_CLASSES = 10
NUM_TEST = 500
SPLIT_SEED = 0

_CITATION = """\
@misc{duin1998mfeat,
  author = {Duin, Robert},
  title = {{Multiple Features}},
  year = {1998},
  howpublished = {UCI Machine Learning Repository},
  note = {{DOI}: https://doi.org/10.24432/C5HC70}
}"""


def resource_dir():
  """Directory (a `Traversable`) holding `mfeat.npz` and its README."""
  return importlib.resources.files("mmbal.data") / "resources" / "uci_mfeat"


@functools.cache
def _prepared() -> dict:
  """Loads the embedded data once; returns split indices, statistics, standardised views."""
  with (resource_dir() / "mfeat.npz").open("rb") as f, np.load(f) as z:
    raw = {v: z[v].astype(np.float64) for v in VIEWS}
    labels = z["label"].astype(np.int64)
  test, train = _split.stratified_split(labels, NUM_TEST, SPLIT_SEED)
  views, stats = {}, {}
  for v in VIEWS:
    mean = raw[v][train].mean(axis=0)
    std = raw[v][train].std(axis=0)
    std = np.where(std > 1e-12, std, 1.0)
    views[v] = ((raw[v] - mean) / std).astype(np.float32)
    stats[v] = {"mean": mean.tolist(), "std": std.tolist()}
  return dict(views=views, labels=labels, train=train, test=test, stats=stats)


class UciMfeat(_builder.ArrayRecordBuilder):
  """UCI Multiple Features (mfeat): six feature views of handwritten digits 0-9."""

  VERSION = tfds.core.Version("1.0.0")
  RELEASE_NOTES = {"1.0.0": "Stratified 1500/500 split, train-standardised views."}

  def _info(self) -> tfds.core.DatasetInfo:
    data = _prepared()
    features = {v: tfds.features.Tensor(shape=(data["views"][v].shape[1],), dtype=np.float32)
                for v in VIEWS}
    features["label"] = tfds.features.ClassLabel(num_classes=NUM_CLASSES)
    metadata = tfds.core.MetadataDict(
        modalities=list(VIEWS), default_modalities=["pix", "fou", "mor"], split_seed=SPLIT_SEED, num_test=NUM_TEST,
        standardisation=data["stats"])
    return tfds.core.DatasetInfo(
        builder=self,
        description=__doc__,
        features=tfds.features.FeaturesDict(features),
        supervised_keys=None,
        homepage="https://doi.org/10.24432/C5HC70",
        citation=_CITATION,
        metadata=metadata,
        license="CC BY 4.0",
    )

  def _split_generators(self, dl_manager):
    del dl_manager  # The data is embedded in the package.
    data = _prepared()
    return {"train": self._generate_examples(data["train"]),
            "test": self._generate_examples(data["test"])}

  def _generate_examples(self, indices):
    data = _prepared()
    for i in indices:
      example = {v: data["views"][v][i] for v in VIEWS}
      example["label"] = int(data["labels"][i])
      yield int(i), example
