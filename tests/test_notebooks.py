"""The Colab notebooks (``notebooks/``): built from their sources, stripped, and run end to end.

Each notebook runs in a headless Jupyter kernel on the same Python as pytest, with the
test parameters (``INSTALL = False``, ``SMALL = True``, a shared TFDS dir) injected after
its parameters cell, on one CPU device. A probe cell appended at the end prints one
meaningful result as JSON, which is checked here.
"""
import importlib.util
import json
import os
import pathlib
import sys
import time

import nbformat
import pytest
from nbclient import NotebookClient

ROOT = pathlib.Path(__file__).resolve().parent.parent
NOTEBOOKS = ROOT / "notebooks"
_spec = importlib.util.spec_from_file_location("notebooks_build", NOTEBOOKS / "build.py")
build = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(build)

# What each notebook's probe cell prints (evaluated in the notebook's namespace).
PROBES = {
    "01_why_my_model_ignores_a_modality": (
        "dict(count=diagnosis['count'], accuracy=diagnosis['accuracy'], "
        "empty=diagnosis['empty']['accuracy'], shapley=diagnosis['shapley']['accuracy'], "
        "table=dependence_table, curve_points=len(records))"),
    "02_balancing_in_five_lines": (
        "dict(results={k: {c: float(v[0]) for c, v in r.items()} for k, r in results.items()}, "
        "weak=WEAK, before=float(before), after=float(after))"),
    "03_bring_your_own_jax_model": (
        "dict(max_difference=max_difference, passes=mmbal.plan_backward_passes(supports), "
        "diagnoses={k: dict(accuracy=d['accuracy'], empty=d['empty']['accuracy'], "
        "shapley=d['shapley']['accuracy']) for k, d in diagnoses.items()})"),
    "04_robustness_to_missing_modalities": "sweeps",
}


def test_sources_build_to_the_committed_notebooks():
  """Every .ipynb is exactly what build.py makes of its source: up to date, no outputs."""
  expected = build.targets()
  assert sorted(p.stem for p in expected) == sorted(PROBES)
  assert sorted(p.name for p in NOTEBOOKS.glob("*.ipynb")) == sorted(p.name for p in expected)
  for path, text in expected.items():
    assert json.loads(path.read_text()) == json.loads(text), \
        f"{path.name} is out of date: run python notebooks/build.py"
    nb = nbformat.reads(text, as_version=4)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert all(not c.outputs and c.execution_count is None for c in code), path.name
    install = [c for c in code if "install" in c.metadata.get("tags", [])]
    assert len(install) == 1 and "%pip install -q \"git+https://github.com/mmbal/mmbal\"" in install[0].source
    assert build.colab_url(path.stem) in nb.cells[0].source


def test_build_check_catches_a_stale_notebook(tmp_path, monkeypatch):
  """``build.py --check`` fails on an edited (or executed) notebook and passes once rebuilt."""
  monkeypatch.setattr(build, "HERE", tmp_path)
  monkeypatch.setattr(build, "SOURCES", tmp_path / "src")
  (tmp_path / "src").mkdir()
  source = (NOTEBOOKS / "src" / "03_bring_your_own_jax_model.py").read_text()
  (tmp_path / "src" / "03_bring_your_own_jax_model.py").write_text(source)
  assert build.main(["--check"]) == 1                      # not built yet
  assert build.main([]) == 0 and build.main(["--check"]) == 0
  path = tmp_path / "03_bring_your_own_jax_model.ipynb"
  nb = nbformat.read(path, as_version=4)
  nb.cells[3].outputs = [nbformat.v4.new_output("stream", text="1\n")]
  nbformat.write(nb, path)
  assert build.main(["--check"]) == 1


def test_readme_links_every_notebook_on_colab():
  readme = (ROOT / "README.md").read_text()
  for name in PROBES:
    assert f"({build.colab_url(name)})" in readme, name


KERNEL = "mmbal-notebook-test"


