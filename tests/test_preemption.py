"""Pre-emption (SIGTERM, Slurm's signal) loses nothing: the run stops at a step boundary,
checkpoints that step, exits 143, and the rerun resumes there, bitwise equal under
--deterministic. A second signal stops at once."""

import glob
import os
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

from clitools import PROCESSES, QUICK, SMALL, check_every_run_finished_exactly_once, ledger, results

HERE = os.path.dirname(os.path.abspath(__file__))
# One dense run (40 steps, epochs of 10) and one LR-rewinding branch (steps 40..80).
ARGS = ["run", f"--flagfile={QUICK}", *SMALL, "--methods=lr_rewind", "--deterministic"]


def _run(args, cwd, at=None, times=1, signal="TERM"):
  env = {**os.environ, "PYTHONUNBUFFERED": "1", "TF_CPP_MIN_LOG_LEVEL": "3",
         "PYTHONPATH": HERE + os.pathsep + os.environ.get("PYTHONPATH", "")}
  if at is not None:
    env.update(SIGNAL_AT=str(at), SIGNAL_TIMES=str(times), SIGNAL=signal)
  proc = subprocess.run([sys.executable, os.path.join(HERE, "sigterm_at.py"), *args], cwd=cwd,
                        env=env,
                        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                        timeout=400, check=False)
  return proc.returncode, proc.stdout


def _weights(root, prefix):
  index = glob.glob(os.path.join(root, f"{prefix}*", "final", "ckpt.index"))[0]
  reader = tf.train.load_checkpoint(index[:-len(".index")])
  # save_counter counts checkpoint writes (a stopped run writes one more): bookkeeping only.
  return {n: np.asarray(reader.get_tensor(n)).tobytes() for n in reader.get_variable_to_shape_map()
          if not n.startswith("save_counter")}


def _resumed_from(root, prefix):
  lines = [l for n, ls in ledger(root).items() if n.startswith(prefix) for l in ls
           if l["phase"] in ("dense", "prune")]
  return [l["start"] for l in lines]


@pytest.mark.slow
@PROCESSES
def test_stopped_and_killed_runs_resume_where_they_stopped_bitwise_equal(tmp_path):
  """SIGTERM inside an epoch (dense step 17, branch step 53: no epoch ends there) resumes at
  that step; kill -9 (step 33) at the last epoch checkpoint (30). The finished runs equal an
  uninterrupted one bit for bit (--deterministic)."""
  whole, stopped = str(tmp_path / "whole"), str(tmp_path / "stopped")
  status, out = _run(ARGS + [f"--root={whole}"], tmp_path)
  assert status == 0, out
  for at, signal, end in ((17, "TERM", 40), (33, "KILL", 40), (53, "TERM", 80)):
    status, out = _run(ARGS + [f"--root={stopped}"], tmp_path, at=at, signal=signal)
    prefix = "dense_" if end == 40 else "prune_"
    if signal == "KILL":
      assert status == -9, out
      continue
    assert status == 143, out
    line = f"tfrewind: stopped by SIGTERM at step {at} of {end}; rerun the same command to resume"
    assert line in out.splitlines() and "Traceback" not in out, out
    backup = glob.glob(os.path.join(stopped, f"{prefix}*", "backup", f"ckpt-{at}.index"))
    assert backup, os.listdir(glob.glob(os.path.join(stopped, f"{prefix}*", "backup"))[0])
  status, out = _run(ARGS + [f"--root={stopped}"], tmp_path)
  assert status == 0, out
  # Where each fit() began (a killed process writes no ledger line): 17 after the SIGTERM,
  # where an epoch checkpoint alone would give 10; 30 after the kill; 53 after the second stop.
  assert _resumed_from(stopped, "dense_") == [0, 17, 30]
  assert _resumed_from(stopped, "prune_") == [40, 53, 60]
  check_every_run_finished_exactly_once(stopped, expected_runs=2)
  a, b = results(whole), results(stopped)
  for name in a:
    for key in ("test_accuracy", "test_loss", "epoch_eval_accuracy", "best_test_accuracy",
                "density", "layer_densities", "steps"):
      assert a[name][key] == b[name][key], (name, key)
  for prefix in ("dense_", "prune_"):
    wa, wb = _weights(whole, prefix), _weights(stopped, prefix)
    assert wa.keys() == wb.keys() and len(wa) > 10
    assert [n for n in wa if wa[n] != wb[n]] == [], prefix


