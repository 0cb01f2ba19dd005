"""`tfrewind sweep --launch=local`: the lines of a sweep as processes on this machine's GPUs.

  tfrewind sweep --flagfile=flags/resnet20_one_shot.flags --launch=local --gpus=0,1 --per_gpu=2
  tfrewind sweep --flagfile=flags/quickstart.flags --launch=local --gpus=none --workers=2

Each slot (a GPU, --per_gpu times, or a CPU worker) runs one line at a time, with
CUDA_VISIBLE_DEVICES set to its GPU (memory growth on when several share one). A line whose
dense network is being trained (by a line of this sweep, or by any process holding its lock)
is deferred while another line can start, so no slot waits on a lock while other work could
run. Each line's output goes to launch.log in its run folder. A failed line is listed at the
end and makes the exit status 1; the same command again skips every finished line and
resumes the rest from their checkpoints. The parent never imports TensorFlow.
"""

import dataclasses
import os
import signal
import subprocess
import sys
import time
from typing import Callable, Dict, List, Optional, Sequence, TextIO

from tfrewind import progress as progress_lib
from tfrewind import store
from tfrewind.errors import UsageError


@dataclasses.dataclass
class Task:
  """One line of a sweep: its `tfrewind` arguments, the run folders it finishes, the dense
  run folder it needs (None: none), and where its output goes."""
  args: List[str]
  label: str
  runs: List[str]
  dense: Optional[str]
  log: str

  def finished(self) -> bool:
    return all(store.RunPaths(r).finished() for r in self.runs)


def _visible_gpus() -> List[str]:
  if os.environ.get("CUDA_VISIBLE_DEVICES") not in (None, ""):
    return [g.strip() for g in os.environ["CUDA_VISIBLE_DEVICES"].split(",") if g.strip()]
  try:
    out = subprocess.run(["nvidia-smi", "--query-gpu=index", "--format=csv,noheader"],
                         capture_output=True, text=True, timeout=30, check=True).stdout
  except (OSError, subprocess.SubprocessError):
    return []
  return [line.strip() for line in out.splitlines() if line.strip()]


def slots(gpus: Optional[str], per_gpu: int, workers: Optional[int]) -> List[Optional[str]]:
  """The GPU of each slot (None: the CPU). gpus: "0,1", "none", or None for every GPU that
  CUDA_VISIBLE_DEVICES or nvidia-smi names."""
  if gpus == "none":
    return [None] * (workers or 1)
  if workers is not None:
    raise UsageError("--workers counts CPU processes (--gpus=none); on GPUs, --per_gpu=K runs "
                     "K lines on each GPU")
  found = [g.strip() for g in gpus.split(",") if g.strip()] if gpus else _visible_gpus()
  if not found:
    raise UsageError("--launch=local found no GPU (nvidia-smi lists none): pass --gpus=0,1, or "
                     "--gpus=none --workers=K to run K lines at a time on the CPU")
  return [g for g in found for _ in range(per_gpu)]


def _lock_held(dense: str) -> bool:
  with store.try_locked(store.RunPaths(dense)) as got:
    return not got


def execute(tasks: Sequence[Task], gpu_slots: Sequence[Optional[str]], out: TextIO = None,
            poll: float = 0.25, command: Sequence[str] = (sys.executable, "-m", "tfrewind"),
            clock: Callable[[], float] = time.monotonic) -> int:
  """Runs every unfinished task; returns the exit status (0, 1 if a line failed, 128 + the
  signal that stopped the sweep)."""
  out = out or sys.stdout
  say = lambda line: print(line, file=out, flush=True)  # noqa: E731
  todo = [t for t in tasks if not t.finished()]
  before = len(tasks) - len(todo)
  total = len(tasks)
  per_gpu = {g: list(gpu_slots).count(g) for g in gpu_slots}
  running: Dict[int, tuple] = {}  # slot -> (task, process, start time, log file)
  failed, times, done = [], [], before
  stop = []
  handlers = {s: signal.signal(s, lambda signum, _: stop.append(signum))
              for s in (signal.SIGTERM, signal.SIGINT)}
  where = lambda g: "the CPU" if g is None else f"GPU {g}"  # noqa: E731
  places = ", ".join(sorted({where(g) for g in gpu_slots}))
  say(f"{total} lines on {len(gpu_slots)} slots ({places})"
      + (f"; {before} finished before" if before else ""))
  t0 = clock()
  try:
    while todo or running:
      for slot, (task, proc, started, log) in list(running.items()):
        status = proc.poll()
        if status is None:
          continue
        log.close()
        del running[slot]
        seconds = clock() - started
        done += 1
        if status == 0 and task.finished():
          times.append(seconds)
          left = len(todo) + len(running)
          eta = (f", about {progress_lib.duration(sum(times) / len(times) * left / len(gpu_slots))}"
                 f" left" if left else "")
          say(f"[{done}/{total}] {task.label}: finished in {progress_lib.duration(seconds)} "
              f"on {where(gpu_slots[slot])}; failed {len(failed)}, left {left}{eta}")
        else:
          failed.append((task, status))
          say(f"[{done}/{total}] {task.label}: FAILED (exit {status}) after "
              f"{progress_lib.duration(seconds)}: see {task.log}")
      if stop:
        break
      busy = {t.dense for t, *_ in running.values() if t.dense}
      for slot in [s for s in range(len(gpu_slots)) if s not in running]:
        task = next((t for t in todo if not t.dense or not (
            (t.dense in busy and not store.RunPaths(t.dense).finished())
            or _lock_held(t.dense))), None)
        if task is None:
          break  # every line left waits on a dense network in training: no slot idles on it
        todo.remove(task)
        gpu = gpu_slots[slot]
        env = {**os.environ, "PYTHONUNBUFFERED": "1",
               "CUDA_VISIBLE_DEVICES": "" if gpu is None else gpu}
        if gpu is not None and per_gpu[gpu] > 1:
          env["TF_FORCE_GPU_ALLOW_GROWTH"] = "true"
        os.makedirs(os.path.dirname(task.log), exist_ok=True)
        log = open(task.log, "a", encoding="utf-8")  # pylint: disable=consider-using-with
        log.write(f"== {time.strftime('%Y-%m-%d %H:%M:%S')} on {where(gpu)}: tfrewind "
                  f"{' '.join(task.args)}\n")
        log.flush()
        proc = subprocess.Popen([*command, *task.args], stdout=log, stderr=subprocess.STDOUT,
                                env=env)  # pylint: disable=consider-using-with
        running[slot] = (task, proc, clock(), log)
        busy |= {task.dense} if task.dense else set()
        say(f"  {task.label}: started on {where(gpu)}")
      time.sleep(poll)
  finally:
    for task, proc, _, log in running.values():  # stopped: each line checkpoints and exits
      proc.send_signal(signal.SIGTERM)
    for task, proc, _, log in running.values():
      proc.wait()
      log.close()
    for s, handler in handlers.items():
      signal.signal(s, handler)
  finished = done - before - len(failed)
  say(f"\n{total} lines: {finished} finished now, {before} before, {len(failed)} failed"
      + (f", {len(todo) + len(running)} not run (stopped)" if stop else "")
      + f", in {progress_lib.duration(clock() - t0)}")
  for task, status in failed:
    say(f"  FAILED (exit {status}): {task.label}: {task.log}")
  if failed or stop:
    say("rerun the same command: finished lines are skipped, the others resume from their "
        "checkpoints")
  if stop:
    return 128 + stop[0]
  return 1 if failed else 0
