"""Kills a small sweep with SIGKILL at random moments, reruns it, and checks that nothing was lost.

  python scripts/kill_harness.py --kills=20 --seed=0                 # one `tfrewind run` process
  python scripts/kill_harness.py --kills=20 --seed=0 --mode=lines    # `sweep --print` lines

`--mode=run` (the default) kills and restarts one process that runs the whole grid.
`--mode=lines` runs the lines of `tfrewind sweep --print` as a cluster would: in random
order, two processes at a time on one root; a killed line goes back into the queue at a
random place. Both print where the kills landed, that every run finished exactly once,
that the dense network was trained to its end once, and what was found half-written.
The test suite runs the first mode with 3 kills (tests/test_faults.py).
"""

import argparse
import glob
import os
import random
import shlex
import signal
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                                "tests"))
from clitools import (QUICK, SMALL, _state, check_every_run_finished_exactly_once,  # noqa: E402,E501  pylint: disable=wrong-import-position
                      kill_sweep, ledger, spawn)

GRID = ["--train_steps=300it", "--lr_boundaries=150it,250it", "--rewind_step=50it",
        "--densities=0.5,0.2"]


def sweep_lines(root):
  """The `tfrewind run` argument lists that `tfrewind sweep --print` writes for the grid."""
  out = subprocess.run([os.path.join(os.path.dirname(sys.executable), "tfrewind"), "sweep",
                        f"--flagfile={QUICK}", f"--root={root}", *SMALL, *GRID, "--print"],
                       capture_output=True, text=True, check=True).stdout
  return [shlex.split(line)[1:] for line in out.splitlines() if line.startswith("tfrewind run")]


def kill_lines(cwd, root, kills, seed, low=2.0, high=9.0):
  """Runs every line to completion, two at a time, killing a random live one `kills` times."""
  rng = random.Random(seed)
  queue = sweep_lines(root)
  rng.shuffle(queue)
  running, landed, done = [], [], 0
  deadline = time.monotonic() + 3600
  next_kill = time.monotonic() + rng.uniform(low, high)
  while queue or running:
    assert time.monotonic() < deadline, "the sweep did not finish within an hour"
    while queue and len(running) < 2:
      args = queue.pop(0)
      running.append((spawn(args, cwd=cwd), args))
    for proc, args in list(running):
      if proc.poll() is not None:
        out = proc.stdout.read()
        assert proc.returncode == 0, out
        running.remove((proc, args))
        done += 1
    if len(landed) < kills and running and time.monotonic() >= next_kill:
      proc, args = rng.choice(running)
      if proc.poll() is None:
        where = _state(root)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        running.remove((proc, args))
        method = next(a.split("=")[1] for a in args if a.startswith("--method="))
        landed.append(f"{where}, a {method} line")
        queue.insert(rng.randrange(len(queue) + 1), args)
      next_kill = time.monotonic() + rng.uniform(low, high)
    time.sleep(0.05)
  return landed, done


def main():
  parser = argparse.ArgumentParser(description=__doc__)
  parser.add_argument("--kills", type=int, default=20)
  parser.add_argument("--seed", type=int, default=0)
  parser.add_argument("--mode", choices=("run", "lines"), default="run")
  args = parser.parse_args()
  t0 = time.time()
  with tempfile.TemporaryDirectory() as tmp:
    root = os.path.join(tmp, "runs")
    if args.mode == "run":
      run = ["run", f"--flagfile={QUICK}", f"--root={root}", *SMALL, *GRID]
      landed = kill_sweep(tmp, args.kills, args.seed, run, low=4.0, high=9.0, root=root)
      finished_lines = None
    else:
      landed, finished_lines = kill_lines(tmp, root, args.kills, args.seed)
    leftovers = glob.glob(os.path.join(root, "*", "*.corrupt"))
    check_every_run_finished_exactly_once(root, expected_runs=7)
    lines = ledger(root)
    sessions = sum(1 for ls in lines.values() for l in ls if l["phase"] != "finished")
    dense = [l for n, ls in lines.items() if n.startswith("dense") for l in ls]
    to_end = sum(1 for l in dense if l["phase"] == "dense" and l["end"] == 300)
    replays = sum(1 for l in dense if l["phase"] == "replay")
    print(f"kills that hit a running process: {len(landed)} of {args.kills} asked")
    for where in sorted(set(landed)):
      print(f"  {landed.count(where):2d} x during {where}")
    if finished_lines is not None:
      print(f"sweep --print lines run to completion: {finished_lines} (6 lines, killed ones "
            f"requeued), two processes at a time")
    print(f"runs completed: {len(lines)} (1 dense + 3 methods x 2 densities), each finished "
          f"exactly once; training sessions recorded: {sessions}")
    print(f"dense network trained to its end: {to_end} time(s); dense trunk replays to a rewind "
          f"step: {replays}")
    print(f"result files found corrupt and redone: {len(leftovers)}; no torn JSON, no temporary "
          f"files left, every final checkpoint readable; {time.time() - t0:.0f} s")


if __name__ == "__main__":
  main()