@pytest.mark.parametrize("signal_name, status", [("TERM", -15), ("INT", -2)])
def test_a_second_signal_stops_at_once(tmp_path, signal_name, status):
  """tfrewind.stopping in a process of its own: the first signal is a request (the process
  goes on), a second SIGTERM kills it as SIGTERM does, a second SIGINT raises
  KeyboardInterrupt (Python then ends by SIGINT). The first signal's stop inside fit() at a
  step, and its checkpoint: the test above."""
  code = (f"import os, signal, sys, time\n"
          f"from tfrewind import stopping\n"
          f"stopping.install()\n"
          f"os.kill(os.getpid(), signal.SIG{signal_name})\n"
          f"assert stopping.requested() == signal.SIG{signal_name}\n"
          f"print('requested', flush=True)\n"
          f"os.kill(os.getpid(), signal.SIG{signal_name})\n"
          f"time.sleep(30)\n"
          f"print('not stopped', flush=True)\n")
  proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                        timeout=60, check=False, cwd=tmp_path)
  assert proc.returncode == status, proc.stdout + proc.stderr
  assert proc.stdout.split() == ["requested"]


@pytest.mark.parametrize("signal_name", ["USR1", "TERM"])
def test_slurm_script_passes_the_time_limit_warning_on_and_requeues(tmp_path, signal_name):
  """launch/slurm_array.sh with a stand-in task and scontrol: USR1 (the --signal warning) is
  passed on as SIGTERM; on a pre-emption (TERM to every process) the task gets it once; an
  exit of 143 requeues the task."""
  import signal as signal_lib  # pylint: disable=g-import-not-at-top
  import time  # pylint: disable=g-import-not-at-top
  ready, got = tmp_path / "ready", tmp_path / "got"
  (tmp_path / "task.py").write_text(f"""import signal, sys, time
seen = []
def stop(signum, frame):
  seen.append(signum)
  open({str(got)!r}, "a").write(str(signum) + "\\n")
signal.signal(signal.SIGTERM, stop)
open({str(ready)!r}, "w").close()
deadline = time.time() + 60
while not seen and time.time() < deadline:
  time.sleep(0.05)
time.sleep(0.3)  # a second signal, if any, would arrive here
sys.exit(143 if seen else 1)
""")
  (tmp_path / "jobs.txt").write_text(f"python3 {tmp_path / 'task.py'}\n")
  bin_dir = tmp_path / "bin"
  bin_dir.mkdir()
  (bin_dir / "scontrol").write_text(f"#!/bin/sh\necho \"$@\" >> {tmp_path / 'scontrol.log'}\n")
  (bin_dir / "scontrol").chmod(0o755)
  env = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}",
         "SLURM_ARRAY_TASK_ID": "1", "SLURM_JOB_ID": "4242"}
  script = os.path.join(os.path.dirname(HERE), "launch", "slurm_array.sh")
  proc = subprocess.Popen(["bash", script, str(tmp_path / "jobs.txt")], env=env,
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                          start_new_session=True)
  deadline = time.monotonic() + 30
  while not ready.exists():
    assert proc.poll() is None and time.monotonic() < deadline, proc.stdout.read()
    time.sleep(0.02)
  if signal_name == "USR1":
    proc.send_signal(signal_lib.SIGUSR1)  # to the batch shell alone (B:)
  else:
    os.killpg(proc.pid, signal_lib.SIGTERM)  # pre-emption: every process of the job
  out, _ = proc.communicate(timeout=60)
  assert proc.returncode == 143, out
  assert got.read_text().split() == ["15"], out  # exactly one SIGTERM reached the task
  assert (tmp_path / "scontrol.log").read_text().split() == ["requeue", "4242"]
