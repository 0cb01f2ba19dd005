"""Running the `tfrewind` command in-process or as a real subprocess, for tests."""

import glob
import json
import os
import random
import signal
import subprocess
import sys
import time

import pytest
import tensorflow as tf

from absl import flags

# Tests that start TensorFlow processes run in one xdist worker, one after another: several
# at once on 2 cores starve multi-worker training of CPU (pytest.ini: --dist loadgroup).
PROCESSES = pytest.mark.xdist_group("processes")
# Sweeps of many short processes, insensitive to load: their own group, so that they run beside
# the multi-worker tests rather than after them.
SWEEPS = pytest.mark.xdist_group("sweeps")
# These two groups only: xdist deals work units largest first (by test count), one to each
# worker, then a second unit to each. A third group of two or more tests would be dealt before
# SWEEPS and send SWEEPS to the worker already running PROCESSES: 12 minutes instead of 8.5
# (tests/test_architecture.py keeps to two).

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
QUICK = os.path.join(REPO, "flags", "quickstart.flags")
# The quickstart made smaller still: 40 dense steps, rewind to step 10.
SMALL = ["--dataset=synthetic", "--densities=0.2", "--seeds=1", "--train_steps=40it",
         "--epoch_steps=10it", "--lr_boundaries=20it,30it", "--rewind_step=10it",
         "--synthetic_size=400", "--batch_size=32", "--verbose=0"]


def cli(args, capsys=None):
  """Runs `tfrewind ARGS` in this process; returns (exit status, stdout, stderr)."""
  from tfrewind import cli as cli_lib  # pylint: disable=g-import-not-at-top
  flags.FLAGS.unparse_flags()
  try:
    cli_lib.run_main(["tfrewind"] + list(args))
    status = 0
  except SystemExit as e:
    status = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
  finally:
    flags.FLAGS.unparse_flags()
  out = capsys.readouterr() if capsys else None
  return status, (out.out if out else ""), (out.err if out else "")


def spawn(args, cwd, env_extra=None, **kwargs):
  """Starts the installed console script as a separate process."""
  env = {**os.environ, "PYTHONUNBUFFERED": "1", "TF_CPP_MIN_LOG_LEVEL": "3", **(env_extra or {})}
  exe = os.path.join(os.path.dirname(sys.executable), "tfrewind")
  cmd = [exe] if os.path.exists(exe) else [sys.executable, "-m", "tfrewind"]
  return subprocess.Popen(cmd + list(args), cwd=cwd, env=env, stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True, **kwargs)


def ledger(root):
  """{run folder name: [trained.jsonl lines]} for every run under root."""
  out = {}
  for path in glob.glob(os.path.join(root, "*", "trained.jsonl")):
    with open(path, encoding="utf-8") as f:
      out[os.path.basename(os.path.dirname(path))] = [json.loads(l) for l in f if l.strip()]
  return out


def results(root):
  out = {}
  for path in glob.glob(os.path.join(root, "*", "result.json")):
    with open(path, encoding="utf-8") as f:
      out[os.path.basename(os.path.dirname(path))] = json.load(f)
  return out


def _state(root):
  """Where a sweep stands, to say where a kill landed."""
  done = len(glob.glob(os.path.join(root, "*", "result.json")))
  if glob.glob(os.path.join(root, "*", "*.tmp-*")) or glob.glob(os.path.join(root, "*",
                                                                            "final.tmp-*")):
    return f"writing results ({done} runs done)"
  if not glob.glob(os.path.join(root, "dense_*", "result.json")):
    return "dense training"
  return f"retraining ({done} runs done)"


def kill_sweep(cwd, kills, seed, args, low=4.0, high=14.0, root=None):
  """Starts the sweep and SIGKILLs it at random moments until `kills` kills have hit a live
  process (or the sweep finished first), then lets it finish. Returns where each kill landed."""
  rng = random.Random(seed)
  landed = []
  while len(landed) < kills:
    proc = spawn(args, cwd=cwd)
    time.sleep(rng.uniform(low, high))  # TF import alone takes ~4 s
    if proc.poll() is not None:
      break  # the sweep finished before this kill
    where = _state(root) if root else "running"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    landed.append(where)
  final = spawn(args, cwd=cwd)
  out, _ = final.communicate(timeout=600)
  assert final.returncode == 0, out
  return landed


def check_every_run_finished_exactly_once(root, expected_runs):
  res = results(root)
  assert len(res) == expected_runs
  for name, lines in ledger(root).items():
    finished = [l for l in lines if l["phase"] == "finished"]
    assert len(finished) == 1, name
    trained_to = max(l["end"] for l in lines if l["phase"] != "finished")
    assert trained_to == res[name]["steps"], name
  for path in glob.glob(os.path.join(root, "*", "*.json")):
    with open(path, encoding="utf-8") as f:
      json.load(f)  # no torn JSON anywhere
  assert not glob.glob(os.path.join(root, "*", "*.tmp-*"))
  for ckpt in glob.glob(os.path.join(root, "*", "final", "ckpt.index")):
    tf.train.load_checkpoint(ckpt[:-len(".index")])  # readable, CRC-checked
