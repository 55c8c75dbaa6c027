"""The README's Python examples run as written."""
import pathlib
import re


def test_readme_python_blocks_run():
  text = (pathlib.Path(__file__).parent.parent / "README.md").read_text()
  blocks = re.findall(r"```python\n(.*?)```", text, re.S)
  assert blocks
  for block in blocks:
    exec(compile(block, "README.md", "exec"), {})
