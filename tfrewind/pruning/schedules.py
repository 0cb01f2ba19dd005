"""Pruning schedules: which density each round prunes to.

They subclass TF-MOT's `PruningSchedule` so that TF-MOT wrappers serialise them,
but a round here is a whole train-prune-retrain cycle and masks are computed
globally by `tfrewind.prune`, so `__call__` never asks TF-MOT to recompute a
mask (it returns should_prune=False and the sparsity in force at that step).
"""

from typing import Optional, Sequence

import tensorflow as tf
from tensorflow_model_optimization.python.core.sparsity.keras import pruning_schedule

import tf_keras as keras
from tfrewind.pruning import masks as masks_lib
from tfrewind.errors import ConfigError


class RoundSchedule(pruning_schedule.PruningSchedule):
  """Densities of successive pruning rounds, each relative to the dense network.

  Example:
    >>> RoundSchedule([0.8, 0.64]).densities
    (0.8, 0.64)
  """

  def __init__(self, densities: Sequence[float], cycle_steps: Optional[int] = None):
    densities = tuple(masks_lib.check_density(d) for d in densities)
    if not densities:
      raise ConfigError("a pruning schedule needs at least one round, got no densities")
    if any(b > a for a, b in zip(densities, densities[1:])):
      raise ConfigError(f"densities must not increase across rounds (masks only shrink), "
                       f"got {list(densities)}")
    if cycle_steps is not None and int(cycle_steps) <= 0:
      raise ConfigError(f"cycle_steps must be positive, got {cycle_steps!r}")
    self.densities = densities
    self.cycle_steps = None if cycle_steps is None else int(cycle_steps)

  @property
  def rounds(self) -> int:
    return len(self.densities)

  def density_at_round(self, r: int) -> float:
    """Density in force during round r (0 = the dense cycle)."""
    return 1.0 if r <= 0 else self.densities[min(r, self.rounds) - 1]

  def __call__(self, step):
    # Round r covers steps [r * cycle, (r + 1) * cycle); the sparsity is
    # informational (PruningSummaries), the mask update never fires.
    table = tf.constant([0.0] + [1.0 - d for d in self.densities], tf.float32)
    if self.cycle_steps is None:
      r = tf.constant(0, tf.int64)
    else:
      r = tf.minimum(tf.cast(step, tf.int64) // self.cycle_steps, self.rounds)
    return tf.constant(False), tf.gather(table, r)

  def get_config(self):
    # The registered name ("tfrewind>OneShot") lets TF-MOT's wrapper find the
    # class again when a saved model is loaded.
    return {"class_name": keras.utils.get_registered_name(type(self)),
            "config": self._config()}

  def _config(self):
    return {"densities": list(self.densities), "cycle_steps": self.cycle_steps}

  @classmethod
  def from_config(cls, config):
    return cls(**config)

  def __eq__(self, other):
    return type(self) is type(other) and self._config() == other._config()

  def __repr__(self):
    args = ", ".join(f"{k}={v!r}" for k, v in self._config().items())
    return f"{type(self).__name__}({args})"


@keras.utils.register_keras_serializable(package="tfrewind")
class OneShot(RoundSchedule):
  """Prune once to `density`.

  Example:
    >>> OneShot(density=0.2).densities
    (0.2,)
  """

  def __init__(self, density: float, cycle_steps: Optional[int] = None):
    super().__init__([density], cycle_steps)

  def _config(self):
    return {"density": self.densities[0], "cycle_steps": self.cycle_steps}


@keras.utils.register_keras_serializable(package="tfrewind")
class Iterative(RoundSchedule):
  """Prune in rounds: densities rate**1 .. rate**rounds, or an explicit list.

  Both papers remove 20% of the remaining weights per round (rate=0.8).

  Example:
    >>> Iterative(rate=0.8, rounds=3).densities
    (0.8, 0.64, 0.512)
    >>> Iterative(densities=[0.5, 0.1]).rounds
    2
  """

  def __init__(self, rate: Optional[float] = None, rounds: Optional[int] = None,
               densities: Optional[Sequence[float]] = None,
               cycle_steps: Optional[int] = None):
    if densities is None:
      if rate is None or rounds is None:
        raise ConfigError("Iterative needs rate and rounds, or densities")
      rate = masks_lib.check_density(rate)
      if rate >= 1.0:
        raise ConfigError(f"rate must be in (0, 1), got {rate!r}")
      if int(rounds) != rounds or rounds < 1:
        raise ConfigError(f"rounds must be a positive integer, got {rounds!r}")
      densities = [rate ** k for k in range(1, int(rounds) + 1)]
    elif rate is not None or rounds is not None:
      raise ConfigError("give Iterative either rate and rounds, or densities, not both")
    self.rate = None if rate is None else float(rate)
    super().__init__(densities, cycle_steps)

  def _config(self):
    if self.rate is not None:
      return {"rate": self.rate, "rounds": self.rounds, "cycle_steps": self.cycle_steps}
    return {"densities": list(self.densities), "cycle_steps": self.cycle_steps}
