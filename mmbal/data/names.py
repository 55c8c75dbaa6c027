"""The data sets `data.name` accepts, and their aliases: importable without TFDS, so a wrong
name is refused (with "did you mean") before anything loads."""
import difflib

# data.name -> the registered TFDS builder (mmbal/data/*.py); TFDS's own catalog already has
# a `crema_d`, a `food101` and a `ucf101`, so those builders are registered as mmbal_*.
DATA_SETS = {
    "uci_mfeat": "uci_mfeat", "synthetic_imbalance": "synthetic_imbalance", "arrays": "arrays",
    "av_mnist": "av_mnist", "crema_d": "mmbal_crema_d", "kinetics_sounds": "kinetics_sounds",
    "ave": "ave", "vggsound": "vggsound", "ucf101": "mmbal_ucf101",
    "hateful_memes": "hateful_memes", "upmc_food101": "mmbal_upmc_food101",
    "mmimdb": "mmimdb", "mmsa": "mmsa", "iemocap": "iemocap", "easy_vqa": "mmbal_easy_vqa",
}
ALIASES = {"mfeat": "uci_mfeat", "synthetic": "synthetic_imbalance", "food101": "upmc_food101",
           "avmnist": "av_mnist", "cremad": "crema_d", "mosi": "mmsa", "mosei": "mmsa",
           "sims": "mmsa"}


def canonical(name: str) -> str:
  """`data.name` (an alias, a name, or a registered builder name) -> the name in DATA_SETS."""
  base = name.partition("/")[0]
  base = ALIASES.get(base, base)
  return next((k for k, v in DATA_SETS.items() if base == v), base)


def check(name: str) -> str:
  """The canonical name (or, for a TFDS builder of your own, its name), else a ValueError
  naming the choices and the closest one."""
  base = canonical(name)
  if base in DATA_SETS:
    return base
  import tensorflow_datasets as tfds  # pylint: disable=import-outside-toplevel
  try:
    tfds.builder_cls(base)   # a builder registered by your code (or TFDS's catalog)
    return base
  except Exception:  # pylint: disable=broad-except  (tfds raises several kinds)
    pass
  close = difflib.get_close_matches(name, list(DATA_SETS) + list(ALIASES), n=1, cutoff=0.6)
  hint = f"did you mean {close[0]!r}? " if close else ""
  raise ValueError(f"config field 'data.name': unknown data set {name!r}; {hint}"
                   f"expected one of {sorted(DATA_SETS)} (aliases: {sorted(ALIASES)})")
