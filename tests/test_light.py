"""Light commands start without TensorFlow: checked in a fresh interpreter with -X importtime."""

import os
import subprocess
import sys

import pytest

from clitools import QUICK, REPO


def _imported_modules(args, cwd):
  env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
  proc = subprocess.run([sys.executable, "-X", "importtime", "-m", "tfrewind", *args], cwd=cwd,
                        env=env, capture_output=True, text=True, timeout=300)
  assert proc.returncode == 0, proc.stderr[-2000:]
  names = [line.split("|")[-1].strip() for line in proc.stderr.splitlines()
           if line.startswith("import time:") and "|" in line]
  assert len(names) > 50, proc.stderr[-2000:]  # importtime really reported
  return proc.stdout, names


@pytest.mark.slow
@pytest.mark.parametrize("args", [
    ["report", "--reference_only", "--out=OUT"],
    ["sweep", f"--flagfile={QUICK}", "--print", "--seeds=1,2"],
    ["run", "--help"],
])
def test_light_commands_import_no_tensorflow(args, tmp_path):
  args = [a.replace("OUT", str(tmp_path / "out")) for a in args]
  out, names = _imported_modules(args, cwd=tmp_path)
  heavy = [n for n in names if n.split(".")[0] in ("tensorflow", "tf_keras", "keras",
                                                    "tensorflow_model_optimization")]
  assert not heavy, heavy[:5]
  if args[0] == "sweep":
    assert out.count("tfrewind run") == 18  # 3 methods x 3 densities x 2 seeds


def test_pure_modules_import_no_tensorflow():
  code = ("import sys, tfrewind.plan, tfrewind.hparams, tfrewind.sweep, tfrewind.store, "
          "tfrewind.report.aggregate, tfrewind.names; "
          "print(sorted(m for m in sys.modules if m.split('.')[0] in "
          "('tensorflow', 'tf_keras')))")
  out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True,
                       timeout=120)
  assert out.returncode == 0, out.stderr
  assert out.stdout.strip() == "[]"
