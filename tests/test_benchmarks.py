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


def test_method_overhead_runs_and_reports_its_targets(tmp_path):
  # A representative subset (every method's step compiles and trains in test_methods_train):
  # a modulation transform, a projection, the late-fusion reference and MLA's own step.
  out = tmp_path / "methods.json"
  subprocess.run([sys.executable, "benchmarks/method_overhead.py", "--quick", "--modalities", "2",
                  "--batch", "16", "--rounds", "1", "--steps", "1", "--out", str(out),
                  "--variants", "ogm_ge", "pcgrad", "mnl", "mla"],
                 check=True, capture_output=True)
  result = json.loads(out.read_text())
  (config,) = result["configs"]
  # Each requested variant comes with the counterpart its ratio is measured against.
  assert {"ogm_ge", "pcgrad", "mnl", "mla", "plain", "plain_late"} <= set(config["variants"])
  checked = {(t["variant"], t["reference"]) for t in config["targets"]}
  assert {("ogm_ge", "plain"), ("pcgrad", "plain"), ("mnl", "plain_late")} <= checked
  for record in config["variants"].values():
    assert record["ms"] > 0 and record["compile_s"] > 0


def test_vlm_step_runs_and_reports(tmp_path):
  out = tmp_path / "vlm.json"
  subprocess.run([sys.executable, "benchmarks/vlm_step.py", "--variants", "ce",
                  "--batch", "8", "--dim", "16", "--depth", "1", "--rounds", "1", "--steps", "1",
                  "--out", str(out)], check=True, capture_output=True)
  result = json.loads(out.read_text())
  assert set(result["variants"]) == {"ce"} and result["setup"]["visual_tokens"] == 16
  for record in result["variants"].values():
    assert record["ms"] > 0 and record["compile_s"] > 0
