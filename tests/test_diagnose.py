"""``mmbal diagnose`` end to end on a tiny real run: while it runs and when it has finished."""
import json

import matplotlib.image
import pytest

from mmbal.train import apply_overrides, default_config
from mmbal.train.cli import main
from mmbal.train.loop import train_and_evaluate

STEPS = 12


def _config(tfds_dir, *overrides):
  return apply_overrides(default_config(), [
      f"data.data_dir={tfds_dir}", "log.progress=False", f"train.num_steps={STEPS}",
      "train.batch_size=32", "train.eval_every_steps=4", "train.log_every_steps=4",
      "eval.batch_size=64", "model.hidden_dim=32", "model.feature_dim=16",
      "eval.linear_probe=False", *overrides])


def test_report_while_running_and_when_finished(tfds_dir, tmp_path, capsys):
  """A run stopped at step 6 (evaluated at step 4) is diagnosed, resumed to the end, and
  diagnosed again (one test: the runs are the expensive part)."""
  workdir = tmp_path / "run"
  stopped = train_and_evaluate(_config(tfds_dir, "train.stop_after_steps=6"), workdir)
  assert stopped.results is None
  main(["diagnose", "--workdir", str(workdir), "--split", "validation",
        "--out", str(tmp_path / "while_running")])
  _check_running(workdir, tmp_path / "while_running")
  finished = train_and_evaluate(_config(tfds_dir), workdir)
  capsys.readouterr()
  out = main(["diagnose", "--workdir", str(workdir)])   # default: test split, fill=present
  assert f"report: {workdir / 'diagnosis' / 'report.md'}" in capsys.readouterr().out
  _check_finished(workdir, finished.results, out)
  main(["diagnose", "--workdir", str(workdir), "--fill", "zeros", "--out", str(tmp_path / "zeros")])
  diag, report = _read(tmp_path / "zeros")
  assert diag["fill"] == "zeros" and "`zeros`" in report
  assert sum(diag["shapley"]["accuracy"].values()) == pytest.approx(
      diag["accuracy"] - diag["empty"]["accuracy"], abs=1e-9)


def _read(directory):
  return (json.loads((directory / "diagnosis.json").read_text()),
          (directory / "report.md").read_text())


def _check_finished(workdir, results, out):
  diag, report = _read(workdir / "diagnosis")
  assert diag["run"]["status"] == "finished" and diag["run"]["step"] == STEPS
  assert diag["modalities"] == ["pix", "fou", "mor"] and diag["fill"] == "present"
  test = results["test"]
  assert diag["count"] == test["count"] == 500
  # The full variant is the trainer's fused accuracy; 'present' removal is its `without` rows.
  assert diag["accuracy"] == pytest.approx(test["fused"]["accuracy"], abs=1e-12)
  assert diag["loss"] == pytest.approx(test["fused"]["loss"], rel=1e-5)
  for m in diag["modalities"]:
    assert diag["dependence"][m]["removed"]["accuracy"] == pytest.approx(
        test["without"][m]["accuracy"], abs=1e-12)
    assert diag["utilisation"][m] == pytest.approx(test["utilisation"][m], abs=1e-9)
  for key in ("accuracy", "loss"):   # efficiency: sum_m phi_m = v(all) - v(empty)
    assert sum(diag["shapley"][key].values()) == pytest.approx(diag[key] - diag["empty"][key], abs=1e-6)
  # No modality: zero features, one constant class; the test split has 50 of each of 10 classes.
  assert diag["empty"]["accuracy"] == pytest.approx(0.1, abs=1e-12)
  shares = diag["dominance"]["share"]
  assert sum(shares.values()) + diag["dominance"]["undecided"] == pytest.approx(1.0)
  assert out == {k: v for k, v in diag.items() if k != "run"}
  # The page shows the same numbers.
  most = max(diag["modalities"], key=lambda m: diag["shapley"]["accuracy"][m])
  assert f"The model leans most on **{most}**" in report
  assert f"from {100 * diag['accuracy']:.2f} %" in report
  for m in diag["modalities"]:
    dep = diag["dependence"][m]
    assert (f"| {m} | {100 * dep['removed']['accuracy']:.2f} % | "
            f"{100 * dep['removed']['change_rate']:.2f} % |") in report
    assert f"| {m} | {100 * diag['shapley']['accuracy'][m]:.2f} |" in report
  for name in ("curves.png", "shapley.png", "dependence.png"):
    path = workdir / "diagnosis" / name
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and f"]({name})" in report
    image = matplotlib.image.imread(path)
    assert image.ndim == 3 and image.shape[0] > 200 and image.shape[1] > 400
    assert image[..., :3].std() > 0.05   # not blank


def _check_running(workdir, report_dir):
  diag, report = _read(report_dir)
  assert "step 6 of 12" in diag["run"]["status"] and diag["run"]["step"] == 6
  assert diag["run"]["parameters"] == "best on validation so far"
  # The best params so far are step 4's: its validation record is the full variant.
  records = [json.loads(l) for l in (workdir / "metrics.jsonl").read_text().splitlines()]
  (val,) = [r for r in records if r["split"] == "validation"]
  assert val["step"] == 4 and diag["count"] == val["count"] == 225
  assert diag["accuracy"] == pytest.approx(val["fused"]["accuracy"], abs=1e-12)
  for m in diag["modalities"]:
    assert diag["dependence"][m]["removed"]["accuracy"] == pytest.approx(
        val["without"][m]["accuracy"], abs=1e-12)
  assert "| split | validation |" in report and "step 6 of 12" in report
  assert (report_dir / "curves.png").stat().st_size > 1000


def test_clear_errors_for_workdirs_that_are_not_runs(tmp_path):
  with pytest.raises(SystemExit, match="no such directory"):
    main(["diagnose", "--workdir", str(tmp_path / "missing")])
  with pytest.raises(SystemExit, match="no config.json"):
    main(["diagnose", "--workdir", str(tmp_path)])
  (tmp_path / "config.json").write_text(default_config().to_json())
  with pytest.raises(SystemExit, match="no checkpoint yet"):
    main(["diagnose", "--workdir", str(tmp_path)])
