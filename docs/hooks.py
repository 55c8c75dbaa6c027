"""MkDocs hook: docstrings introduce literal blocks reStructuredText-style (``text::``);
Markdown renders the block as code already, so the paragraph should end in one colon."""
import re

_RST_LITERAL = re.compile(r"::</p>")


def on_post_page(output, **kwargs):
  return _RST_LITERAL.sub(":</p>", output)
