"""The Python examples of the README and of the docs' "own code" page run as written."""
import pathlib
import re

import pytest

ROOT = pathlib.Path(__file__).parent.parent


@pytest.mark.parametrize("page", ["README.md", "docs/your-own-code.md", "docs/mllm_bias.md"])
def test_python_blocks_run(page, capsys):
  text = (ROOT / page).read_text()
  blocks = re.findall(r"```python\n(.*?)```", text, re.S)
  assert blocks
  for block in blocks:
    exec(compile(block, page, "exec"), {})   # pylint: disable=exec-used
  if page == "docs/your-own-code.md":   # the printed results match the comments
    assert capsys.readouterr().out.split("\n")[:4] == ["['audio', 'video']", "(3,)",
                                                       "audio shared", "['audio', 'video']"]


def test_the_readme_stays_a_five_minute_read():
  # What a newcomer needs (issue 21); the reference lives in docs/, once.
  text = (ROOT / "README.md").read_text()
  assert len(text.encode()) < 16_000 and text.count("\n") < 260, "move detail into docs/"
