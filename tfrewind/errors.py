"""Errors that reach the command line as one line; TF-free so the CLI can catch them cheaply."""

import errno
import re
from typing import Optional


class ConfigError(ValueError):
  """A bad setting (a flag, an argument, a stored file's content): the command line prints it
  as one line with exit status 2. Any other exception is a bug and keeps its traceback."""


class DataError(ConfigError):
  """A dataset cannot be loaded; the message says where it looked and what to run."""


class RunFailed(RuntimeError):
  """Training diverged (NaN/Inf loss); the run folder holds failed.json."""


class UsageError(ConfigError):
  """Bad command-line input: printed as one line, exit status 2."""


class DiskFull(OSError):
  """No space left on the device while writing a run's files: one line, exit status 1."""


class Stopped(Exception):
  """A run stopped on SIGTERM/SIGINT after checkpointing its step: exit 128 + the signal."""

  def __init__(self, signame: str, signum: int, step: Optional[int], end: Optional[int],
               run: str = ""):
    self.signame, self.signum, self.step, self.end, self.run = signame, signum, step, end, run
    where = f"at step {step} of {end}" if step is not None else "before training"
    super().__init__(f"stopped by {signame} {where}; rerun the same command to resume")


_NO_SPACE = "No space left on device"


def is_disk_full(e: BaseException) -> bool:
  """An OSError of ENOSPC, or TensorFlow's error for one (its C++ writers raise OpErrors,
  e.g. ResourceExhaustedError from SaveV2, whose message carries strerror(ENOSPC))."""
  if isinstance(e, OSError) and e.errno == errno.ENOSPC:
    return True
  return _NO_SPACE in str(getattr(e, "message", "") or e)


def disk_full_path(e: BaseException, run_dir: Optional[str] = None) -> str:
  """Where the failed write was: RUN/<first part below it> if the error names a file of
  `run_dir` (RUN/backup, RUN/tb, ...), else the file the error names, else '?'."""
  text = f"{getattr(e, 'filename', '') or ''} {getattr(e, 'message', '') or e}"
  if run_dir:
    prefix = run_dir.rstrip("/") + "/"
    at = text.find(prefix)
    if at >= 0:
      part = re.split(r"[/\s;:,']", text[at + len(prefix):], maxsplit=1)[0]
      return prefix + part if part else run_dir
    return run_dir
  if getattr(e, "filename", None):
    return str(e.filename)
  found = re.search(r"(/[^\s;:,']+)", text)
  return found.group(1) if found else "?"


def disk_full(e: BaseException, run_dir: Optional[str] = None) -> DiskFull:
  return DiskFull(errno.ENOSPC, f"no space left on device writing {disk_full_path(e, run_dir)}: "
                  f"free space and rerun the same command; finished runs are kept")
