"""TFDS builder for IEMOCAP (4 emotions) from MulT's feature pickles, from a manual directory.

IEMOCAP (Busso et al., 2008; https://sail.usc.edu/iemocap/) needs a licence from USC SAIL;
the feature pickles MulT (yaohungt/Multimodal-Transformer) distributes are derived from it,
so mmbal only reads copies the user has. Nothing is downloaded; the builder reads
`<manual_dir>/iemocap/` (or `<manual_dir>` itself when it holds the config's file):

    iemocap_data.pkl            config mult_aligned (default): word-aligned, 20 steps
    iemocap_data_noalign.pkl    config mult_unaligned

Each pickle is `{"train": {...}, "valid": {...}, "test": {...}}` with `text` `(N, L, 300)`
(GloVe), `audio` `(N, La, 74)` (COVAREP), `vision` `(N, Lv, 35)` (FACET) and `labels`
`(N, 4, 2)`: for each of the emotions Neutral, Happy, Sad, Angry (MulT's order) a
(negative, positive) one-hot pair. It is read by the restricted unpickler of
`mmbal.data.manual.read_plain_pickle` (numpy arrays, dicts, lists, strings only).

Labels: MulT scores each emotion as its own binary decision (`argmax` over the pair), so
`label` is a multi-hot int32 `[4]` (1 = the emotion is present) and
`info.metadata["task"]` is `"multilabel"` (`DataSpec.task`). `emotion` (int32) is the
single emotion's index when exactly one is present, else -1; how many examples have 0, 1
or more emotions is in `info.metadata["emotions_per_example"]`, and pairs that are not
exactly one-hot (decided by `argmax` as MulT does) in `["label_pairs_not_one_hot"]`.

Stored per example: `text`, `audio`, `vision` (float32 sequences; shapes in
`info.metadata["shapes"]`), `text_mask`, `audio_mask`, `vision_mask` (all True: the files
hold no lengths), `label`, `emotion`, `id` (`"{split}/{index}"`: the files hold no ids).
Non-finite feature values (COVAREP `-inf`, NaN) are replaced by 0 and counted per split
and modality in `info.metadata["nonfinite"]`, as in `mmbal.data.mmsa`.

Splits: the files' own `train`, `validation` (= `valid`), `test` (2,717 / 798 / 938 in
the literature; counted at build time). Missing files, splits or keys and arrays whose
sizes disagree are errors naming the file, split and key.
"""

from __future__ import annotations

import logging

import numpy as np
import tensorflow_datasets as tfds

from mmbal.data import mmsa
from mmbal.data.manual import ManualDirError

log = logging.getLogger(__name__)

EMOTIONS = ("neutral", "happy", "sad", "angry")  # MulT's src/eval_metrics.py order.

_CITATION = """\
@article{busso2008iemocap,
  author = {Busso, Carlos and Bulut, Murtaza and Lee, Chi-Chun and Kazemzadeh, Abe and
            Mower, Emily and Kim, Samuel and Chang, Jeannette N. and Lee, Sungbok and
            Narayanan, Shrikanth S.},
  title = {{IEMOCAP}: Interactive Emotional Dyadic Motion Capture Database},
  journal = {Language Resources and Evaluation},
  volume = {42},
  number = {4},
  pages = {335--359},
  year = {2008}
}
@inproceedings{tsai2019mult,
  author = {Tsai, Yao-Hung Hubert and Bai, Shaojie and Liang, Paul Pu and Kolter, J. Zico and
            Morency, Louis-Philippe and Salakhutdinov, Ruslan},
  title = {Multimodal Transformer for Unaligned Multimodal Language Sequences},
  booktitle = {ACL},
  year = {2019}
}"""


class IemocapConfig(tfds.core.BuilderConfig):
  """A MulT pickle: `file`, and whether its sequences are word-aligned."""

  def __init__(self, *, file: str, aligned: bool, **kwargs):
    super().__init__(**kwargs)
    self.file, self.aligned = file, aligned


