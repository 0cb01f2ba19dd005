"""README's promises: its two commands, its callback example run as pasted."""

import contextlib
import io
import os
import re

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _readme():
  with open(os.path.join(REPO, "README.md"), encoding="utf-8") as f:
    return f.read()


def test_readme_opens_with_the_quickstart_and_test_commands():
  first_block = re.search(r"```bash\n(.*?)```", _readme(), re.S).group(1).splitlines()
  assert first_block[0].startswith("pip install -e . && tfrewind run --flagfile=flags/quickstart.flags")
  assert first_block[1].startswith("pip install -e '.[test]' && pytest")
  with open(os.path.join(REPO, ".ci", "run"), encoding="utf-8") as f:
    assert "pip install -e '.[test]' && pytest\n" in f.read()
  for name in re.findall(r"flags/([\w/]+\.flags)", _readme()):
    assert os.path.exists(os.path.join(REPO, "flags", name)), name


@pytest.mark.slow
def test_readme_callback_example_prunes_to_the_asked_density_with_each_method(tmp_path):
  code = re.search(r"## The callback in your own training\n+```python\n(.*?)```", _readme(),
                   re.S).group(1)
  out = io.StringIO()
  cwd = os.getcwd()
  os.chdir(tmp_path)
  try:
    with contextlib.redirect_stdout(out):
      exec(compile(code, "README.md", "exec"), {"__name__": "__readme__"})  # pylint: disable=exec-used
  finally:
    os.chdir(cwd)
  lines = out.getvalue().split()
  assert lines == ["finetune", "0.512", "weight_rewind", "0.512", "lr_rewind", "0.512"]
  assert os.path.isdir(tmp_path / "logs" / "lr_rewind")


def test_readme_architecture_section_lists_exactly_the_modules_of_the_tree():
  section = re.search(r"## Architecture\n(.*?)\n## ", _readme(), re.S).group(1)
  listed = set()
  for cell in re.findall(r"^\| (`tfrewind/[^|]*) \|", section, re.M):
    names = re.findall(r"`([^`]+)`", cell)
    folder = os.path.dirname(names[0])
    for name in names:
      path = name if "/" in name else os.path.join(folder, name)
      if path.endswith("/"):  # a package: all its modules
        listed |= {os.path.join(path, f) for f in os.listdir(os.path.join(REPO, path))
                   if f.endswith(".py") and f != "__init__.py"}
      else:
        listed.add(path)
  tree = set()
  for folder, _, files in os.walk(os.path.join(REPO, "tfrewind")):
    for f in files:
      if f.endswith(".py") and f != "__init__.py":
        tree.add(os.path.relpath(os.path.join(folder, f), REPO))
  assert listed == tree, (sorted(tree - listed), sorted(listed - tree))
