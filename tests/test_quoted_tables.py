"""The tables the README and docs quote from the default run are what their commands print now."""
import importlib.util
import os
import pathlib
import subprocess
import sys

ROOT = pathlib.Path(__file__).parent.parent
_spec = importlib.util.spec_from_file_location("quoted_tables", ROOT / "benchmarks/quoted_tables.py")
quoted_tables = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(quoted_tables)


def test_a_stale_quote_is_found(tmp_path, monkeypatch):
  page = tmp_path / "page.md"
  page.write_text("text\n<!-- t:start -->\n| a | 91.4 / 27.0 |\n<!-- t:end -->\nmore\n")
  monkeypatch.setitem(quoted_tables.QUOTES, "t", page)
  assert quoted_tables.differences("t", "| a | 91.6 / 27.3 |") == []   # within the tolerance
  assert quoted_tables.differences("t", "| a | 91.4 / 30.8 |") == [
      "t: quoted 27.0, the command gives 30.8"]
  assert "text differs" in quoted_tables.differences("t", "| b | 91.4 / 27.0 |")[0]
  quoted_tables.write("t", "| a | 91.4 / 30.8 |")
  assert page.read_text() == "text\n<!-- t:start -->\n| a | 91.4 / 30.8 |\n<!-- t:end -->\nmore\n"


def test_quoted_tables_match_their_commands(tmp_path):
  # As a user runs it: one device (the tests' 8 simulated devices would shard the batch) and
  # XLA's default code generation (the suite's faster-compiling flags change the last digits
  # on jaxlib 0.12: a probe accuracy moved by two validation examples).
  env = dict(os.environ, PYTHONPATH=str(ROOT))
  for name in ("JAX_NUM_CPU_DEVICES", "XLA_FLAGS"):
    env.pop(name, None)
  run = subprocess.run([sys.executable, "benchmarks/quoted_tables.py",
                        f"data.data_dir={tmp_path / 'tfds'}"],
                       cwd=ROOT, env=env, capture_output=True, text=True, check=False)
  assert run.returncode == 0, run.stdout + run.stderr[-3000:]
