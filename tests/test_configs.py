"""Every shipped config loads, passes the checks, and builds its model and method."""
import pathlib

import pytest

from mmbal.modalities import Modality
from mmbal.train import load_config
from mmbal.train.config import check_config
from mmbal.train.run import build_parts

ROOT = pathlib.Path(__file__).resolve().parent.parent
TASKS = {"mmsa": "regression", "mmimdb": "multilabel", "iemocap": "multilabel"}
CONFIGS = sorted(p for p in (ROOT / "configs").glob("*/*.py") if not p.name.startswith("_"))


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: f"{p.parent.name}/{p.stem}")
def test_config_builds_its_model_and_method(path):
  c = load_config(str(path))
  check_config(c)
  # Stand-in vector inputs: this checks the model/method pairing (for the data set's task),
  # not the data.
  c.model.image_encoder = "cnn"
  shape = (6, 4) if c.method.name == "lnln" else (4,)   # LNLN reads sequences
  mods = [Modality(n, shape) for n in c.data.modalities]
  task = TASKS.get(c.data.name, "classification")
  parts = build_parts(c, mods, 1 if task == "regression" else 3, task=task,
                      steps_per_epoch=4, total_steps=8)
  assert parts.model.names == tuple(c.data.modalities)
  assert len(parts.method.weights) == len(mods) + 1


def _write(folder, name, text):
  (folder / name).write_text(text)
  return folder / name


def test_base_is_applied_first_then_the_file(tmp_path):
  _write(tmp_path, "joint.py", "def get_config():\n"
         "  return dict(train=dict(batch_size=32, num_epochs=7), model=dict(fusion='sum'))\n")
  child = _write(tmp_path, "m.py", "BASE = 'joint.py'\n\ndef get_config():\n"
                 "  return dict(train=dict(batch_size=16), method=dict(name='pmr'))\n")
  c = load_config(str(child))
  assert (c.train.batch_size, c.train.num_epochs, c.model.fusion, c.method.name) == (16, 7, "sum", "pmr")


def test_base_errors_are_clear(tmp_path):
  a = _write(tmp_path, "a.py", "BASE = 'b.py'\ndef get_config():\n  return {}\n")
  _write(tmp_path, "b.py", "BASE = 'a.py'\ndef get_config():\n  return {}\n")
  with pytest.raises(ValueError, match="BASE cycle"):
    load_config(str(a))
  c = _write(tmp_path, "c.py", "BASE = 'missing.py'\ndef get_config():\n  return {}\n")
  with pytest.raises(FileNotFoundError, match="missing.py"):
    load_config(str(c))
