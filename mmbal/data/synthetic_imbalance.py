"""TFDS builder `synthetic_imbalance`: multimodal classification with a dominant modality by design.

Generative model. Labels are balanced: `y = permutation(arange(n) % K)`. Each
modality m has fixed, seeded parameters: class prototypes `mu_m[k] ~ N(0, I_dim)`
and a random orthogonal matrix `Q_m` (dim x dim). For every example, modality m
shows a class `c`: the true class `y` with probability `informativeness`,
otherwise a class drawn uniformly from all K classes (independently per
modality). Its features are

    x = scale * (Q_m @ (s * mu_m[c]) + noise * eps),    eps ~ N(0, I_dim),

where `s = 1` for `order=1`, and `s` is a fresh vector of random signs per
example for `order=2`. What each control does:

* `informativeness` (p) caps what any classifier can get from the modality:
  accuracy <= p + (1 - p) / K. With p = 0 the modality is independent of y
  (chance level); the shown-class noise is independent across modalities, so
  the modalities are complementary.
* `noise` (per-coordinate std, relative to the unit-variance prototypes)
  sets how separable the shown classes are, i.e. the Bayes accuracy below the cap.
* `order` sets how hard the signal is to learn. Order 1: the class is in the
  mean of x, so a linear read-out suffices and is learned fast. Order 2: the
  class means are all zero and the class is only in the second moments (the
  variance of x along each column of Q_m). A linear read-out then has no signal
  (at initialisation its expected gradient is zero; fitted linear probes land
  near chance). An encoder must first find the fixed random directions Q_m and
  a nonlinearity such as |q . x|, which takes much longer.
* `scale` multiplies the whole modality and leaves every accuracy above
  unchanged. Under plain SGD, without input normalisation, it scales the
  gradients, so a large scale is learned fast and a small scale slowly.
  Adam-style optimisers and input normalisation (e.g. LayerNorm) largely cancel
  it; `order` is the control that survives them.

Modality m (the m-th in the config) uses the random streams `(seed, 0, m)` for
its parameters and `(seed, split, m + 1)` for its samples, and the labels use
`(seed, split)` (split 1 = train, 2 = test). Everything is therefore determined
by the config. A modality's data depends only on its own settings, its
position, `num_classes`, the split size and the seed.

Presets (`BUILDER_CONFIGS`, 5,000 train / 1,000 test, 10 classes) pair fast,
capped modalities with slow, informative ones. One example: a 2-layer MLP trained
with Adam on `two_modal` gets ~0.82 from audio alone after one epoch. On video
alone it climbs from 0.2 to 0.9 over about ten epochs. On both (concatenated) it
stays near 0.83, although the two modalities together allow far more.
"""

import dataclasses
import hashlib
import json

import numpy as np
import tensorflow_datasets as tfds

from mmbal.data import _builder

_SPLIT_STREAMS = {"train": 1, "test": 2}
_RESERVED = ("label", "mask")


@dataclasses.dataclass(frozen=True)
class SyntheticModality:
  """One generated modality; see the module docstring for the generative model."""

  name: str
  dim: int = 32
  informativeness: float = 1.0
  noise: float = 1.0
  scale: float = 1.0
  order: int = 1

  def __post_init__(self):
    if not self.name.isidentifier() or self.name in _RESERVED:
      raise ValueError(f"name must be a Python identifier other than {_RESERVED}, "
                       f"got {self.name!r}")
    _check(f"{self.name}.dim", self.dim, isinstance(self.dim, int) and self.dim >= 1,
           "an int >= 1")
    _check(f"{self.name}.informativeness", self.informativeness,
           0.0 <= self.informativeness <= 1.0, "in [0, 1]")
    _check(f"{self.name}.noise", self.noise, self.noise >= 0.0, ">= 0")
    _check(f"{self.name}.scale", self.scale, self.scale > 0.0, "> 0")
    _check(f"{self.name}.order", self.order, self.order in (1, 2), "1 or 2")


def _check(field, value, ok, expected):
  if not ok:
    raise ValueError(f"{field} must be {expected}, got {value!r}")


class SyntheticImbalanceConfig(tfds.core.BuilderConfig):
  """Config of `synthetic_imbalance`: the modalities and the data set's size and seed.

  `modalities` holds `SyntheticModality`s or dicts of their fields. Unless
  `name` is given (reserved for the presets in `BUILDER_CONFIGS`), the name is
  `"custom_" + hash` of all parameters, so different settings never share a
  directory in a data_dir.
  """

  def __init__(self, *, modalities, num_classes=10, num_train=5000, num_test=1000,
               seed=0, name=None, description=None):
    self.modalities = tuple(SyntheticModality(**m) if isinstance(m, dict) else m
                            for m in modalities)
    self.num_classes = num_classes
    self.num_train = num_train
    self.num_test = num_test
    self.seed = seed
    names = [m.name for m in self.modalities]
    _check("modalities", names, len(names) >= 1 and len(set(names)) == len(names),
           "a non-empty sequence of SyntheticModality with unique names")
    _check("num_classes", num_classes, num_classes >= 2, "an int >= 2")
    _check("num_train", num_train, num_train >= 1, "an int >= 1")
    _check("num_test", num_test, num_test >= 1, "an int >= 1")
    _check("seed", seed, seed >= 0, "an int >= 0")
    if name is None:
      name = "custom_" + hashlib.sha256(self.to_json().encode()).hexdigest()[:12]
    super().__init__(name=name, description=description or self.to_json())

  def to_json(self) -> str:
    """All generative parameters, canonically serialised."""
    return json.dumps(dict(
        modalities=[dataclasses.asdict(m) for m in self.modalities],
        num_classes=self.num_classes, num_train=self.num_train,
        num_test=self.num_test, seed=self.seed), sort_keys=True)


