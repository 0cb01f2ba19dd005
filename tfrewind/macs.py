"""Multiply-accumulates of one forward pass, dense and under the current masks.

A conv or dense layer costs (kept kernel weights) x (output positions): a
pruned weight costs nothing, and neither does a weight reading or writing a
channel that `tfrewind.slim` would remove (a pruned channel also removes its
share of the next layer; see tfrewind/pruning/channels.py). Other layers
(BatchNorm, ReLU, pooling, adds) are not counted, as is usual in the pruning
literature (Blalock et al. 2020).

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
  from tfrewind.pruning import channels, sparsity  # pylint: disable=g-import-not-at-top
  plan = None
  if getattr(model, "_is_graph_network", False) and not any(
      isinstance(l, keras.Model) for l in model.layers):
    plan = channels.plan(model)
  dense = pruned = 0
  for layer in sparsity.flat_layers(model):
    if not channels.is_weighted(layer):
      continue
    positions = _positions(layer)
    kept = channels.kept_weights(layer, plan)
    dense += kept.size * positions
    pruned += int(kept.sum()) * positions
  return {"dense_macs": dense, "pruned_macs": pruned,
          "speedup": round(dense / pruned, 3) if pruned else float("inf")}

