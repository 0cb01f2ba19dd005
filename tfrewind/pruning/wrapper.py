"""`Masked`, the pruning wrapper: TF-MOT's `PruneLowMagnitude` with the mask applied in the
forward pass only; and where a model's wrappers, masks and optimizer slots are.

Why `Masked` overrides `call`: TF-MOT's wrapper runs `kernel.assign(kernel *
mask)` before every forward pass and lets the optimizer update pruned weights
in between, so a pruned weight is non-zero after every step (until the next
forward pass or `UpdatePruningStep.on_epoch_end`), and a checkpoint written
mid-epoch holds revived weights. `Masked` instead feeds `kernel * mask` to the
layer: the gradient of a pruned weight is exactly 0, `prune` zeroes the
optimizer slots of pruned weights, so no optimizer update (momentum, Nesterov,
L2, decoupled weight decay) can move a pruned weight off 0. There is no
per-step assign, cond or step counter, which is also what makes pruned training
as fast as dense.
"""

from typing import List

import tensorflow as tf
from tensorflow_model_optimization.python.core.sparsity.keras import pruning_wrapper

import tf_keras as keras
from tfrewind.errors import ConfigError
from tfrewind.pruning import schedules

_PRUNABLE_TYPES = (keras.layers.Dense, keras.layers.Conv2D, keras.layers.Conv1D,
                   keras.layers.Conv3D)


@keras.utils.register_keras_serializable(package="tfrewind")
class Masked(pruning_wrapper.PruneLowMagnitude):
  """TF-MOT pruning wrapper whose mask is applied in the forward pass only.

  Use `tfrewind.prunable(model)` rather than constructing it directly.
  """

  def __init__(self, layer, pruning_schedule=None, **kwargs):
    super().__init__(layer, pruning_schedule=pruning_schedule or schedules.OneShot(1.0),
                     **kwargs)

  def build(self, input_shape):
    super().build(input_shape)
    # The attribute under which the wrapped layer keeps each prunable weight
    # ("kernel", "depthwise_kernel", ...), found by identity.
    self._weight_attrs = []
    for weight, _, _ in self.pruning_vars:
      names = [k for k, v in vars(self.layer).items() if v is weight]
      if not names:
        raise ConfigError(f"cannot find the attribute holding {weight.name} in {self.layer.name}")
      self._weight_attrs.append(names[0])

  def call(self, inputs, training=None, **kwargs):
    saved = []
    try:
      for attr, (weight, mask, _) in zip(self._weight_attrs, self.pruning_vars):
        value = tf.convert_to_tensor(weight)
        saved.append((attr, getattr(self.layer, attr)))
        # object.__setattr__ bypasses Keras' attribute tracking, which would
        # otherwise drop the variable from the layer's weights.
        object.__setattr__(self.layer, attr, value * tf.cast(mask, value.dtype))
      if "training" in self._call_args:
        return self.layer.call(inputs, training=training, **kwargs)
      return self.layer.call(inputs, **kwargs)
    finally:
      for attr, original in saved:
        object.__setattr__(self.layer, attr, original)

  @property
  def _call_args(self):
    import inspect  # pylint: disable=g-import-not-at-top
    return inspect.getfullargspec(self.layer.call).args

  @classmethod
  def from_config(cls, config):
    config = dict(config)
    config["pruning_schedule"] = keras.utils.deserialize_keras_object(
        config["pruning_schedule"])
    config["layer"] = keras.layers.deserialize(config.pop("layer"))
    return cls(**config)


def flat_layers(model):
  """Every layer of `model`, nested models opened, in order."""
  for layer in model.layers:
    if isinstance(layer, keras.Model):
      yield from flat_layers(layer)
    else:
      yield layer


def is_prunable_layer(layer) -> bool:
  """True for the layers whose kernels tfrewind prunes: every Conv and Dense."""
  return isinstance(layer, _PRUNABLE_TYPES) and not isinstance(layer, Masked)


def wrappers(model) -> List[Masked]:
  """Every pruning wrapper of `model`, nested models included, in layer order."""
  return pruning_wrapper.collect_prunable_layers(model)


def _checked_wrappers(model):
  found = wrappers(model)
  if not found:
    raise ConfigError(f"model {getattr(model, 'name', model)!r} has no pruning wrapper: "
                     "call tfrewind.prunable(model) first")
  return found


def _pruning_vars(model):
  return [pv for w in _checked_wrappers(model) for pv in w.pruning_vars]


def optimizer_slots(optimizer, var) -> list:
  """The optimizer's per-weight state (momentum, ...) of `var`; [] before it is built."""
  if optimizer is None:
    return []
  inner = getattr(optimizer, "inner_optimizer", None)  # LossScaleOptimizer
  if inner is not None:
    return optimizer_slots(inner, var)
  if hasattr(optimizer, "get_slot_names"):  # legacy optimizers
    return [optimizer.get_slot(var, n) for n in optimizer.get_slot_names()
            if _has_slot(optimizer, var, n)]
  # tf_keras optimizers name a slot "[<optimizer>/]<slot>/<variable's name>".
  base = "/" + var.name.split(":")[0]
  found = []
  for v in getattr(optimizer, "variables", []):
    name = v.name.split(":")[0]
    if v.shape == var.shape and name.endswith(base) and name[:-len(base)].count("/") <= 1:
      found.append(v)
  return found


def _has_slot(optimizer, var, name):
  try:
    optimizer.get_slot(var, name)
    return True
  except (KeyError, ValueError):
    return False
