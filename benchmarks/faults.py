"""Fault injection: does every fault end in a working run or a clear error, never in exit 0
with garbage in ``results.json``?

    PYTHONPATH=. python benchmarks/faults.py          # about 10 minutes on 2 CPU cores

Runs the ``mmbal`` CLI as a user would (a fresh process per run, tiny mfeat model) against
damaged checkpoints, non-finite inputs and settings, changed configs on resume, two trainers
on one workdir, damaged logs and out-of-range fields. Each case expects either ``ok`` (exit
0 and a ``results.json`` equal to a clean run's) or ``error`` (exit != 0 with an ``mmbal:
error:`` line and no new ``results.json``). Outcomes: ``as expected``, ``garbage`` (exit 0
with results that differ from a clean run's, or non-finite), ``traceback`` (exit != 0
without a clear error), ``unexpected``. Writes ``benchmarks/results/faults.{json,md}``;
a rerun skips the cases already recorded (``--fresh`` starts over).
"""
from __future__ import annotations

import argparse
import json
import os
import pathlib
import shutil
import subprocess
import sys
import tempfile
import time

import numpy as np

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
from _results import write_json_atomic  # noqa: E402

ROOT = pathlib.Path(__file__).resolve().parent.parent
TINY = ["data.modalities=pix,fou", "log.progress=False", "train.num_steps=24",
        "train.batch_size=32", "train.eval_every_steps=8", "train.log_every_steps=4",
        "train.keep_checkpoints=3", "eval.batch_size=64", "eval.linear_probe=False",
        "model.hidden_dim=16", "model.feature_dim=8"]


def finished(proc: subprocess.Popen) -> subprocess.CompletedProcess:
  stdout, stderr = proc.communicate()
  return subprocess.CompletedProcess(proc.args, proc.returncode, stdout, stderr)


class Lab:
  """Runs the CLI in a scratch folder; keeps one clean run and one stopped run to copy."""

  def __init__(self, scratch: pathlib.Path):
    self.scratch = scratch
    self.data_dir = scratch / "tfds"
    self.clean = scratch / "clean"
    self.stopped = scratch / "stopped"

  def train(self, workdir, *overrides, wait=True):
    cmd = [sys.executable, "-m", "mmbal.train.cli", "train", "--workdir", str(workdir),
           f"data.data_dir={self.data_dir}", *TINY, *overrides]
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    return finished(proc) if wait else proc

  def prepare(self):
    if not (self.clean / "results.json").exists():
      self.train(self.clean)
    if not (self.stopped / "checkpoints").exists():
      self.train(self.stopped, "train.stop_after_steps=16")   # checkpoints at 8 and 16

  def copy_of_stopped(self, name) -> pathlib.Path:
    target = self.scratch / name
    shutil.rmtree(target, ignore_errors=True)
    shutil.copytree(self.stopped, target)
    (target / ".lock").unlink(missing_ok=True)
    return target


# The damage, shared with tests/test_faults.py.


def largest_array_file(step_dir: pathlib.Path) -> pathlib.Path:
  """The largest file of a checkpoint's saved arrays (orbax's OCDBT data files)."""
  return max((p for p in (step_dir / "state").rglob("d/*") if p.is_file()),
             key=lambda p: p.stat().st_size)


def flip_bit(path: pathlib.Path, fraction: float):
  """Flips one bit of ``path``, at ``fraction`` of its length."""
  data = bytearray(path.read_bytes())
  data[int(fraction * (len(data) - 1))] ^= 0x10
  path.write_bytes(bytes(data))


def truncate(step_dir: pathlib.Path, size: int):
  """Cuts the checkpoint's largest array file to its first ``size`` bytes."""
  path = largest_array_file(step_dir)
  path.write_bytes(path.read_bytes()[:size])


def other_arrays(step_dir: pathlib.Path, donor_dir: pathlib.Path):
  """Silent damage in a valid format: another checkpoint's arrays under this one's name."""
  shutil.rmtree(step_dir / "state")
  shutil.copytree(donor_dir / "state", step_dir / "state")


