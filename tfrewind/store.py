"""Run folders: named by a hash of their hyper-parameters, written atomically, locked.

  <root>/dense_<model>_<dataset>_s<seed>_<hash>/      one per (data, model, training, seed)
      hparams.json  result.json  metrics.csv  trained.jsonl  final/  backup/  snapshots/  tb/
  <root>/prune_<model>_<dataset>_<method>_<schedule>_d<density>_s<seed>_<hash>/
      the same files, one folder per density (iterative: per round)

Every file name comes from `RunPaths`. A run is finished when its result.json
exists; result.json is written last and atomically (temporary file, then
rename), and checkpoints are written into a temporary folder that is renamed
into place, so a kill leaves either the old state or the new one.
"""

import contextlib
import dataclasses
import fcntl
import json
import os
import shutil
import time
from typing import Any, Iterator, Optional

from absl import logging

from tfrewind import hparams as hp_lib
from tfrewind import registries
from tfrewind.errors import ConfigError, UsageError


@dataclasses.dataclass(frozen=True)
class RunPaths:
  """Every file of one run folder."""
  dir: str

  @property
  def hparams(self):
    return os.path.join(self.dir, "hparams.json")

  @property
  def result(self):
    return os.path.join(self.dir, "result.json")

  @property
  def failed(self):
    return os.path.join(self.dir, "failed.json")

  @property
  def metrics(self):
    return os.path.join(self.dir, "metrics.csv")

  @property
  def ledger(self):
    return os.path.join(self.dir, "trained.jsonl")

  @property
  def final(self):
    return os.path.join(self.dir, "final")

  @property
  def final_ckpt(self):
    return os.path.join(self.final, "ckpt")

  @property
  def backup(self):
    return os.path.join(self.dir, "backup")

  @property
  def tensorboard(self):
    return os.path.join(self.dir, "tb")

  @property
  def log(self):
    return os.path.join(self.dir, "log.txt")

  @property
  def shared(self):  # a longer budget's state at this run's last step (tfrewind.prefixes)
    return os.path.join(self.dir, "shared")

  @property
  def lock(self):
    return os.path.join(self.dir, "lock")

  def snapshot(self, step: int):
    return os.path.join(self.dir, "snapshots", f"step_{step}.npz")

  def finished(self) -> bool:
    """True if result.json and hparams.json exist and are whole. Reading moves nothing: a
    corrupt one is set aside by `remove_leftovers`, under the run's lock, and the run redone
    from its last good state (a finished one: measured again from its final checkpoint)."""
    return read_json(self.result) is not None and read_json(self.hparams) is not None


def _fmt(x: float) -> str:
  return f"{x:.4g}"


def dense_paths(root: str, hp: hp_lib.HParams) -> RunPaths:
  name = f"dense_{hp.model}_{hp.dataset}_s{hp.seed}_{hp_lib.run_key(hp, 0)}"
  return RunPaths(os.path.join(root, name))


def branch_paths(root: str, hp: hp_lib.HParams, round_: int = 1) -> RunPaths:
  key = hp_lib.run_key(hp, round_)
  density = hp.densities[round_ - 1]
  schedule = registries.schedule(hp.schedule)
  sched = f"{schedule.tag}{round_}" if schedule.numbered else schedule.tag
  # structured_a/b prune by level, not by a density
  point = f"{hp.structure}_l{hp.level}" if hp.by_level else f"d{_fmt(density)}"
  # A gradual run has no retraining method: its schedule's tag alone.
  method = "" if schedule.from_scratch else f"{hp.method}_"
  name = f"prune_{hp.model}_{hp.dataset}_{method}{sched}_{point}_s{hp.seed}_{key}"
  return RunPaths(os.path.join(root, name))


def finished_run(run_dir: str) -> RunPaths:
  """The paths of the finished run in `run_dir`, or UsageError naming what is missing."""
  paths = RunPaths(os.path.normpath(run_dir))
  if not os.path.isdir(paths.dir):
    raise UsageError(f"--run={run_dir} does not exist or is not a folder: pass one run folder, "
                     f"e.g. runs/prune_resnet20_cifar10_lr_rewind_...")
  meta = read_json(paths.hparams)
  if not meta or "hparams" not in meta:
    raise UsageError(f"{paths.hparams} is missing or unreadable: --run must be a run folder "
                     f"written by tfrewind run")
  if not paths.finished():
    raise UsageError(f"{paths.dir} is not finished (no result.json): finish it with "
                     f"tfrewind run, then export")
  return paths


def check_root(root: str) -> None:
  """Creates the root, or raises ValueError saying why it cannot be used."""
  if os.path.exists(root) and not os.path.isdir(root):
    raise ConfigError(f"--root={root} is a file, not a folder: choose another --root")
  try:
    os.makedirs(root, exist_ok=True)
  except OSError as e:
    raise ConfigError(f"cannot create --root={root}: {e.strerror}") from None
  if not os.access(root, os.W_OK):
    raise ConfigError(f"--root={root} is not writable: choose another --root or fix its "
                     f"permissions")


