"""Named networks: one registry, one builder, one table of counts.

Names: resnet{6n+2} (resnet20, resnet56, resnet110, ...), wrn{depth}_{width}
(wrn16_8), vgg{11,13,16,19}, resnet50.
"""

from typing import Dict, List

import numpy as np

import tf_keras as keras

from tfrewind import names
from tfrewind.models import resnet, vgg, wrn

# The networks of the two papers; `tfrewind models` and the preset test cover them all.
PRESETS = ("resnet20", "resnet56", "resnet110", "wrn16_8", "vgg16", "vgg19", "resnet50")

# One builder per family of tfrewind.names.MODEL_FAMILIES (the names live there, TF-free).
_BUILDERS = {
    "resnet50": lambda m, kw: resnet.resnet50(**kw),
    "cifar_resnet": lambda m, kw: resnet.cifar_resnet(int(m.group(1)), **kw),
    "wrn": lambda m, kw: wrn.wide_resnet(int(m.group(1)), int(m.group(2)), **kw),
    "vgg": lambda m, kw: vgg.vgg(int(m.group(1)), **kw),
}


def build_model(name: str, num_classes: int = 10, **overrides) -> keras.Model:
  """Builds a named network with the papers' defaults.

  Example:
    >>> model = tfrewind.build_model("resnet20")
    >>> model = tfrewind.build_model("wrn16_8", num_classes=100, l2=5e-4)

  Args:
    name: see the module docstring.
    num_classes: logits.
    **overrides: input_shape, initializer, bn_momentum, bn_epsilon, l2, and
      for CIFAR ResNets width and shortcut ("projection" or "pad").

  Raises:
    ValueError: for an unknown name or override.
  """
  if not isinstance(name, str):
    raise ValueError(f"model name must be a string, got {name!r}")
  if int(num_classes) != num_classes or num_classes < 1:
    raise ValueError(f"num_classes must be a positive integer, got {num_classes!r}")
  found = names.match_model(name)
  if found is None:
    raise ValueError(f"unknown model {name!r}: use {names.MODEL_HELP}")
  family, match = found
  try:
    return _BUILDERS[family](match, dict(num_classes=int(num_classes), **overrides))
  except TypeError as e:  # an unexpected keyword
    raise ValueError(f"bad override for model {name!r}: {e}") from None


def prunable_kernels(model) -> List:
  """Every Conv and Dense kernel of a model (wrapped or not): what tfrewind prunes."""
  from tfrewind.pruning import sparsity  # pylint: disable=g-import-not-at-top
  layers = [l.layer if isinstance(l, sparsity.Masked) else l for l in model.layers]
  return [l.kernel for l in layers if sparsity.is_prunable_layer(l)]


def counts(model) -> Dict[str, int]:
  """Trainable parameters and prunable kernel parameters."""
  return {"trainable": int(sum(np.prod(w.shape) for w in model.trainable_weights)),
          "prunable": int(sum(np.prod(k.shape) for k in prunable_kernels(model))),
          "prunable_layers": len(prunable_kernels(model))}
