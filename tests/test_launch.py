"""A sweep that pays once: shared fine-tuning prefixes, the local executor, Slurm's stages."""

import glob
import json
import os
import shutil
import subprocess
import sys
import time

import numpy as np
import pytest
import tensorflow as tf

from clitools import (PROCESSES, QUICK, SMALL, SWEEPS, check_every_run_finished_exactly_once,
                      cli, results)

HERE = os.path.dirname(os.path.abspath(__file__))
# Fine-tuning at budgets of one epoch (10), an epoch and a half (15, ending inside an epoch)
# and three epochs (30): the first two are prefixes of the third.
BUDGETS = ["run", f"--flagfile={QUICK}", *SMALL, "--methods=finetune",
           "--retrains=10it,15it,30it", "--deterministic"]


def _run(args, cwd, at=None, signal="KILL"):
  env = {**os.environ, "PYTHONUNBUFFERED": "1", "TF_CPP_MIN_LOG_LEVEL": "3",
         "PYTHONPATH": HERE + os.pathsep + os.environ.get("PYTHONPATH", "")}
  if at is not None:
    env.update(SIGNAL_AT=str(at), SIGNAL=signal)
  proc = subprocess.run([sys.executable, os.path.join(HERE, "sigterm_at.py"), *args], cwd=cwd,
                        env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                        timeout=400, check=False)
  return proc.returncode, proc.stdout


def _final_weights(run_dir):
  """Every variable of the final checkpoint; not the bookkeeping (save_counter, and the object
  graph, which records the order objects were first tracked in)."""
  reader = tf.train.load_checkpoint(os.path.join(run_dir, "final", "ckpt"))
  return {n: np.asarray(reader.get_tensor(n)).tobytes()
          for n in reader.get_variable_to_shape_map()
          if not n.startswith(("save_counter", "_CHECKPOINTABLE_OBJECT_GRAPH"))}


def test_shared_budgets_equal_separate_runs_bitwise(tmp_path):
  """One run trains the 30-step budget and writes the 10-step (an epoch) and 15-step (ending
  inside an epoch) folders on its way. result.json, metrics.csv and the final weights equal
  three runs trained apart (--noshare_prefixes), bit for bit; only the longest trained."""
  shared, apart = str(tmp_path / "shared"), str(tmp_path / "apart")
  status, out, _ = cli(BUDGETS + [f"--root={shared}"])
  assert status == 0
  # the same dense network (its run folder copied: identities are content, not place)
  dense = glob.glob(os.path.join(shared, "dense_*"))[0]
  shutil.copytree(dense, os.path.join(apart, os.path.basename(dense)))
  status, out, _ = cli(BUDGETS + [f"--root={apart}", "--noshare_prefixes"])
  assert status == 0
  check_every_run_finished_exactly_once(shared, expected_runs=4)
  a, b = results(shared), results(apart)
  assert a.keys() == b.keys() and len(a) == 4
  longest = [n for n in a if a[n]["steps"] == 70]
  assert len(longest) == 1
  for name in a:
    record = a[name].pop("shared_from", None)
    assert (record is None) == (name in longest or name.startswith("dense_")), name
    if record:
      assert record == {"run": longest[0], "step": a[name]["steps"]}
      assert not os.path.exists(os.path.join(shared, name, "shared"))  # kept in result.json
    for result in (a[name], b[name]):
      result.pop("wall_time_s")
    assert a[name] == b[name], name
    with open(os.path.join(shared, name, "metrics.csv"), "rb") as fa, \
        open(os.path.join(apart, name, "metrics.csv"), "rb") as fb:
      assert fa.read() == fb.read(), name
    wa, wb = _final_weights(os.path.join(shared, name)), _final_weights(os.path.join(apart, name))
    assert wa.keys() == wb.keys() and len(wa) > 10
    assert [n for n in wa if wa[n] != wb[n]] == [], name
  trained = [(n, l["start"], l["end"]) for n in a if n.startswith("prune_")
             for l in map(json.loads, open(os.path.join(shared, n, "trained.jsonl")))
             if l["phase"] == "prune"]
  assert trained == [(longest[0], 40, 70)]


# Fine-tuning and LR rewinding at budgets 10 and 30: three lines, one dense network (seed 1).
SWEEP = ["sweep", f"--flagfile={QUICK}", *SMALL, "--methods=finetune,lr_rewind",
         "--retrains=10it,30it", "--launch=local", "--gpus=none", "--workers=2"]


def _sweep(root, cwd, **env):
  proc = subprocess.run(
      [sys.executable, "-m", "tfrewind", *SWEEP, f"--root={root}"], cwd=cwd,
      env={**os.environ, "PYTHONUNBUFFERED": "1", "TF_CPP_MIN_LOG_LEVEL": "3", **env},
      stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=400, check=False)
  return proc.returncode, proc.stdout


