"""The package's shape: no import circle, no module over 400 lines, one registry per axis."""

import ast
import os

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PACKAGE = os.path.join(REPO, "tfrewind")


def _modules():
  out = {}
  for folder, _, files in os.walk(PACKAGE):
    for name in files:
      if name.endswith(".py"):
        path = os.path.join(folder, name)
        module = os.path.relpath(path, REPO)[:-3].replace(os.sep, ".")
        out[module[:-len(".__init__")] if module.endswith(".__init__") else module] = path
  return out


def _imports(modules):
  """{module: tfrewind modules it imports anywhere in its text, lazy imports included}."""
  edges = {}
  for module, path in modules.items():
    found = set()
    for node in ast.walk(ast.parse(open(path, encoding="utf-8").read())):
      if isinstance(node, ast.Import):
        found |= {a.name for a in node.names if a.name in modules}
      elif isinstance(node, ast.ImportFrom) and node.module:
        for a in node.names:
          if f"{node.module}.{a.name}" in modules:
            found.add(f"{node.module}.{a.name}")
          elif node.module in modules and node.module != "tfrewind":
            found.add(node.module)
    edges[module] = found - {module}
  return edges


def test_no_import_circle_in_the_package():
  edges = _imports(_modules())
  state, cycles = {}, []

  def visit(module, path):
    state[module] = "open"
    for other in sorted(edges[module]):
      if state.get(other) == "open":
        cycles.append(path[path.index(other):] + [other])
      elif other not in state:
        visit(other, path + [other])
    state[module] = "done"

  for module in sorted(edges):
    if module not in state:
      visit(module, [module])
  assert cycles == []


def test_no_module_over_400_lines():
  long = {m: n for m, p in _modules().items()
          for n in [sum(1 for _ in open(p, encoding="utf-8"))] if n > 400}
  assert long == {}


def test_the_suite_has_two_xdist_groups_only():
  """clitools' PROCESSES and SWEEPS: with a third group of two or more tests, xdist would
  deal both heavy groups to one worker (see clitools)."""
  import re  # pylint: disable=g-import-not-at-top
  names = set()
  for folder, _, files in os.walk(os.path.join(REPO, "tests")):
    for name in files:
      if name.endswith(".py"):
        names |= set(re.findall(r"xdist_group\(\"(\w+)\"\)",
                                open(os.path.join(folder, name), encoding="utf-8").read()))
  assert names == {"processes", "sweeps"}
