"""Learning-rate schedules that can be rewound.

The LR is a pure function of the step it is given; rewinding is giving it
another step. `Rewindable` reads `optimizer.iterations - offset` (or a constant
fine-tuning LR) from variables that `RewindCallback` sets at a prune, so the
whole computation stays inside the compiled train step: it works with
`steps_per_execution > 1`, XLA and distribution strategies, where a Python
callback setting the LR every batch would not.
"""

from typing import Callable, Sequence, Union

import numpy as np
import tensorflow as tf

import tf_keras as keras
from tfrewind.errors import ConfigError

LearningRateSchedule = keras.optimizers.schedules.LearningRateSchedule


@keras.utils.register_keras_serializable(package="tfrewind")
class StepDecay(LearningRateSchedule):
  """`initial` multiplied by `factor` after each boundary (the papers' schedules).

  The LR of the update made at step s (s = optimizer.iterations before the
  update, from 0) is initial * factor**(number of boundaries <= s): Mikler's
  ResNets use StepDecay(0.1, [36000, 54000], 0.1), so updates 0..35999 use 0.1.
  With old_at_boundary=True the count is of boundaries < s, as Keras'
  PiecewiseConstantDecay (and so Mikler's code) has it: update 36000 still uses 0.1.

  Example:
    >>> float(StepDecay(0.1, [10], 0.1)(10))
    0.01
  """

  def __init__(self, initial: float, boundaries: Sequence[int], factor: float,
               old_at_boundary: bool = False, warmup: float = 0.0, epoch: float = 1.0):
    if sorted(boundaries) != list(boundaries):
      raise ConfigError(f"boundaries must be increasing, got {list(boundaries)}")
    self.initial = float(initial)
    self.boundaries = [int(b) for b in boundaries]
    self.factor = float(factor)
    self.old_at_boundary = bool(old_at_boundary)
    # A linear warm-up from 0 over `warmup` epochs of `epoch` steps (a float: training images
    # / batch), as the original's ImageNet code: initial * (step / epoch) / warmup, in float32
    # in that order, while step / epoch < warmup.
    self.warmup, self.epoch = float(warmup), float(epoch)
    # Values computed once in float64 then rounded, so 0.1 * 0.1 is exactly float32(0.01).
    self._values = [np.float32(self.initial * self.factor ** i)
                    for i in range(len(self.boundaries) + 1)]

  def __call__(self, step):
    step = tf.cast(step, tf.int64)
    boundaries = tf.constant(self.boundaries or [np.iinfo(np.int64).max], tf.int64)
    passed = step > boundaries if self.old_at_boundary else step >= boundaries
    index = tf.reduce_sum(tf.cast(passed, tf.int32))
    lr = tf.gather(tf.constant(self._values, tf.float32), index)
    if not self.warmup:
      return lr
    epoch = tf.cast(step, tf.float32) / tf.constant(self.epoch, tf.float32)
    ramp = tf.constant(self.initial, tf.float32) * epoch / tf.constant(self.warmup, tf.float32)
    return tf.where(epoch < tf.constant(self.warmup, tf.float32), ramp, lr)

  def value(self, step: int) -> float:
    """The same LR computed in NumPy (for tests and tables)."""
    if self.warmup:
      epoch = np.float32(step) / np.float32(self.epoch)
      if epoch < np.float32(self.warmup):
        return float(np.float32(self.initial) * epoch / np.float32(self.warmup))
    b = np.asarray(self.boundaries)
    return float(self._values[int(np.sum(b < step if self.old_at_boundary else b <= step))])

  def get_config(self):
    return {"initial": self.initial, "boundaries": self.boundaries, "factor": self.factor,
            "old_at_boundary": self.old_at_boundary, "warmup": self.warmup, "epoch": self.epoch}


@keras.utils.register_keras_serializable(package="tfrewind")
class Tabulated(LearningRateSchedule):
  """A Python `step -> lr` function evaluated once per step into a table.

  Lets any Python function drive a compiled train step exactly; steps past the
  table use its last value.
  """

  def __init__(self, values: Sequence[float]):
    self.values = [float(v) for v in values]
    self._table = None

  @classmethod
  def from_function(cls, fn: Callable[[int], float], steps: int) -> "Tabulated":
    return cls([fn(s) for s in range(int(steps))])

  def __call__(self, step):
    if self._table is None:
      self._table = tf.constant(self.values, tf.float32)
    step = tf.clip_by_value(tf.cast(step, tf.int64), 0, len(self.values) - 1)
    return tf.gather(self._table, step)

  def get_config(self):
    return {"values": self.values}


def as_schedule(lr: Union[float, LearningRateSchedule, Callable[[int], float]],
                steps: int) -> LearningRateSchedule:
  """A LearningRateSchedule from a float, a schedule, or a `step -> lr` function."""
  if isinstance(lr, LearningRateSchedule):
    return lr
  if isinstance(lr, (int, float, np.floating)):
    return StepDecay(float(lr), [], 1.0)
  if callable(lr):
    return Tabulated.from_function(lr, steps)
  raise ConfigError(f"lr must be a float, a LearningRateSchedule or a step -> lr function, "
                   f"got {lr!r}")


