"""One console line per run of a sweep: where it stands and about how long the rest takes.

  [7/60] weight_rewind density 0.107 seed 2: test 0.9123 (-0.8 pt) in 21m; done 7, left 53, about 18h left

The time left is the mean time of the runs of the same network that this process trained,
times the runs of that network still to go (other networks: the mean over all networks).
"""

import sys
import time
from typing import Dict, List, Optional, Sequence, TextIO

from tfrewind import hparams as hp_lib
from tfrewind import names
from tfrewind import store


def duration(seconds: float) -> str:
  """42s, 21m, 3.5h, 18h."""
  if seconds < 90:
    return f"{seconds:.0f}s"
  if seconds < 90 * 60:
    return f"{seconds / 60:.0f}m"
  hours = seconds / 3600
  return f"{hours:.1f}h" if hours < 10 else f"{hours:.0f}h"


class Progress:
  """Counts the runs of a sweep; the Runner calls `start` and `end` around each run."""

  def __init__(self, runs: Sequence[hp_lib.HParams], out: Optional[TextIO] = None,
               clock=time.monotonic, devices: Sequence[str] = ()):
    """out: where the lines go (default: sys.stdout as it is when a line is printed);
    devices: named in the first line."""
    self.devices = list(devices)
    # one entry per run folder (iterative: per round), its network
    self.networks: List[str] = [hp.model for hp in runs for _ in hp.densities]
    self.out, self.clock = out, clock
    self.done = 0
    self._timed: Dict[str, List[float]] = {}
    self._started = 0.0
    self.rows = []  # (seed, method, density, test accuracy, dense accuracy), for the summary

  def _label(self, hp: hp_lib.HParams, round_: int) -> str:
    point = (f"{hp.structure} level {hp.level}" if hp.by_level
             else f"density {hp.densities[round_ - 1]:.4g}")
    return f"[{self.done + 1}/{len(self.networks)}] {names.series(hp)} {point} seed {hp.seed}"

  def start(self, hp: hp_lib.HParams, round_: int) -> None:
    self._started = self.clock()
    on = f" on {', '.join(self.devices)}" if self.devices and self.done == 0 else ""
    print(f"{self._label(hp, round_)}: started{on}", file=self.out or sys.stdout, flush=True)

  def end(self, hp: hp_lib.HParams, round_: int, paths: store.RunPaths,
          dense: store.RunPaths, trained: bool) -> None:
    """trained: this process trained the run (False: it was finished before)."""
    seconds = self.clock() - self._started
    label = self._label(hp, round_)
    result = store.read_json(paths.result)
    accuracy = result["test_accuracy"]
    # A gradual run has no dense network of its own: the trunk of its settings, if trained.
    dense_result = store.read_json(dense.result) if dense is not None else None
    dense_accuracy = dense_result["test_accuracy"] if dense_result else None
    density = result["density"] if hp.by_level else hp.densities[round_ - 1]
    self.rows.append((hp.seed, names.series(hp), density, accuracy, dense_accuracy))
    if trained:
      self._timed.setdefault(hp.model, []).append(seconds)
    self.done += 1
    left = len(self.networks) - self.done
    took = f"in {duration(seconds)}" if trained else "finished before"
    change = (f" ({100 * (accuracy - dense_accuracy):+.1f} pt)" if dense_accuracy is not None
              else "")
    print(f"{label}: test {accuracy:.4f}{change} {took}; "
          f"done {self.done}, left {left}{self._eta(left)}", file=self.out or sys.stdout,
          flush=True)

  def _eta(self, left: int) -> str:
    if left == 0:
      return ""
    every = [s for times in self._timed.values() for s in times]
    if not every:
      return ", time left unknown"
    overall = sum(every) / len(every)
    seconds = 0.0
    for network in self.networks[self.done:]:
      times = self._timed.get(network)
      seconds += sum(times) / len(times) if times else overall
    return f", about {duration(seconds)} left"

