"""Gradual magnitude pruning (Zhu & Gupta 2017) as a Keras callback: the density falls while the
network trains from initialisation.

The sparsity at each prune step is TF-MOT's own `PolynomialDecay(0, s_f, begin, end, power,
frequency)`, evaluated where TF-MOT prunes (begin, begin + frequency, ..., <= end). Its step is
TF-MOT's `pruning_step`, which its wrapper increments inside the forward pass before it updates
the mask (pruning_wrapper.PruneLowMagnitude.call): the update that starts at
optimizer.iterations = i masks with the schedule's step i + 1, and step 0 is never evaluated. So
the prune of schedule step t happens before the update at optimizer step t - 1, and the kept
counts after every update equal those of TF-MOT's wrapper trained in fit with
UpdatePruningStep (tests/test_baselines.py runs both). Masks come from tfrewind.prune, so any
scope, structure and weight criterion applies, with one global rule, and masks only shrink.
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
  """{TF-MOT pruning step: density set there}, from TF-MOT's PolynomialDecay (float32, as
  TF-MOT). Its pruning step is optimizer.iterations + 1 (the module's docstring), so step 0,
  which TF-MOT never reaches, is left out."""
  if not 0 <= begin < end or every < 1:
    raise ConfigError(f"gradual pruning needs 0 <= begin < end and every >= 1, got begin={begin} "
                      f"end={end} every={every}")
  schedule = pruning_schedule.PolynomialDecay(0.0, 1.0 - float(density), begin, end, power=power,
                                              frequency=every)
  out = {}
  for step in range(begin, end + 1, every):
    if step == 0:
      continue
    should, sparsity_t = schedule(tf.constant(step, tf.int64))
    if bool(should):
      out[step] = 1.0 - float(sparsity_t.numpy())
  return out


class GradualCallback(rewind.StepCallback):
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
    if spe > 1 and any((s - 1) % spe for s in self.densities):
      # A prune lands before the update at optimizer step (prune step - 1): a callback sees
      # only the first step of each compiled call.
      raise ConfigError(f"gradual prunes before the update at optimizer step (prune step - 1), "
                        f"which must be a multiple of steps_per_execution={spe}: make "
                        f"--gradual_begin one more than a multiple of it and --gradual_every a "
                        f"multiple of it")

  def on_train_batch_begin(self, batch, logs=None):
    step = self._step(batch) + 1  # TF-MOT's pruning_step of this update
    if step in self.densities:
      achieved = target_lib.prune(self.model, self.densities[step], self.prune)
      if self.verbose >= 2:
        logging.info("step %d: gradual prune to density %.4f", step, achieved)

  def on_epoch_end(self, epoch, logs=None):
    if logs is not None:
      logs["density"] = sparsity.density(self.model, self.prune.keep_dense)