@pytest.mark.slow
@SWEEPS
def test_local_executor_runs_every_line_once_and_the_rerun_finishes_a_killed_one(tmp_path):
  """Two CPU workers: the lines that need the dense network wait while the first trains it
  (deferred, not blocked on its lock). The fine-tuning line (both budgets on it) dies (-9) at
  step 53, after writing the 10-step budget at step 50: it is listed, the exit status is 1,
  and the same command finishes it, every run trained exactly once, logs in the run folders."""
  root = str(tmp_path / "runs")
  hooks = os.path.join(HERE, "hooks")
  status, out = _sweep(root, tmp_path, PYTHONPATH=hooks + os.pathsep + os.environ.get(
      "PYTHONPATH", ""), SIGNAL_AT="53", SIGNAL_IF="--method=finetune")
  assert status == 1, out
  lines = out.splitlines()
  assert lines[0] == "3 lines on 2 slots (the CPU)", out
  started = [l for l in lines if l.startswith("  ") and l.endswith(": started on the CPU")]
  assert len(started) == 3 and "finetune density 0.2 seed 1 budgets 10it,30it" in started[0]
  # The first line trains the dense network; the other two start once it is finished (the
  # second slot idles meanwhile: nothing else could run). Their logs' first lines say when.
  dense = glob.glob(os.path.join(root, "dense_*", "result.json"))[0]
  for log in glob.glob(os.path.join(root, "prune_*lr_rewind*", "launch.log")):
    with open(log, encoding="utf-8") as f:
      when = time.mktime(time.strptime(f.readline()[3:22], "%Y-%m-%d %H:%M:%S"))
    assert int(os.stat(dense).st_mtime) <= when, log
  assert "3 lines: 2 finished now, 0 before, 1 failed" in out, out
  failed = [l for l in lines if l.startswith("  FAILED (exit -9): finetune")]
  assert len(failed) == 1 and failed[0].endswith("launch.log"), out
  status, out = _sweep(root, tmp_path)
  assert status == 0, out
  assert "3 lines: 1 finished now, 2 before, 0 failed" in out, out
  check_every_run_finished_exactly_once(root, expected_runs=5)
  logs = glob.glob(os.path.join(root, "prune_*", "launch.log"))
  assert len(logs) == 3  # the fine-tuning line's in its largest budget's folder
  res = results(root)
  short = [r for r in res.values() if "shared_from" in r]
  assert len(short) == 1 and short[0]["shared_from"]["step"] == 50


def test_slots_and_stage_lines(capsys):
  from tfrewind import launch  # pylint: disable=g-import-not-at-top
  from tfrewind.errors import UsageError  # pylint: disable=g-import-not-at-top
  assert launch.slots("none", 1, 3) == [None, None, None]
  assert launch.slots("0,1", 2, None) == ["0", "0", "1", "1"]
  with pytest.raises(UsageError, match="--workers counts CPU processes"):
    launch.slots("0", 1, 2)
  args = ["sweep", f"--flagfile={QUICK}", "--retrains=10it,30it", "--print"]
  status, out, _ = cli(args + ["--stage=dense"], capsys)
  assert status == 0 and len(out.splitlines()) == 2  # seeds 1 and 2
  assert all(l.endswith("--stage=dense") for l in out.splitlines())
  status, out, _ = cli(args + ["--stage=branches"], capsys)
  lines = out.splitlines()
  # per seed: fine-tuning's two budgets on one line; weight and LR rewinding per budget
  assert status == 0 and len(lines) == 2 * 3 * (1 + 2 + 2), out
  assert sum("--retrains=10it,30it" in l for l in lines) == 6
  status, out, _ = cli(args, capsys)
  assert status == 0 and len(out.splitlines()) == 2 * 3 * 6


@pytest.mark.slow
def test_slurm_two_arrays_holds_the_branches_until_the_dense_array_succeeds(tmp_path):
  """launch/slurm_two_arrays.sh with a stand-in sbatch: the dense array, then the branches'
  with --dependency=afterok on its job id, each over its own jobs file."""
  bin_dir = tmp_path / "bin"
  bin_dir.mkdir()
  (bin_dir / "sbatch").write_text('#!/bin/sh\necho "$@" >> "$SBATCH_LOG"\necho 4242\n')
  os.chmod(bin_dir / "sbatch", 0o755)
  script = os.path.join(os.path.dirname(HERE), "launch", "slurm_two_arrays.sh")
  exe = os.path.dirname(sys.executable)
  proc = subprocess.run(["bash", script, QUICK, "--retrains=10it,30it"], cwd=tmp_path,
                        env={**os.environ, "PATH": f"{bin_dir}:{exe}:{os.environ['PATH']}",
                             "SBATCH_LOG": str(tmp_path / "sbatch.log")},
                        capture_output=True, text=True, timeout=120, check=False)
  assert proc.returncode == 0, proc.stderr
  calls = (tmp_path / "sbatch.log").read_text().splitlines()
  dense = (tmp_path / "dense.txt").read_text().splitlines()
  branches = (tmp_path / "branches.txt").read_text().splitlines()
  assert len(dense) == 2 and len(branches) == 30
  assert calls[0].startswith("--parsable --array=1-2 ") and calls[0].endswith(" dense.txt")
  assert calls[1].startswith("--dependency=afterok:4242 --array=1-30 ")
  assert calls[1].endswith(" branches.txt")