@pytest.fixture(scope="module")
def kernelspec(tmp_path_factory):
  """A kernelspec running ipykernel on pytest's own Python, found first (JUPYTER_PATH), so
  no other installed "python3" kernel can stand in for it."""
  root = tmp_path_factory.mktemp("jupyter")
  (root / "kernels" / KERNEL).mkdir(parents=True)
  (root / "kernels" / KERNEL / "kernel.json").write_text(json.dumps(dict(
      argv=[sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
      display_name="mmbal notebook tests", language="python")))
  with pytest.MonkeyPatch.context() as patch:
    patch.setenv("JUPYTER_PATH", os.pathsep.join(filter(None, [str(root), os.environ.get("JUPYTER_PATH")])))
    yield KERNEL


@pytest.fixture(scope="module")
def kernel_env(tmp_path_factory, kernelspec):
  """The kernels' environment: this checkout first on the path, one CPU device, a
  compilation cache shared by the four kernels, and XLA's cheapest CPU compilation."""
  env = dict(os.environ)
  env.pop("JAX_NUM_CPU_DEVICES", None)        # conftest's 8 simulated devices: not here
  env["JAX_PLATFORMS"] = "cpu"
  env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
  env["JAX_COMPILATION_CACHE_DIR"] = str(tmp_path_factory.mktemp("jax_cache"))
  env["JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS"] = "0"
  env["JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES"] = "-1"
  env["XLA_FLAGS"] = " ".join(filter(None, [env.get("XLA_FLAGS"), "--xla_backend_optimization_level=0",
                                            "--xla_llvm_disable_expensive_passes=true"]))
  return env


def run_notebook(name, env, data_dir, workdir):
  """Executes the notebook with the test parameters; returns (probe, seconds)."""
  nb = nbformat.read(NOTEBOOKS / f"{name}.ipynb", as_version=4)
  params = [i for i, c in enumerate(nb.cells) if "parameters" in c.metadata.get("tags", [])]
  assert len(params) == 1
  nb.cells.insert(params[0] + 1, nbformat.v4.new_code_cell(
      f"INSTALL = False\nSMALL = True\nDATA_DIR = {data_dir!r}"))
  nb.cells.append(nbformat.v4.new_code_cell(
      "import json as _json, sys as _sys\n"
      f"print('PROBE ' + _json.dumps(dict(executable=_sys.executable, value={PROBES[name]})))"))
  client = NotebookClient(nb, kernel_name=KERNEL, timeout=180,
                          resources={"metadata": {"path": str(workdir)}})
  start = time.perf_counter()
  client.execute(env=env)
  seconds = time.perf_counter() - start
  text = "".join(o.get("text", "") for o in nb.cells[-1].outputs if o.output_type == "stream")
  line = next(l for l in text.splitlines() if l.startswith("PROBE "))
  probe = json.loads(line[len("PROBE "):])
  assert probe["executable"] == sys.executable    # the kernel runs pytest's Python
  print(f"{name}: {seconds:.1f} s")
  return probe["value"], seconds


def _in_unit(x):
  return isinstance(x, float) and 0.0 <= x <= 1.0


@pytest.mark.parametrize("name", sorted(PROBES))
def test_notebook_runs(name, kernel_env, tfds_dir, tmp_path):
  value, _ = run_notebook(name, kernel_env, tfds_dir, tmp_path)
  CHECKS[name](value)


def _check_diagnosis(v):
  assert v["count"] == 500 and _in_unit(v["accuracy"]) and v["accuracy"] > 0.5
  assert v["empty"] == pytest.approx(0.1)        # no input: one class of ten, 50 each
  assert set(v["shapley"]) == {"pix", "fou", "mor"}
  assert sum(v["shapley"].values()) == pytest.approx(v["accuracy"] - v["empty"], abs=1e-6)
  rows = v["table"].splitlines()
  assert len(rows) == 5 and [r.split(" | ")[0] for r in rows[2:]] == ["| pix", "| fou", "| mor"]
  assert v["curve_points"] == 4                  # 60 steps, evaluated every 15


def _check_balancing(v):
  assert set(v["results"]) == {"joint (fused loss)", "all three (the chain above)"}
  assert v["weak"] == "fou"
  for row in v["results"].values():
    assert all(_in_unit(x) for x in row.values()), row
    assert row["fused"] > 0.3 and row["probe fou"] > 0.3     # well above chance (0.1)
  assert v["before"] == v["results"]["joint (fused loss)"]["probe fou"]
  assert v["after"] == v["results"]["all three (the chain above)"]["probe fou"]


def _check_own_model(v):
  assert v["max_difference"] < 1e-5              # objective_grads == jax.jacrev
  assert v["passes"] == [[0], [1, 2]]            # fused alone; pix and fou share one pass
  assert len(v["diagnoses"]) == 2
  for d in v["diagnoses"].values():
    assert _in_unit(d["accuracy"]) and d["accuracy"] > 0.3
    assert sum(d["shapley"].values()) == pytest.approx(d["accuracy"] - d["empty"], abs=1e-6)


def _check_robustness(v):
  assert set(v) == {"late fusion (reference)", "joint (concat)"}
  for name, sweep in v.items():
    curves = sweep["curves"]["missing"]
    assert set(curves) == {"pix", "fou", "mor", "all"} and len(sweep["rates"]) == 10
    clean = {c["accuracy"][0] for c in curves.values()}
    assert len(clean) == 1 and _in_unit(clean.pop())   # rate 0: no corruption, one accuracy
    assert all(_in_unit(a) for c in curves.values() for a in c["accuracy"])
    assert ("effective_robustness" in curves["pix"]) == (name != "late fusion (reference)")
    assert sweep["missing_gap"] == pytest.approx(max(sweep["removed"].values())
                                                 - min(sweep["removed"].values()))


CHECKS = {"01_why_my_model_ignores_a_modality": _check_diagnosis,
          "02_balancing_in_five_lines": _check_balancing,
          "03_bring_your_own_jax_model": _check_own_model,
          "04_robustness_to_missing_modalities": _check_robustness}