# Rewindable.shape values: replay the base schedule, or one of the retraining shapes.
_REPLAY, _SHAPES = 0, {"slr": 1, "clr": 2, "llr": 3}


@keras.utils.register_keras_serializable(package="tfrewind")
class Rewindable(LearningRateSchedule):
  """base(step - offset), a constant LR, or a retraining shape over a round.

  Its state lives in variables set between steps (by RewindCallback), so
  changing it never retraces the train function:
  * `rewind(to, at)`: from step `at` on, base(to + (step - at)) (weight and LR rewinding);
  * `hold(value)`: a constant (fine-tuning);
  * `restart(shape, at, steps, warmup, cycle)`: slr, clr or llr over the `steps`
    steps from `at` (tfrewind.plan documents the formulas), with lr_max = base(0)
    and lr_min = base(cycle - 1). The shapes are computed in float64 and
    rounded once to float32.

  Example:
    >>> lr = Rewindable(StepDecay(0.1, [100], 0.1))
    >>> lr.rewind(to=0, at=150)       # from step 150, replay the schedule from 0
    >>> float(lr(160))                # = base(10)
    0.1
  """

  def __init__(self, base: LearningRateSchedule):
    self.base = base
    self.offset = tf.Variable(0, dtype=tf.int64, trainable=False, name="lr_offset")
    self.constant = tf.Variable(-1.0, dtype=tf.float32, trainable=False, name="lr_constant")
    self.shape = tf.Variable(_REPLAY, dtype=tf.int32, trainable=False, name="lr_shape")
    # start, T, W, N of the current shape; lr_max, lr_min of the base schedule
    self.round = tf.Variable([0, 1, 0, 1], dtype=tf.int64, trainable=False, name="lr_round")
    self.range = tf.Variable([0.0, 0.0], dtype=tf.float64, trainable=False, name="lr_range")

  def __call__(self, step):
    step = tf.cast(step, tf.int64)
    replayed = tf.cast(self.base(step - self.offset), tf.float32)
    start, steps, warmup, cycle = tf.unstack(self.round)
    hi, lo = tf.unstack(self.range)
    t = step - start
    rest = tf.maximum(steps - warmup, 1)
    after = t - warmup
    warm = lo + (hi - lo) * tf.cast(t, tf.float64) / tf.cast(tf.maximum(warmup, 1), tf.float64)
    compressed = tf.cast(tf.cast(self.base(after * cycle // rest), tf.float32), tf.float64)
    cosine = lo + (hi - lo) * (1.0 + tf.cos(np.pi * tf.cast(after, tf.float64)
                                            / tf.cast(rest, tf.float64))) / 2.0
    linear = hi * (1.0 - tf.cast(t, tf.float64) / tf.cast(steps, tf.float64))
    shaped = tf.where(t < warmup, warm,
                      tf.where(tf.equal(self.shape, _SHAPES["slr"]), compressed, cosine))
    shaped = tf.where(tf.equal(self.shape, _SHAPES["llr"]), linear, shaped)
    value = tf.where(tf.equal(self.shape, _REPLAY), replayed, tf.cast(shaped, tf.float32))
    return tf.where(self.constant >= 0.0, self.constant, value)

  def rewind(self, to: int, at: int) -> None:
    """From optimizer step `at` on, the LR is base(to + (step - at))."""
    self.offset.assign(int(at) - int(to))
    self.constant.assign(-1.0)
    self.shape.assign(_REPLAY)

  def hold(self, value: float) -> None:
    """Use the constant `value` (fine-tuning) until the next rewind."""
    self.constant.assign(float(value))

  def restart(self, shape: str, at: int, steps: int, warmup: int, cycle: int) -> None:
    """From step `at` on, the retraining shape `shape` ("slr", "clr", "llr") over `steps`."""
    if shape not in _SHAPES:
      raise ConfigError(f"unknown LR shape {shape!r}: use one of {', '.join(_SHAPES)}")
    if not 0 <= warmup < steps:
      raise ConfigError(f"warm-up {warmup} must be shorter than the round ({steps} steps)")
    self.round.assign([int(at), int(steps), int(warmup), int(cycle)])
    self.range.assign([float(np.float32(self.base(0))), float(np.float32(self.base(cycle - 1)))])
    self.constant.assign(-1.0)
    self.shape.assign(_SHAPES[shape])

  def value(self, step: int) -> float:
    return float(self(tf.constant(step, tf.int64)).numpy())

  def get_config(self):
    # The state is not serialised: RewindCallback recomputes it from the step.
    return {"base": keras.optimizers.schedules.serialize(self.base)}

  @classmethod
  def from_config(cls, config):
    return cls(keras.optimizers.schedules.deserialize(config["base"]))
