"""The benchmark scripts run (tiny settings; timing is not asserted, benchmarks measure it)."""
import importlib.util
import json
import os
import subprocess
import sys

import pytest


def _reproduce():
  spec = importlib.util.spec_from_file_location("reproduce", "benchmarks/reproduce.py")
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


def test_projection_overhead_runs_and_reports_every_variant(tmp_path):
  out = tmp_path / "projection.json"
  subprocess.run([sys.executable, "benchmarks/projection_overhead.py", "--quick", "--out", str(out)],
                 check=True, capture_output=True)
  result = json.loads(out.read_text())
  assert set(result["paired_vs_plain"]) == {"plain", "pcgrad/vmap", "pcgrad/unrolled",
                                            "mmpareto/vmap", "mmpareto/unrolled"}
  assert result["paired_vs_plain"]["plain"] == 1.0 and result["model"]["inputs"]["a"] == 32


@pytest.mark.parametrize("method,needs", [("pcgrad", "pcgrad.py"), ("ogm_ge", "main.py"),
                                         ("mmpareto", "code/MMPareto.py")])
def test_vs_official_says_which_clone_it_needs(tmp_path, method, needs):
  # The comparison itself needs torch and the user's clone of the official code (neither is
  # a test dependency); without the clone it stops with what to clone, before any timing.
  done = subprocess.run([sys.executable, "benchmarks/vs_official.py", "--method", method,
                         "--official-dir", str(tmp_path), "--quick", "--no-write", "--no-memory"],
                        capture_output=True, text=True, check=False)
  assert done.returncode != 0 and f"{needs} not found (a clone of github.com/" in done.stderr


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


def test_reproduction_protocol_quick(tfds_dir, tmp_path):
  """`benchmarks/reproduce.py --quick` (on the synthetic configs: small and fast): the sweep
  is selected on validation, every seed is compared paired to joint training, and a rerun
  resumes without training again."""
  reproduce = _reproduce()
  out = tmp_path / "repro"
  argv = ["--quick", "--configs", "configs/synthetic", "--data-dir", tfds_dir, "--out", str(out)]
  summary = reproduce.main(argv)
  assert set(summary["rows"]) == {"joint", "ogm_ge"} and summary["weak"] in ("audio", "video")
  ogm = summary["rows"]["ogm_ge"]
  assert set(ogm["sweep"]) == {"0.3", "0.8"} and ogm["selected"] in ("alpha=0.3", "alpha=0.8")
  assert len(ogm["values"]["fused"]) == 2 and set(ogm["diff"]) == {"fused", "gap", "probe_audio",
                                                                   "probe_video"}
  assert ogm["verdict"] in ("reproduced", "not reproduced", "reversed", "trade-off")
  runs = json.loads(out.with_suffix(".runs.json").read_text())["runs"]
  assert len(runs) == 6 and all(set(r["unimodal"]) == {"audio", "video"} for r in runs.values())
  assert out.with_suffix(".png").stat().st_size > 0 and "| ogm_ge |" in out.with_suffix(".md").read_text()
  assert reproduce.main(argv)["rows"]["ogm_ge"]["values"] == ogm["values"]   # nothing re-trained
  partial = tmp_path / "partial.runs.json"   # a protocol still running: finished rows only
  runs_file = json.loads(out.with_suffix(".runs.json").read_text())
  del runs_file["runs"][f"ogm_ge|{ogm['selected'].split('=')[1]}|1"]
  partial.write_text(json.dumps(runs_file))
  report = reproduce.main(argv[:-1] + [str(tmp_path / "partial"), "--report-only"])
  assert set(report["rows"]) == {"joint"}
  assert "Not finished yet (the protocol resumes): ogm_ge" in (tmp_path / "partial.md").read_text()
  with pytest.raises(SystemExit, match="holds 6 runs of another setup"):   # never overwritten
    reproduce.main(argv + ["train.num_epochs=2"])