def generate(config: SyntheticImbalanceConfig, split: str) -> dict[str, np.ndarray]:
  """Generates one split as arrays: `{modality: float32 [n, dim], "label": int64 [n]}`."""
  n = config.num_train if split == "train" else config.num_test
  stream = _SPLIT_STREAMS[split]
  k = config.num_classes
  labels = np.random.default_rng((config.seed, stream)).permutation(np.arange(n) % k)
  data = {}
  for i, m in enumerate(config.modalities):
    params = np.random.default_rng((config.seed, 0, i))
    prototypes = params.standard_normal((k, m.dim))
    rotation, _ = np.linalg.qr(params.standard_normal((m.dim, m.dim)))
    rng = np.random.default_rng((config.seed, stream, i + 1))
    informative = rng.random(n) < m.informativeness
    shown = np.where(informative, labels, rng.integers(k, size=n))
    signal = prototypes[shown]
    if m.order == 2:
      signal = signal * rng.choice(np.array([-1.0, 1.0]), size=signal.shape)
    x = signal @ rotation.T + m.noise * rng.standard_normal((n, m.dim))
    data[m.name] = (m.scale * x).astype(np.float32)
  data["label"] = labels
  return data


def _preset(name, description, *modalities):
  return SyntheticImbalanceConfig(name=name, description=description, modalities=modalities)


PRESETS = (
    _preset("two_modal",
            "audio: fast (order 1) but capped at ~82% accuracy; video: slow (order 2) "
            "but nearly fully informative. Joint training tends to lean on audio.",
            SyntheticModality("audio", dim=32, informativeness=0.8, noise=1.0),
            SyntheticModality("video", dim=32, informativeness=0.95, noise=0.5, order=2)),
    _preset("three_modal",
            "a: fast, weak cap; b: medium; c: slow, strong.",
            SyntheticModality("a", dim=16, informativeness=0.7, noise=1.0, scale=2.0),
            SyntheticModality("b", dim=32, informativeness=0.85, noise=1.0),
            SyntheticModality("c", dim=32, informativeness=0.95, noise=0.5, order=2)),
    _preset("six_modal",
            "Six modalities from fast-and-weak to slow-and-strong, plus one pure-noise modality.",
            SyntheticModality("m0", dim=16, informativeness=0.6, noise=1.0, scale=2.0),
            SyntheticModality("m1", dim=16, informativeness=0.7, noise=1.0),
            SyntheticModality("m2", dim=32, informativeness=0.8, noise=1.0, scale=0.5),
            SyntheticModality("m3", dim=32, informativeness=0.9, noise=0.5, order=2),
            SyntheticModality("m4", dim=64, informativeness=0.95, noise=0.5, scale=0.5, order=2),
            SyntheticModality("m5", dim=8, informativeness=0.0)),
)


class SyntheticImbalance(_builder.ArrayRecordBuilder):
  """Generated multimodal classification; see the module docstring."""

  VERSION = tfds.core.Version("1.0.0")
  RELEASE_NOTES = {"1.0.0": "Initial release."}
  BUILDER_CONFIGS = list(PRESETS)

  def _info(self) -> tfds.core.DatasetInfo:
    config = self.builder_config
    features = {m.name: tfds.features.Tensor(shape=(m.dim,), dtype=np.float32)
                for m in config.modalities}
    features["label"] = tfds.features.ClassLabel(num_classes=config.num_classes)
    return tfds.core.DatasetInfo(
        builder=self,
        description=__doc__,
        features=tfds.features.FeaturesDict(features),
        metadata=tfds.core.MetadataDict(
            modalities=[m.name for m in config.modalities],
            generator=json.loads(config.to_json())),
    )

  def _split_generators(self, dl_manager):
    del dl_manager  # Nothing to download.
    return {split: self._generate_examples(split) for split in _SPLIT_STREAMS}

  def _generate_examples(self, split):
    data = generate(self.builder_config, split)
    names = [m.name for m in self.builder_config.modalities]
    for i, label in enumerate(data["label"]):
      example = {name: data[name][i] for name in names}
      example["label"] = int(label)
      yield i, example
