"""Writes ``configs/<dataset>/<method>.py`` for every registered method (`mmbal.methods`) that
runs on the data set, over its ``joint.py`` (``BASE = "joint.py"``), with the model each method's
registration names. Existing files are kept (hand-tuned ones such as ``ogm_ge.py``).

  python configs/make_method_configs.py crema_d "CREMA-D"
  python configs/make_method_configs.py mmimdb "MM-IMDb" multilabel
  python configs/make_method_configs.py --all      # every data set folder (its task from joint.py)
"""
import json
import pathlib
import sys

from mmbal import methods
from mmbal.train.config import load_config

ROOT = pathlib.Path(__file__).resolve().parent
# The task of the data sets whose task is not classification (their builders' DataSpec.task).
TASKS = {"mmsa": "regression", "mmimdb": "multilabel", "iemocap": "multilabel"}


def _python(values: dict) -> str:
  return ", ".join(f"{k}={json.dumps(v)}" for k, v in values.items())


def config_text(method, dataset: str, title: str, task: str) -> str:
  """The generated config of ``method`` (a registered `Method`) on a data set."""
  kind = methods.task_kind(task)
  settings = method.generated_settings(kind) if method.generated_settings else {}
  extra = f", {method.name}=dict({_python(settings)})" if settings else ""
  form = (f"On this regression task {method.regression_form}.\n"
          if kind == "regression" and method.regression_form else "")
  return (f'"""{method.title}.\n\nOn {title}, with the data, encoders and optimiser of `joint.py`; '
          f'the method\'s\nsettings are mmbal\'s defaults (`mmbal/methods/{method.name}.py`).\n{form}\n'
          f'  mmbal train --config configs/{dataset}/{method.name}.py --workdir runs/{dataset}_{method.name}\n"""\n'
          f'BASE = "joint.py"\n\n\n'
          f'def get_config():\n'
          f'  return dict(model=dict({_python(method.model)}), method=dict(name="{method.name}"{extra}))\n')


def missing(folder: pathlib.Path, task: str) -> list:
  """The registered methods that run on the folder's data set and task but have no config."""
  data = load_config(str(folder / "joint.py")).data.name
  return [m for m in methods.REGISTRY.values()
          if m.runs_on(data, task) and not (folder / f"{m.name}.py").exists()]


def write(dataset: str, title: str, task: str = "classification", root: pathlib.Path = ROOT) -> list:
  """Writes the missing generated configs of ``root/<dataset>``; returns their paths."""
  folder = root / dataset
  if not (folder / "joint.py").is_file():
    sys.exit(f"{folder}/joint.py does not exist: write the data set's joint config first")
  written = []
  for method in missing(folder, task):
    if not method.generated:
      sys.exit(f"{folder}/{method.name}.py is missing and is written by hand "
               f"(mmbal/methods/{method.name}.py: generated=False)")
    (folder / f"{method.name}.py").write_text(config_text(method, dataset, title, task))
    written.append(folder / f"{method.name}.py")
  return written


def write_all(root: pathlib.Path = ROOT) -> list:
  """`write` for every data set folder; the title is the first line of its joint.py."""
  written = []
  for folder in sorted(p.parent for p in root.glob("*/joint.py")):
    task = TASKS.get(load_config(str(folder / "joint.py")).data.name, "classification")
    written += write(folder.name, folder.name, task, root)
  return written


if __name__ == "__main__":
  if sys.argv[1:] == ["--all"]:
    print("\n".join(str(p) for p in write_all()) or "every config is there")
  elif len(sys.argv) in (3, 4):
    print("\n".join(str(p) for p in write(*sys.argv[1:])) or "every config is there")
  else:
    sys.exit(__doc__)