def atomic_write(path: str, content: bytes) -> None:
  """Writes `content` to `path` so that readers see the old file or the whole new one."""
  parent = os.path.dirname(path)
  if parent:
    os.makedirs(parent, exist_ok=True)
  tmp = f"{path}.tmp-{os.getpid()}"
  try:
    with open(tmp, "wb") as f:
      f.write(content)
      f.flush()
      os.fsync(f.fileno())
    os.replace(tmp, path)
  except OSError:
    if os.path.exists(tmp):  # a full disk: give the space back, keep the old file
      os.remove(tmp)
    raise


def write_json(path: str, obj) -> None:
  os.makedirs(os.path.dirname(path), exist_ok=True)
  atomic_write(path, (json.dumps(obj, indent=2, sort_keys=True) + "\n").encode())


def read_json(path: str) -> Optional[Any]:
  """The JSON in `path`, or None if it is missing or not valid JSON (a torn write)."""
  try:
    with open(path, encoding="utf-8") as f:
      return json.load(f)
  except (OSError, ValueError):
    return None


def append_line(path: str, obj) -> None:
  """Appends one JSON line (a single write call, so concurrent lines do not interleave)."""
  os.makedirs(os.path.dirname(path), exist_ok=True)
  with open(path, "a", encoding="utf-8") as f:
    f.write(json.dumps(obj, sort_keys=True) + "\n")
    f.flush()
    os.fsync(f.fileno())


@contextlib.contextmanager
def locked(paths: RunPaths) -> Iterator[None]:
  """Holds the run's exclusive file lock: a second process waits, then sees the result."""
  os.makedirs(paths.dir, exist_ok=True)
  with open(paths.lock, "a+", encoding="utf-8") as f:
    fcntl.flock(f.fileno(), fcntl.LOCK_EX)
    try:
      yield
    finally:
      fcntl.flock(f.fileno(), fcntl.LOCK_UN)


@contextlib.contextmanager
def try_locked(paths: RunPaths) -> Iterator[bool]:
  """The run's lock if it is free now (True), else False at once: never waits."""
  os.makedirs(paths.dir, exist_ok=True)
  with open(paths.lock, "a+", encoding="utf-8") as f:
    try:
      fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
      yield False
      return
    try:
      yield True
    finally:
      fcntl.flock(f.fileno(), fcntl.LOCK_UN)


def replace_dir(tmp: str, final: str) -> None:
  """Moves a fully written folder into place (the old one, if any, removed first)."""
  old = f"{final}.old-{os.getpid()}-{time.time_ns()}"
  if os.path.exists(final):
    os.rename(final, old)
  os.rename(tmp, final)
  shutil.rmtree(old, ignore_errors=True)


def set_aside(path: str, then: str) -> str:
  """Renames an unreadable file, folder or checkpoint (`path` a prefix: its .index and .data
  files) to <path>.corrupt (.corrupt-2, ...), so that nothing reads it again and a person can
  still inspect it; one warning line says what happens next. Returns the new name. Called
  under the lock of the run folder that holds it."""
  import glob  # pylint: disable=g-import-not-at-top
  new, n = f"{path}.corrupt", 1
  while glob.glob(glob.escape(new) + "*"):
    n += 1
    new = f"{path}.corrupt-{n}"
  if os.path.exists(path):
    os.replace(path, new)
  else:  # a checkpoint prefix
    for member in glob.glob(glob.escape(path) + ".*"):
      if ".corrupt" not in member[len(path):]:
        os.replace(member, new + member[len(path):])
  logging.warning("%s is corrupt: setting it aside as %s; %s", path, os.path.basename(new), then)
  return new


def remove_leftovers(paths: RunPaths) -> None:
  """Deletes what a killed writer left half-done (temporary files and folders), and sets a
  corrupt result.json aside.

  Only called under the run's lock, by the process that owns the folder, so no live
  writer owns them.
  """
  import glob  # pylint: disable=g-import-not-at-top
  if os.path.exists(paths.result) and read_json(paths.result) is None:
    set_aside(paths.result, "redoing the run from its last good state")
  if os.path.exists(paths.hparams) and read_json(paths.hparams) is None:
    set_aside(paths.hparams, "writing it again")
  # backup/ckpt-N_temp*: TensorFlow's checkpoint writer died mid-save (a kill, a full disk);
  # its manager never listed it, so resuming ignores it, but it holds the disk.
  for pattern in ("*.tmp-*", "final.tmp-*", "final.old-*", os.path.join("snapshots", "*.tmp-*"),
                  os.path.join("backup", "*_temp*")):
    for path in glob.glob(os.path.join(paths.dir, pattern)):
      if os.path.isdir(path):
        shutil.rmtree(path, ignore_errors=True)
      else:
        os.remove(path)
