"""Multiply-accumulates of one forward pass, dense and under the current masks.

Two counts. "slim", for a network pruned by a channel structure (it has ChannelNorms): what
`tfrewind.slim` computes, every weight of a kept (input, output) channel pair, zero or not (a
channel of a residual stage that only some of its writers prune stays, and its zeros cost).
"sparse", for the others (unstructured, N:M): a pruned weight costs nothing, nor does a weight
reading or writing a channel that slim would remove; a theoretical count, which only sparse
kernels could realise. Other layers (BatchNorm, ReLU, pooling, adds) are not counted, as is
usual in the pruning literature (Blalock et al. 2020).

Example:
  >>> tfrewind.flops(model)
  {'dense_macs': 40551424, 'pruned_macs': 8104960, 'speedup': 5.003, 'count': 'sparse'}
"""

from typing import Dict, Optional

import numpy as np

import tf_keras as keras
from tfrewind.errors import ConfigError

COUNTS = ("slim", "sparse")


def _positions(layer) -> int:
  shape = layer.output_shape
  if isinstance(shape, list):
    shape = shape[0]
  return int(np.prod([d for d in shape[1:-1]])) if len(shape) > 2 else 1


def flops(model, count: Optional[str] = None) -> Dict:
  """{"dense_macs", "pruned_macs", "speedup", "count"} of one image's forward pass.

  count: "slim" or "sparse" (see the module docstring); default "slim" for a network with
    ChannelNorms (built for a channel structure), else "sparse".
  """
  from tfrewind.pruning import channels, sparsity  # pylint: disable=g-import-not-at-top
  if count is None:
    count = "slim" if any(isinstance(l, sparsity.ChannelNorm)
                          for l in sparsity.flat_layers(model)) else "sparse"
  if count not in COUNTS:
    raise ConfigError(f"count must be one of {COUNTS}, got {count!r}")
  plan = None
  if getattr(model, "_is_graph_network", False) and not any(
      isinstance(l, keras.Model) for l in model.layers):
    plan = channels.plan(model)
  dense = pruned = 0
  for layer in sparsity.flat_layers(model):
    if not channels.is_weighted(layer):
      continue
    positions = _positions(layer)
    kept = channels.kept_weights(layer, plan, sparse=count == "sparse")
    dense += kept.size * positions
    pruned += int(kept.sum()) * positions
  return {"dense_macs": dense, "pruned_macs": pruned,
          "speedup": round(dense / pruned, 3) if pruned else float("inf"), "count": count}