def test_bootstrap_interval_and_verdicts_by_hand():
  reproduce = _reproduce()
  # Identical differences: every resample has the same mean.
  assert reproduce.bootstrap_interval([0.02] * 5) == pytest.approx([0.02, 0.02])
  # Two values 0 and 1: resample means are 0, 0.5, 1 with probability 1/4, 1/2, 1/4.
  assert reproduce.bootstrap_interval([0.0, 1.0]) == [0.0, 1.0]
  assert reproduce.verdict([0.01, 0.03], [-0.01, 0.02]) == "reproduced"
  assert reproduce.verdict([0.01, 0.03], [-0.03, -0.01]) == "trade-off"
  assert reproduce.verdict([-0.03, -0.01], [0.0, 0.1]) == "reversed"
  assert reproduce.verdict([-0.01, 0.03], [0.01, 0.02]) == "not reproduced"


def test_a_method_is_also_compared_with_its_own_baseline_by_hand():
  reproduce = _reproduce()

  def run(fused, audio):   # probe accuracies: image 0.9; audio is the weak modality
    return dict(fused=fused, probe={"image": 0.9, "audio": audio}, unimodal={"image": 0.9, "audio": audio},
                utilisation={"image": 0.5, "audio": 0.1})
  rows = {"joint": dict(runs={"0": run(0.80, 0.40), "1": run(0.82, 0.42)}),
          "joint_heads": dict(runs={"0": run(0.84, 0.50), "1": run(0.86, 0.52)}),
          "pcgrad": dict(runs={"0": run(0.84, 0.51), "1": run(0.86, 0.53)})}
  summary = reproduce.summarize(rows, [0, 1], {"pcgrad": "joint_heads", "joint_heads": None})
  pcgrad = summary["rows"]["pcgrad"]
  assert pcgrad["diff"]["probe_audio"]["mean"] == pytest.approx(0.11)      # vs joint
  assert pcgrad["verdict"] == "reproduced"
  assert pcgrad["diff_baseline"]["probe_audio"]["ci"] == pytest.approx([0.01, 0.01])   # vs heads
  assert pcgrad["diff_baseline"]["fused"]["ci"] == pytest.approx([0.0, 0.0], abs=1e-12)
  assert pcgrad["verdict_baseline"] == "reproduced" and pcgrad["baseline"] == "joint_heads"
  assert "joint_heads: +0.0 [+0.0, +0.0], +1.0 [+1.0, +1.0] (reproduced)" in reproduce.markdown(
      summary, [0, 1], "setup")


def test_accelerator_suite_runs_end_to_end_at_tiny_sizes(tmp_path):
  # The GPU command at CPU-sized shapes: every stage runs and the merged JSON names the device.
  # Its stages are the smoke tests of method_overhead (image encoders, bf16), step_overhead,
  # vlm_step and pipeline.
  done = subprocess.run(["bash", "benchmarks/accelerator.sh", "--tiny", "--out", str(tmp_path)],
                        capture_output=True, text=True, check=False,
                        env=dict(os.environ, PYTHON=sys.executable))
  assert done.returncode == 0, done.stderr[-3000:]
  merged = json.loads((tmp_path / "accelerator_cpu.json").read_text())
  assert merged["device"]["platform"] == "cpu"
  stages = merged["stages"]
  assert set(stages) == {"methods_f32", "methods_bf16", "objectives", "vlm_large", "pipeline"}
  assert all(s["status"] == "ok" and s["result"] is not None for s in stages.values())
  assert stages["methods_bf16"]["result"]["setup"]["dtype"] == "bfloat16"
  assert "ogm_ge" in stages["methods_f32"]["result"]["configs"][0]["variants"]
  for variant in ("plain", "structured/vmap", "overlap/unrolled", "separate"):
    assert variant in json.dumps(stages["objectives"]["result"])
  vlm = stages["vlm_large"]["result"]
  assert set(vlm["variants"]) == {"ce_bf16"} and vlm["setup"]["visual_tokens"] == 4
  record = vlm["variants"]["ce_bf16"]
  assert record["ms"] > 0 and record["compile_s"] > 0 and record["tflops_per_s"] > 0
  assert record["mfu"] is None   # no peak is known for a CPU
  assert stages["pipeline"]["result"]["settings"][-1]["workers"] == 1
