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


def test_method_overhead_runs_and_reports_every_variant(tmp_path):
  out = tmp_path / "methods.json"
  subprocess.run([sys.executable, "benchmarks/method_overhead.py", "--quick", "--modalities", "2",
                  "--batch", "16", "--rounds", "1", "--steps", "1", "--out", str(out)],
                 check=True, capture_output=True)
  result = json.loads(out.read_text())
  variants = ("plain", "plain_split_head", "plain_heads", "ogm_ge", "ogm_ge_no_noise",
              "cggm_magnitude", "cggm_direction", "cggm_direction_weights", "miles",
              "gradient_blending", "agm_unmodulated", "agm", "pcgrad", "mmpareto", "balgrad",
              "sam", "msam_scores", "msam", "plain_late", "mnl", "pmr", "mla")
  (config,) = result["configs"]
  assert set(config["variants"]) == set(variants)
  assert set(result["variants"]) == set(variants)
  checked = {(t["variant"], t["reference"]) for t in config["targets"]}
  assert checked == {("ogm_ge", "plain_split_head"), ("ogm_ge", "plain"), ("cggm_magnitude", "plain"),
                     ("cggm_direction", "plain"), ("miles", "plain"), ("agm", "agm_unmodulated"),
                     ("pcgrad", "plain"), ("mmpareto", "plain"), ("balgrad", "plain"),
                     ("sam", "plain"), ("msam", "msam_scores"), ("mnl", "plain_late"),
                     ("pmr", "plain")}
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