def _arrays_file(folder: pathlib.Path, nan_in: str | None) -> pathlib.Path:
  """A generated two-view `.npz` (never real data), NaN in 2% of one view's rows if asked."""
  rng = np.random.default_rng(0)
  labels = rng.integers(0, 4, 400)
  views = {"a": rng.normal(size=(400, 6)) + labels[:, None], "b": rng.normal(size=(400, 5))}
  if nan_in:
    views[nan_in][::50, 0] = np.nan
  folder.mkdir(parents=True, exist_ok=True)
  path = folder / f"views_{nan_in or 'clean'}.npz"
  np.savez(path, label=labels, **views)
  return path


# ----------------------------------------------------------------------------- the cases


def checkpoint_cases(lab: Lab):
  """(name, expected, run) for damaged checkpoints: the resumed run must end as the clean one."""
  def damaged(name, damage):
    def run():
      workdir = lab.copy_of_stopped(name)
      damage(workdir / "checkpoints")
      return workdir, lab.train(workdir)
    return name, "ok", run

  def everything(ckpt):
    for step in ("8", "16"):
      truncate(ckpt / step, 40)

  cases = [damaged(f"bit flip at {f:.0%} of the latest checkpoint's largest data file",
                   lambda c, f=f: flip_bit(largest_array_file(c / "16"), f))
           for f in (0.1, 0.3, 0.5, 0.7, 0.95)]
  cases += [
      damaged("latest checkpoint holds another step's arrays (valid format)",
              lambda c: other_arrays(c / "16", c / "8")),
      damaged("truncated data file", lambda c: largest_array_file(c / "16").write_bytes(b"x" * 9)),
      damaged("empty step directory", lambda c: (shutil.rmtree(c / "16"), (c / "16").mkdir())),
      damaged("missing _CHECKPOINT_METADATA", lambda c: (c / "16" / "_CHECKPOINT_METADATA").unlink()),
      damaged("missing state/_METADATA", lambda c: (c / "16" / "state" / "_METADATA").unlink()),
      damaged("missing OCDBT manifest", lambda c: (c / "16" / "state" / "manifest.ocdbt").unlink()),
  ]
  name = "every checkpoint damaged"
  cases.append((name, "error", lambda: (lambda w: (everything(w / "checkpoints"), (w, lab.train(w)))[1])(
      lab.copy_of_stopped(name))))
  return cases


def input_cases(lab: Lab):
  def train(name, *overrides):
    def run():
      workdir = lab.scratch / name.replace(" ", "_")
      shutil.rmtree(workdir, ignore_errors=True)
      return workdir, lab.train(workdir, *overrides)
    return run

  arrays = lab.scratch / "arrays"
  cases = [(f"NaN in 2% of view {v}'s examples", "error",
            train(f"nan_{v}", "data.name=arrays", f"data.path={_arrays_file(arrays, v)}",
                  "data.modalities=a,b"))
           for v in ("a", "b")]
  ranges = ["optimizer.learning_rate=inf", "method.name=miles method.miles.mu=1e9",
            "method.name=agm method.agm.alpha=1e9", "method.name=sam method.sam.rho=1e9",
            "optimizer.grad_clip_norm=-1", "train.num_steps=-5", "train.keep_checkpoints=0",
            "train.stop_after_steps=-1", "optimizer.name=sgd optimizer.momentum=5",
            "train.log_every_steps=0", "train.batch_size=inf", "seed=1e400", "data.modalities=5",
            "data.val_fraction=0.999"]
  cases += [(f"out of range: {r}", "error", train(f"range_{i}", *r.split())) for i, r in enumerate(ranges)]
  return cases


def workdir_cases(lab: Lab):
  def resumed(name, *overrides, prepare=None, expected="error"):
    def run():
      workdir = lab.copy_of_stopped(name.replace(" ", "_"))
      if prepare:
        prepare(workdir)
      return workdir, lab.train(workdir, *overrides)
    return name, expected, run

  def concurrent():
    workdir = lab.scratch / "concurrent"
    shutil.rmtree(workdir, ignore_errors=True)
    first = lab.train(workdir, wait=False)
    deadline = time.time() + 120
    while time.time() < deadline and not (workdir / ".lock").exists():
      time.sleep(0.1)
    second = lab.train(workdir)
    first = finished(first)
    return workdir, second if first.returncode == 0 else first

  cases = [resumed(f"resume with {o}", o) for o in (
      "optimizer.learning_rate=0.01", "seed=3", "train.num_steps=40", "train.batch_size=16")]
  cases += [
      resumed("resume with train.num_steps=40 allowed", "train.num_steps=40",
              "train.allow_changed=train.num_steps", expected="ok_longer"),
      resumed("partial last line in metrics.jsonl", expected="ok",
              prepare=lambda w: (w / "metrics.jsonl").open("a").write('{"step": 17, "lo')),
      resumed("metrics.jsonl deleted", expected="ok",
              prepare=lambda w: (w / "metrics.jsonl").unlink()),
      ("a second trainer on a running workdir", "error", concurrent),
  ]

  def read_only():
    workdir = lab.copy_of_stopped("read_only")
    for p in [workdir, *workdir.rglob("*")]:
      p.chmod(p.stat().st_mode & ~0o222)
    try:
      return workdir, lab.train(workdir)
    finally:
      for p in [workdir, *workdir.rglob("*")]:
        p.chmod(p.stat().st_mode | 0o200)
  if os.geteuid() != 0:   # root ignores permissions
    cases.append(("read-only workdir", "error", read_only))
  return cases


