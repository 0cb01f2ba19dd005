"""Linear mode connectivity (Frankle, Dziugaite, Roy & Carbin, ICML 2020): the network on the
straight line between two trained copies, and the error barrier along it.

  theta(alpha) = (1 - alpha) * theta_A + alpha * theta_B    for alpha in [0, 1]

Example:
  >>> path = tfrewind.build_model("resnet20")             # any model of the same architecture
  >>> for alpha in np.linspace(0, 1, 11):
  ...   tfrewind.interpolate(model_a, model_b, alpha, into=path)
  ...   tfrewind.reestimate_batchnorm(path, train_batches)
  ...   accuracies.append(path.evaluate(test, return_dict=True)["accuracy"])
  >>> tfrewind.barrier(accuracies)                        # in accuracy points
"""

from typing import Iterable, Sequence

import numpy as np

import tf_keras as keras
from tfrewind import snapshots
from tfrewind.pruning import sparsity
from tfrewind.errors import ConfigError


def alphas(count: int) -> np.ndarray:
  """`count` evenly spaced points of [0, 1], both ends included."""
  if int(count) != count or count < 2:
    raise ConfigError(f"alphas needs at least 2 points (0 and 1), got {count!r}")
  return np.linspace(0.0, 1.0, int(count))


def barrier(accuracies: Sequence[float]) -> float:
  """Points by which accuracy along the path dips below the mean of its two ends.

  100 * (mean(acc(0), acc(1)) - min over alpha of acc(alpha)), for accuracies on a grid
  of alphas from 0 to 1 (first and last entries); never negative.
  """
  a = np.asarray(accuracies, dtype=np.float64)
  if a.ndim != 1 or a.size < 2:
    raise ConfigError(f"barrier needs the accuracies of a path of at least 2 points, got {a!r}")
  return float(100.0 * ((a[0] + a[-1]) / 2.0 - a.min()))


def _moving_statistics(model):
  return [v for layer in model.submodules if isinstance(layer, keras.layers.BatchNormalization)
          for v in (layer.moving_mean, layer.moving_variance)]


def interpolate(model_a, model_b, alpha: float, into, statistics: str = "interpolate"):
  """Sets `into` to theta(alpha) of `model_a` (alpha 0) and `model_b` (alpha 1), by name.

  Every weight is interpolated (in float64, rounded once): trainable ones, and
  (statistics="interpolate")
  the BatchNorm moving statistics too; statistics="keep" leaves those of `into` for
  `reestimate_batchnorm`. Alpha 0 and 1 reproduce A and B bitwise; a weight pruned in both
  stays +0.0. Masks of `into` are left as they are (same-mask copies share them).
  Returns `into`.
  """
  alpha = float(alpha)
  if not 0.0 <= alpha <= 1.0:
    raise ConfigError(f"alpha must be in [0, 1], got {alpha!r}")
  if statistics not in ("interpolate", "keep"):
    raise ConfigError(f"statistics must be 'interpolate' or 'keep', got {statistics!r}")
  a, b = snapshots.snapshot(model_a), snapshots.snapshot(model_b)
  if a.weight_names != b.weight_names:
    raise ConfigError("model_a and model_b have different variables: interpolate two copies of "
                     "one network")
  skip = set() if statistics == "interpolate" else {v.name for v in _moving_statistics(into)}
  targets = {v.name: v for v in snapshots.restorable_weights(into)}
  for name, wa, wb in zip(a.weight_names, a.weights, b.weights):
    if name in skip:
      continue
    if name not in targets:
      raise ConfigError(f"{name!r} of model_a is not a variable of `into`")
    if alpha == 0.0:
      value = wa
    elif alpha == 1.0:
      value = wb
    else:
      # wa + alpha (wb - wa) in float64, rounded once: equal weights stay exactly equal.
      wa64 = wa.astype(np.float64)
      value = (wa64 + alpha * (wb.astype(np.float64) - wa64)).astype(wa.dtype)
    targets[name].assign(value)
  sparsity.apply_masks(into)
  return into


def reestimate_batchnorm(model, batches: Iterable) -> None:
  """Recomputes every BatchNorm's moving mean and variance as the average of its batch
  statistics over `batches` (images, or (images, labels)); nothing else changes.

  The i-th batch is weighed 1/(i+1) into a running average (momentum i/(i+1)), so the
  result is the plain mean over the batches, whatever the layers' own momentum.
  """
  layers = [l for l in model.submodules if isinstance(l, keras.layers.BatchNormalization)]
  saved = [l.momentum for l in layers]
  try:
    for i, batch in enumerate(batches):
      images = batch[0] if isinstance(batch, (tuple, list)) else batch
      for layer in layers:
        layer.momentum = i / (i + 1.0)
      model(images, training=True)
  finally:
    for layer, momentum in zip(layers, saved):
      layer.momentum = momentum
