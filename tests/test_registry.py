"""Everything that lists methods follows the registry (`mmbal.methods.REGISTRY`): a method
without a docs page, an entry in the docs index and the README, or a generated config for a
data set it runs on fails here. Also the registry's own checks (settings, requirements)."""
import dataclasses
import importlib.util
import pathlib
import shutil

import pytest

from mmbal import methods
from mmbal.train import apply_overrides, default_config, load_config
from mmbal.train.config import METHODS, check_config

ROOT = pathlib.Path(__file__).resolve().parent.parent
# Baselines (joint, unimodal) are not balancing methods: no docs page of their own.
BALANCING = [n for n, m in methods.REGISTRY.items() if not m.baseline]


def _generator():
  spec = importlib.util.spec_from_file_location("make_method_configs",
                                                ROOT / "configs" / "make_method_configs.py")
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


@pytest.mark.parametrize("name", BALANCING)
def test_every_method_is_documented(name):
  method = methods.get(name)
  assert method.docs, f"mmbal/methods/{name}.py: Method(docs=...) names no docs page"
  page = ROOT / "docs" / "methods" / f"{method.docs}.md"
  assert page.is_file(), f"{name}: no docs page {page.relative_to(ROOT)}"
  assert f"({method.docs}.md)" in (ROOT / "docs" / "methods" / "index.md").read_text(), \
      f"{name}: not in docs/methods/index.md"
  assert f"methods/{method.docs}.md" in (ROOT / "mkdocs.yml").read_text(), f"{name}: not in mkdocs.yml"
  readme = (ROOT / "README.md").read_text()
  table = readme[readme.index("## Balancing methods"):]
  assert f"| `{name}` |" in table[:table.index("\n\n", table.index("|"))], \
      f"{name}: not in the README's method table"


def test_every_data_set_has_a_config_for_every_method_that_runs_on_it():
  generator = _generator()
  for folder in sorted(p.parent for p in (ROOT / "configs").glob("*/joint.py")):
    task = generator.TASKS.get(load_config(str(folder / "joint.py")).data.name, "classification")
    absent = [m.name for m in generator.missing(folder, task)]
    assert not absent, (f"configs/{folder.name}: no config for {absent}; run "
                        f"python configs/make_method_configs.py --all")


def test_the_generator_writes_configs_that_build(tmp_path):
  shutil.copy(ROOT / "configs" / "mfeat" / "joint.py", tmp_path / "joint.py")
  written = _generator().write(tmp_path.name, "UCI mfeat", root=tmp_path.parent)
  expected = {n for n, m in methods.REGISTRY.items() if m.generated and m.data is None}
  assert {p.stem for p in written} == expected
  for path in written:
    c = load_config(str(path))
    check_config(c)
    assert c.method.name == path.stem


def test_config_fields_and_defaults_come_from_the_registry():
  assert METHODS == tuple(methods.REGISTRY)
  c = default_config()
  for name, method in methods.REGISTRY.items():
    fields = {f.name: f.default for f in dataclasses.fields(method.settings)}
    assert (c.method[name].to_dict() if fields else {}) == fields


def test_settings_are_typed_and_range_checked_before_anything_runs():
  c = apply_overrides(default_config(), ["method.name=ogm_ge", "method.ogm_ge.alpha=2"])
  assert isinstance(c.method.ogm_ge.alpha, float) and c.method.ogm_ge.alpha == 2.0
  with pytest.raises(ValueError, match="did you mean 'method.ogm_ge.alpha'"):
    apply_overrides(default_config(), ["method.ogm_ge.alpah=2"])
  with pytest.raises(ValueError, match="did you mean 'ogm_ge'"):
    check_config(apply_overrides(default_config(), ["method.name=ogm_gee"]))
  for override, message in [
      ("method.sam.rho=1e9", r"'method.sam.rho' must be in \[0.0, 10.0\], got 1000000000.0"),
      ("method.cggm.guard=never", r"'method.cggm.guard' must be one of \('softmax', 'clip', 'none'\)"),
      ("method.gradient_blending.super_epoch=0", r"super_epoch' must be in \[1, inf\]")]:
    name = override.split(".")[1]
    c = apply_overrides(default_config(), [f"method.name={name}", "model.unimodal=heads", override])
    with pytest.raises(ValueError, match=message):
      check_config(c)


def test_model_requirements_name_the_field_and_the_reason():
  c = apply_overrides(default_config(), ["method.name=pcgrad", "model.unimodal=probe"])
  with pytest.raises(ValueError, match="'pcgrad' needs model.unimodal='heads', got 'probe': "
                                       "its unimodal losses train"):
    check_config(c)
  c = apply_overrides(default_config(), ["method.name=mla", "model.unimodal=shared_head"])
  with pytest.raises(ValueError, match="'mla' needs model.fusion='late' or 'late_entropy'"):
    check_config(c)
