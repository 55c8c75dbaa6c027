"""The benchmark scripts run (tiny settings; timing is not asserted, benchmarks measure it)."""
import json
import subprocess
import sys


def test_step_overhead_runs_and_reports_every_variant(tmp_path):
  out = tmp_path / "overhead.json"
  subprocess.run([sys.executable, "benchmarks/step_overhead.py", "--quick", "--modalities", "2",
                  "--batch", "16", "--rounds", "1", "--steps", "1", "--out", str(out)],
                 check=True, capture_output=True)
  result = json.loads(out.read_text())
  text = json.dumps(result)
  for variant in ("plain", "structured/vmap", "overlap/unrolled", "separate"):
    assert variant in text
