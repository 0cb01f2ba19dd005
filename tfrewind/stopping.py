"""Pre-emption: the first SIGTERM or SIGINT stops a run at a step boundary, a second at once.

Slurm pre-empts with SIGTERM (and `scancel` sends it); a grace period follows
(`--signal=TERM@120`). The handler only records the request: the training loop
(StopOnSignal) finishes the step it is in, Keras ends the epoch early, the
epoch checkpoint (finite weights only) is written at that step, and the command
exits 128 + the signal number. A rerun resumes from that very step, so nothing is
lost. A second signal falls through to Python's default: SIGTERM kills the
process, SIGINT raises KeyboardInterrupt, as before these handlers existed.
"""

import os
import signal
import threading
from typing import Optional

from absl import logging

from tfrewind.errors import Stopped

_SIGNALS = (signal.SIGTERM, signal.SIGINT)
_requested: Optional[int] = None


def install() -> None:
  """Installs the handlers (main thread only; elsewhere, signals keep their defaults)."""
  global _requested
  _requested = None
  if threading.current_thread() is not threading.main_thread():
    return
  for s in _SIGNALS:
    signal.signal(s, _handle)


def uninstall() -> None:
  global _requested
  _requested = None
  if threading.current_thread() is threading.main_thread():
    for s in _SIGNALS:
      if signal.getsignal(s) is _handle:
        signal.signal(s, signal.SIG_DFL if s == signal.SIGTERM else signal.default_int_handler)


def _handle(signum, frame):  # pylint: disable=unused-argument
  global _requested
  if _requested is not None:  # the second: at once, as without handlers
    uninstall()
    if signum == signal.SIGINT:
      raise KeyboardInterrupt
    os.kill(os.getpid(), signum)
    return
  _requested = signum
  logging.warning("%s: finishing this step, checkpointing it, then stopping (send it again to "
                  "stop at once)", signal.Signals(signum).name)


def requested() -> Optional[int]:
  """The signal number of a pending stop request, or None."""
  return _requested


def stopped(step: Optional[int] = None, end: Optional[int] = None, run: str = "") -> Stopped:
  signum = _requested or signal.SIGTERM
  return Stopped(signal.Signals(signum).name, int(signum), step, end, run)


def check(step: Optional[int] = None, end: Optional[int] = None, run: str = "") -> None:
  """Raises Stopped if a stop was requested (between runs, or before a fit)."""
  if _requested is not None:
    raise stopped(step, end, run)
