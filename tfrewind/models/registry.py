"""Named networks: one registry, one builder, one table of counts.

Names: resnet{6n+2} (resnet20, resnet56, resnet110, ...), wrn{depth}_{width}
(wrn16_8), vgg{11,13,16,19}, and the ImageNet resnet{18,34,50,101,152}.
"""

import dataclasses
import inspect
from typing import Dict, List

import numpy as np

import tf_keras as keras

from tfrewind import names
from tfrewind.errors import ConfigError
from tfrewind.models import common, resnet, vgg, wrn

# The networks of the two papers; `tfrewind models` and the preset test cover them all.
PRESETS = ("resnet20", "resnet56", "resnet110", "wrn16_8", "vgg16", "vgg19", "resnet34",
           "resnet50")

# One builder per family of tfrewind.names.MODEL_FAMILIES (the names live there, TF-free):
# (function, the arguments its name gives, e.g. a ResNet's depth).
_BUILDERS = {
    "imagenet_resnet": (resnet.imagenet_resnet, lambda m: (int(m.group(1)),)),
    "cifar_resnet": (resnet.cifar_resnet, lambda m: (int(m.group(1)),)),
    "wrn": (wrn.wide_resnet, lambda m: (int(m.group(1)), int(m.group(2)))),
    "vgg": (vgg.vgg, lambda m: (int(m.group(1)),)),
}
_NAMED = {"imagenet_resnet": 1, "cifar_resnet": 1, "wrn": 2, "vgg": 1}  # how many the name gives


def overrides_of(family: str) -> List[str]:
  """What build_model accepts for a family: its builder's keywords and every common.Options."""
  function, _ = _BUILDERS[family]
  params = list(inspect.signature(function).parameters.values())
  own = [p.name for p in params[_NAMED[family]:] if p.kind is not p.VAR_KEYWORD]
  return sorted(set(own) | {f.name for f in dataclasses.fields(common.Options)})


def build_model(name: str, num_classes: int = 10, **overrides) -> keras.Model:
  """Builds a named network with the papers' defaults.

  Example:
    >>> model = tfrewind.build_model("resnet20")
    >>> model = tfrewind.build_model("wrn16_8", num_classes=100, l2=5e-4)

  Args:
    name: see the module docstring.
    num_classes: logits.
    **overrides: input_shape, initializer, bn_momentum, bn_epsilon, l2, and
      decay_all, classifier_stddev, fixed_padding (common.Options), and for CIFAR
      ResNets width and shortcut ("projection", "projection_all" or "pad").

  Raises:
    ConfigError: for an unknown name or override (checked against the builder's
      signature and common.Options).
  """
  if not isinstance(name, str):
    raise ConfigError(f"model name must be a string, got {name!r}")
  if int(num_classes) != num_classes or num_classes < 1:
    raise ConfigError(f"num_classes must be a positive integer, got {num_classes!r}")
  found = names.match_model(name)
  if found is None:
    raise ConfigError(f"unknown model {name!r}: use {names.MODEL_HELP}")
  family, match = found
  allowed = overrides_of(family)
  unknown = sorted(set(overrides) - set(allowed))
  if unknown:
    raise ConfigError(f"model {name!r} takes no {', '.join(unknown)}: its overrides are "
                      f"{', '.join(a for a in allowed if a != 'num_classes')}")
  if "initializer" in overrides:
    try:
      keras.initializers.get(overrides["initializer"])
    except ValueError:
      raise ConfigError(f"unknown initializer {overrides['initializer']!r}: use a Keras "
                        f"initializer name, e.g. he_uniform or variance_scaling") from None
  function, named = _BUILDERS[family]
  return function(*named(match), num_classes=int(num_classes), **overrides)


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