# ----------------------------------------------------------------------------- judging


def judge(lab: Lab, expected: str, workdir: pathlib.Path, proc) -> dict:
  results = workdir / "results.json"
  clean = json.loads((lab.clean / "results.json").read_text())["test"]
  error_line = next((l for l in proc.stderr.splitlines() if l.startswith("mmbal: error:")), "")
  record = dict(expected=expected, exit=proc.returncode, error=error_line[14:][:300])
  if proc.returncode == 0:
    got = json.loads(results.read_text()) if results.exists() else None
    finite = got is not None and "NaN" not in results.read_text()
    if expected == "ok_longer":   # a longer run: finite, better than chance, not the clean one's
      good = finite and got["test"]["fused"]["accuracy"] > 0.2
    else:
      good = finite and got["test"] == clean
    record["outcome"] = ("as expected" if expected.startswith("ok") and good else
                         "garbage" if not good else "unexpected")
  else:
    record["outcome"] = ("as expected" if expected == "error" and error_line else
                         "traceback" if not error_line else "unexpected")
    if not error_line:
      record["error"] = proc.stderr.strip().splitlines()[-1][:300] if proc.stderr.strip() else ""
  record["warnings"] = [l[:300] for l in proc.stderr.splitlines()
                        if "skipped damaged" in l or "is missing" in l or "not JSON" in l]
  return record


def markdown(records: dict) -> str:
  counts = {}
  for r in records.values():
    counts[r["outcome"]] = counts.get(r["outcome"], 0) + 1
  lines = [f"{len(records)} faults: " + ", ".join(f"{n} {k}" for k, n in sorted(counts.items())),
           "", "| fault | expected | exit | outcome | message |", "|---|---|---|---|---|"]
  for name, r in records.items():
    message = (r["error"] or "; ".join(r["warnings"]) or "").replace("|", "/")
    lines.append(f"| {name} | {r['expected']} | {r['exit']} | {r['outcome']} | {message[:160]} |")
  return "\n".join(lines) + "\n"


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "faults"))
  parser.add_argument("--scratch", default=str(pathlib.Path(tempfile.gettempdir()) / "mmbal_faults"))
  parser.add_argument("--fresh", action="store_true", help="forget the recorded cases")
  parser.add_argument("-k", default="", help="only the cases whose name contains this")
  args = parser.parse_args(argv)
  out, scratch = pathlib.Path(args.out), pathlib.Path(args.scratch)
  if args.fresh:
    shutil.rmtree(scratch, ignore_errors=True)
  scratch.mkdir(parents=True, exist_ok=True)
  records = {} if args.fresh or not out.with_suffix(".json").exists() else json.loads(
      out.with_suffix(".json").read_text())["cases"]
  lab = Lab(scratch)
  lab.prepare()
  cases = checkpoint_cases(lab) + input_cases(lab) + workdir_cases(lab)
  todo = [c for c in cases if c[0] not in records and args.k in c[0]]
  for i, (name, expected, run) in enumerate(todo, 1):
    t0 = time.time()
    workdir, proc = run()
    records[name] = judge(lab, expected, workdir, proc)
    write_json_atomic(out.with_suffix(".json"), dict(cases=records))
    print(f"[{i}/{len(todo)}] {name}: exit {proc.returncode}, {records[name]['outcome']} "
          f"({time.time() - t0:.0f} s)", flush=True)
  table = markdown(records)
  out.with_suffix(".md").write_text(table)
  print(table)
  return records


if __name__ == "__main__":
  main()
