"""Gradual magnitude pruning (Zhu & Gupta 2017) as a Keras callback: the density falls while the
network trains from initialisation.

The sparsity at each prune step is TF-MOT's own `PolynomialDecay(0, s_f, begin, end, power,
frequency)`, evaluated where TF-MOT prunes (begin, begin + frequency, ..., <= end); the prune at
step t happens before update t, as TF-MOT's wrapper masks in the forward pass of step t. Masks
come from tfrewind.prune, so any scope, structure and weight criterion applies, with one global
rule, and masks only shrink.
"""

from typing import Dict, Optional

import tensorflow as tf
from absl import logging
from tensorflow_model_optimization.python.core.sparsity.keras import pruning_schedule

from tfrewind import rewind
from tfrewind.errors import ConfigError
from tfrewind.pruning import sparsity
from tfrewind.pruning import target as target_lib
from tfrewind.pruning.spec import PruneSpec


def densities(density: float, begin: int, end: int, every: int, power: float = 3.0
              ) -> Dict[int, float]:
  """{prune step: density set there}, from TF-MOT's PolynomialDecay (float32, as TF-MOT)."""
  if not 0 <= begin < end or every < 1:
    raise ConfigError(f"gradual pruning needs 0 <= begin < end and every >= 1, got begin={begin} "
                      f"end={end} every={every}")
  schedule = pruning_schedule.PolynomialDecay(0.0, 1.0 - float(density), begin, end, power=power,
                                              frequency=every)
  out = {}
  for step in range(begin, end + 1, every):
    should, sparsity_t = schedule(tf.constant(step, tf.int64))
    if bool(should):
      out[step] = 1.0 - float(sparsity_t.numpy())
  return out


class GradualCallback(rewind._StepCallback):  # pylint: disable=protected-access
  """Prunes a prunable model during its own training, to `density` by step `end`.

  Example:
    >>> model = tfrewind.prunable(my_model())
    >>> model.compile(keras.optimizers.SGD(0.1, momentum=0.9), loss)
    >>> model.fit(ds, epochs=30, steps_per_epoch=100,
    ...           callbacks=[tfrewind.GradualCallback(0.1, begin=0, end=2000, every=100)])

  Args:
    density: the final density.
    begin, end, every: the first prune's step, the last one's (at most), and the frequency.
    power: the polynomial's exponent (Zhu & Gupta: 3).
    prune: a tfrewind.PruneSpec (scope, structure, weight criterion, --keep_dense).
  """

  def __init__(self, density: float, begin: int, end: int, every: int = 100, power: float = 3.0,
               prune: Optional[PruneSpec] = None, verbose: int = 1):
    super().__init__()
    self.prune = prune or PruneSpec()
    self.densities = densities(density, begin, end, every, power)
    self.verbose = verbose
    self._supports_tf_logs = True

  def on_train_begin(self, logs=None):
    if not sparsity.wrappers(self.model):
      raise ConfigError("GradualCallback needs a prunable model: call tfrewind.prunable(model) "
                        "before compiling")
    spe = getattr(self.model, "_steps_per_execution", None)
    spe = int(spe.numpy()) if spe is not None else 1
    if spe > 1 and any(s % spe for s in self.densities):
      raise ConfigError(f"gradual prune steps must be multiples of steps_per_execution={spe}: "
                        f"make --gradual_begin and --gradual_every multiples of it")

  def on_train_batch_begin(self, batch, logs=None):
    step = self._step(batch)
    if step in self.densities:
      achieved = target_lib.prune(self.model, self.densities[step], self.prune)
      if self.verbose >= 2:
        logging.info("step %d: gradual prune to density %.4f", step, achieved)

  def on_epoch_end(self, epoch, logs=None):
    if logs is not None:
      logs["density"] = sparsity.density(self.model, self.prune.keep_dense)