class Iemocap(mmsa.SequencePickleBuilder):
  """IEMOCAP from MulT's pickles (multi-label, 4 emotions); see the module docstring."""

  name = "iemocap"
  VERSION = tfds.core.Version("1.0.0")
  RELEASE_NOTES = {"1.0.0": "MulT pickles: sequences, multi-hot emotions."}
  BUILDER_CONFIGS = [
      IemocapConfig(name="mult_aligned", file="iemocap_data.pkl", aligned=True,
                    description="iemocap_data.pkl (MulT, word-aligned)"),
      IemocapConfig(name="mult_unaligned", file="iemocap_data_noalign.pkl", aligned=False,
                    description="iemocap_data_noalign.pkl (MulT, unaligned)"),
  ]
  MANUAL_NAME = "iemocap"
  MANUAL_EXAMPLE = "iemocap/iemocap_data.pkl"
  MANUAL_DOWNLOAD_INSTRUCTIONS = """\
  Put MulT's IEMOCAP pickles (iemocap_data.pkl for config mult_aligned,
  iemocap_data_noalign.pkl for mult_unaligned; from the Multimodal-Transformer README's
  data link, derived from the licensed IEMOCAP) in <manual_dir>/iemocap/ (manual_dir:
  <data_dir>/downloads/manual, or the builder argument manual_dir=)."""
  TASK = "multilabel"
  CLASS_NAMES = EMOTIONS
  HOMEPAGE = "https://sail.usc.edu/iemocap/"
  CITATION = _CITATION
  LICENSE = "IEMOCAP licence (USC SAIL): research use"

  def _pickle_relpath(self) -> str:
    return self.builder_config.file

  def _label_feature(self):
    return tfds.features.Tensor(shape=(len(EMOTIONS),), dtype=np.int32)

  def _extra_features(self):
    return {"emotion": tfds.features.Tensor(shape=(), dtype=np.int32)}

  def _split_generators(self, dl_manager):
    self.info.metadata["mask_source"] = {m: "none: all steps (MulT files)"
                                         for m in mmsa.MODALITIES}
    self.info.metadata["emotions_per_example"] = {}
    self.info.metadata["label_pairs_not_one_hot"] = {}
    return super()._split_generators(dl_manager)

  def _parse_split(self, split: str, d: dict, path: str) -> mmsa.SplitArrays:
    labels = mmsa.numeric(d, "labels", split, path, (1, 2, 3))
    n = len(labels)
    if labels.shape[1:] != (len(EMOTIONS), 2):
      raise ManualDirError(f"{path}: split '{split}' key 'labels' has shape {labels.shape}; "
                           f"expected (N, 4, 2): a (negative, positive) pair for each of "
                           f"{', '.join(EMOTIONS)}")
    ids = mmsa.texts(d, "id", split, path, n, default="{split}/{i}")
    bad = np.flatnonzero(~np.isfinite(labels.astype(np.float64)).all(axis=(1, 2)))
    if bad.size:
      i = int(bad[0])
      raise ManualDirError(f"{path}: split '{split}' index {i}: labels {labels[i].tolist()} "
                           f"are not finite")
    arrays = mmsa.modality_arrays(d, split, path, n, self.builder_config.aligned)
    multi_hot = labels.argmax(-1).astype(np.int32)  # MulT: argmax over each pair.
    one_hot = np.isin(labels, (0, 1)).all(-1) & (labels.sum(-1) == 1)
    out_split = {v: k for k, v in mmsa.SPLIT_KEYS.items()}[split]
    self.info.metadata["label_pairs_not_one_hot"][out_split] = int((~one_hot).sum())
    if (~one_hot).any():
      i = int(np.flatnonzero(~one_hot.all(-1))[0])
      log.warning("iemocap %s: %d label pairs are not one-hot (e.g. index %d: %s); decided "
                  "by argmax as MulT does", out_split, int((~one_hot).sum()), i,
                  labels[i].tolist())
    positives = multi_hot.sum(-1)
    self.info.metadata["emotions_per_example"][out_split] = {
        "0": int((positives == 0).sum()), "1": int((positives == 1).sum()),
        "2+": int((positives >= 2).sum())}
    emotion = np.where(positives == 1, multi_hot.argmax(-1), -1).astype(np.int32)
    return mmsa.SplitArrays(
        features=arrays, labels=multi_hot, ids=ids, raw_text=[""] * n,
        masks={m: np.ones(a.shape[:2], bool) for m, a in arrays.items()},
        extras={"emotion": emotion})
