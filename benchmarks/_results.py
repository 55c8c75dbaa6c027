"""Writing benchmark results: a partial result file is never left half-written."""
from __future__ import annotations

import json
import pathlib


def write_json_atomic(path: pathlib.Path, data: dict):
  """Writes ``data`` as JSON to ``path`` via a temporary file and a rename, so an
  interrupted write leaves the previous file intact (the benchmarks resume from it)."""
  path.parent.mkdir(parents=True, exist_ok=True)
  tmp = path.with_suffix(".tmp")
  tmp.write_text(json.dumps(data, indent=2))
  tmp.replace(path)
