"""Multiply-accumulates of one forward pass, dense and under the current masks.

A conv or dense layer costs (kept kernel weights) x (output positions): a
pruned weight costs nothing. Other layers (BatchNorm, ReLU, pooling, adds) are
not counted, as is usual in the pruning literature (Blalock et al. 2020).

Example:
  >>> tfrewind.flops(model)
  {'dense_macs': 40551424, 'pruned_macs': 8104960, 'speedup': 5.003}
"""

from typing import Dict

import numpy as np

import tf_keras as keras


def _positions(layer) -> int:
  shape = layer.output_shape
  if isinstance(shape, list):
    shape = shape[0]
  return int(np.prod([d for d in shape[1:-1]])) if len(shape) > 2 else 1


def flops(model) -> Dict[str, float]:
  """{"dense_macs", "pruned_macs", "speedup"} of one image's forward pass."""
  from tfrewind.pruning import sparsity  # pylint: disable=g-import-not-at-top
  dense = pruned = 0
  for layer in _layers(model):
    inner = layer.layer if isinstance(layer, sparsity.Masked) else layer
    if not isinstance(inner, (keras.layers.Conv2D, keras.layers.Dense)):
      continue
    positions = _positions(layer)
    kernel = inner.kernel
    total = int(np.prod(kernel.shape))
    kept = total
    if isinstance(layer, sparsity.Masked):
      kept = int(np.sum(layer.pruning_vars[0][1].numpy()))
    dense += total * positions
    pruned += kept * positions
  return {"dense_macs": dense, "pruned_macs": pruned,
          "speedup": round(dense / pruned, 3) if pruned else float("inf")}


def _layers(model):
  for layer in model.layers:
    if isinstance(layer, keras.Model):
      yield from _layers(layer)
    else:
      yield layer
