"""Builds ``notebooks/*.ipynb`` from their readable sources ``notebooks/src/*.py``.

The sources are Jupytext "percent" scripts: ``# %%`` starts a code cell,
``# %% [markdown]`` a Markdown cell (its lines start with ``# ``), and
``# %% tags=["parameters"]`` marks the parameters cell. Magics are written commented
out, ``# %pip ...``, so a source stays valid Python. The builder adds, in one place for
every notebook, the "Open in Colab" badge under the title and the install cell after
the parameters cell. Notebooks are written without outputs.

    python notebooks/build.py            # rewrite the .ipynb files
    python notebooks/build.py --check    # exit 1 if any .ipynb differs from its source
"""
from __future__ import annotations

import json
import pathlib
import re
import sys

import nbformat

REPOSITORY = "mmbal/mmbal"   # github.com/<REPOSITORY>: the install cell and the Colab badges
HERE = pathlib.Path(__file__).resolve().parent
SOURCES = HERE / "src"

_MARKER = re.compile(r"^# %%(?P<markdown> \[markdown\])?(?: tags=(?P<tags>\[.*\]))?\s*$")
_MAGIC = re.compile(r"^(\s*)# (%\S.*)$")


def colab_url(name: str) -> str:
  return f"https://colab.research.google.com/github/{REPOSITORY}/blob/main/notebooks/{name}.ipynb"


def badge(name: str) -> str:
  return (f"[![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)]"
          f"({colab_url(name)})")


INSTALL_CELL = (
    "# Installs mmbal from its repository (skipped when INSTALL is False, e.g. in a checkout).\n"
    "# On a GPU runtime, if JAX then reports no GPU: %pip install -q -U \"jax[cuda12]\"\n"
    "if INSTALL:\n"
    f"    %pip install -q \"git+https://github.com/{REPOSITORY}\"")


def parse(text: str) -> list[dict]:
  """``[{"kind": "code" | "markdown", "tags": [...], "source": str}]`` of a percent script."""
  cells, current = [], None
  for line in text.splitlines():
    marker = _MARKER.match(line)
    if marker:
      current = dict(kind="markdown" if marker["markdown"] else "code",
                     tags=json.loads(marker["tags"]) if marker["tags"] else [], lines=[])
      cells.append(current)
    elif current is None:
      if line.strip():
        raise ValueError(f"text before the first '# %%' marker: {line!r}")
    elif current["kind"] == "markdown":
      if line and line != "#" and not line.startswith("# "):
        raise ValueError(f"markdown line without '# ': {line!r}")
      current["lines"].append(line[2:])
    else:
      magic = _MAGIC.match(line)
      current["lines"].append(magic[1] + magic[2] if magic else line)
  for cell in cells:
    while cell["lines"] and not cell["lines"][-1].strip():
      cell["lines"].pop()
    cell["source"] = "\n".join(cell.pop("lines"))
  return [c for c in cells if c["source"]]


def build(source: pathlib.Path) -> nbformat.NotebookNode:
  """The notebook of one source file (deterministic: same source, same bytes)."""
  name = source.stem
  cells = parse(source.read_text())
  if not cells or cells[0]["kind"] != "markdown" or not cells[0]["source"].startswith("# "):
    raise ValueError(f"{source}: the first cell must be Markdown starting with '# <title>'")
  params = [i for i, c in enumerate(cells) if "parameters" in c["tags"]]
  if len(params) != 1:
    raise ValueError(f"{source}: expected one cell tagged parameters, found {len(params)}")
  title, _, rest = cells[0]["source"].partition("\n")
  cells[0]["source"] = f"{title}\n\n{badge(name)}\n{rest}"
  cells.insert(params[0] + 1, dict(kind="code", tags=["install"], source=INSTALL_CELL))
  nb = nbformat.v4.new_notebook()
  nb.metadata = {
      "kernelspec": {"display_name": "Python 3", "language": "python", "name": "python3"},
      "language_info": {"name": "python"},
      "colab": {"provenance": []},
  }
  for i, cell in enumerate(cells):
    make = nbformat.v4.new_markdown_cell if cell["kind"] == "markdown" else nbformat.v4.new_code_cell
    nb.cells.append(make(cell["source"], id=f"{name[:2]}-{i:02d}",
                         metadata={"tags": cell["tags"]} if cell["tags"] else {}))
  nbformat.validate(nb)
  return nb


def render(nb: nbformat.NotebookNode) -> str:
  return nbformat.writes(nb) + "\n"


def targets() -> dict[pathlib.Path, str]:
  """``{notebook path: its expected text}`` for every source."""
  return {HERE / f"{src.stem}.ipynb": render(build(src)) for src in sorted(SOURCES.glob("*.py"))}


def main(argv=None) -> int:
  argv = sys.argv[1:] if argv is None else argv
  check = argv == ["--check"]
  if argv and not check:
    sys.exit("usage: python notebooks/build.py [--check]")
  stale = []
  for path, text in targets().items():
    if path.is_file() and json.loads(path.read_text()) == json.loads(text):
      continue
    stale.append(path.name)
    if not check:
      path.write_text(text)
  if check and stale:
    print(f"out of date with notebooks/src (run python notebooks/build.py): {', '.join(stale)}")
    return 1
  print(("up to date: " if check or not stale else "wrote: ") + ", ".join(stale or ["all"]))
  return 0


if __name__ == "__main__":
  sys.exit(main())
