"""The code stays readable: no function in mmbal/ over 80 lines of code (docstrings, comments
and blank lines aside; nested functions count towards the function that holds them), and the
training loop names no method."""
import ast
import pathlib

import mmbal.methods

ROOT = pathlib.Path(__file__).resolve().parent.parent
LIMIT = 80


def _code_lines(node, source_lines) -> int:
  body = node.body
  if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant) \
      and isinstance(body[0].value.value, str):
    body = body[1:]
  docstrings = {n.value.lineno for n in ast.walk(node) if isinstance(n, ast.Expr)
                and isinstance(n.value, ast.Constant) and isinstance(n.value.value, str)}
  lines = set()
  for statement in body:
    for number in range(statement.lineno, statement.end_lineno + 1):
      text = source_lines[number - 1].strip()
      if text and not text.startswith("#") and number not in docstrings:
        lines.add(number)
  return len(lines)


def test_no_function_over_80_lines_of_code():
  long = []
  for path in sorted((ROOT / "mmbal").rglob("*.py")):
    source = path.read_text()
    for node in ast.walk(ast.parse(source)):
      if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
        count = _code_lines(node, source.splitlines())
        if count > LIMIT:
          long.append(f"{path.relative_to(ROOT)}:{node.lineno} {node.name}: {count} lines")
  assert not long, "functions over 80 lines of code:\n" + "\n".join(long)


def test_the_training_loop_names_no_method():
  source = (ROOT / "mmbal" / "train" / "loop.py").read_text()
  strings = {n.value for n in ast.walk(ast.parse(source)) if isinstance(n, ast.Constant)}
  named = sorted(set(mmbal.methods.REGISTRY) & strings)
  assert not named, f"mmbal/train/loop.py names methods {named}: that belongs in mmbal/methods/"
