"""Masks on tf_keras models through TF-MOT's pruning wrapper.

`prunable` wraps every Conv and Dense layer in `Masked`, a `PruneLowMagnitude`
whose masks are set only by `prune` (one global computation over all kernels)
and never recomputed per layer by TF-MOT.

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

from typing import Dict, List

import numpy as np
import tensorflow as tf
from tensorflow_model_optimization.python.core.sparsity.keras import pruning_wrapper

import tf_keras as keras
from tfrewind.pruning import masks as masks_lib
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
        raise ValueError(f"cannot find the attribute holding {weight.name} in {self.layer.name}")
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


def is_prunable_layer(layer) -> bool:
  """True for the layers whose kernels tfrewind prunes: every Conv and Dense."""
  return isinstance(layer, _PRUNABLE_TYPES) and not isinstance(layer, Masked)


def prunable(model: keras.Model, schedule=None) -> keras.Model:
  """Wraps every Conv and Dense layer of `model` so that it can be pruned.

  The returned model shares the original layers (and so their weights); biases,
  BatchNorm and every other layer are left as they are.

  Example:
    >>> model = tfrewind.prunable(keras.Sequential([
    ...     keras.layers.Conv2D(8, 3, input_shape=(8, 8, 3)),
    ...     keras.layers.Flatten(), keras.layers.Dense(10)]))
    >>> tfrewind.density(model)
    1.0

  Args:
    model: a Sequential or functional tf_keras model.
    schedule: recorded on each wrapper (metadata only, see schedules.py).

  Raises:
    ValueError: if the model is subclassed or has nothing to prune.
  """
  if not isinstance(model, keras.Model):
    raise ValueError(f"prunable expects a tf_keras Model, got {type(model).__name__}")
  if wrappers(model):
    return model
  if not (isinstance(model, keras.Sequential) or model._is_graph_network):  # pylint: disable=protected-access
    raise ValueError(f"prunable needs a Sequential or functional model; {model.name!r} is a "
                     "subclassed model: build it with the functional API")
  if not any(is_prunable_layer(l) for l in model.submodules if isinstance(l, keras.layers.Layer)):
    raise ValueError(f"model {model.name!r} has no Conv or Dense layer: nothing to prune")

  def wrap(layer):
    if isinstance(layer, keras.Model):
      return keras.models.clone_model(layer, clone_function=wrap)
    if is_prunable_layer(layer):
      return Masked(layer, pruning_schedule=schedule)
    return layer

  return keras.models.clone_model(model, clone_function=wrap)


def wrappers(model) -> List[Masked]:
  """Every pruning wrapper of `model`, nested models included, in layer order."""
  return pruning_wrapper.collect_prunable_layers(model)


def _checked_wrappers(model):
  found = wrappers(model)
  if not found:
    raise ValueError(f"model {getattr(model, 'name', model)!r} has no pruning wrapper: "
                     "call tfrewind.prunable(model) first")
  return found


def _pruning_vars(model):
  return [pv for w in _checked_wrappers(model) for pv in w.pruning_vars]


def kernel_names(model) -> List[str]:
  """"<layer>/<variable>" of every prunable kernel, e.g. "stem/kernel:0", in layer order.

  Built from the layer name because a variable's own name loses its layer
  scope when a saved model is loaded.
  """
  return [f"{w.layer.name}/{weight.name.split('/')[-1]}"
          for w in _checked_wrappers(model) for weight, _, _ in w.pruning_vars]


def get_masks(model) -> Dict[str, np.ndarray]:
  """{kernel variable name: 0/1 float32 NumPy mask}, in layer order."""
  return {name: mask.numpy()
          for name, (_, mask, _) in zip(kernel_names(model), _pruning_vars(model))}


def _density(model) -> float:
  """Fraction of prunable kernel weights that the masks keep."""
  counts = [(float(np.sum(m.numpy())), int(np.prod(m.shape))) for _, m, _ in _pruning_vars(model)]
  return sum(c for c, _ in counts) / sum(n for _, n in counts)


density = _density


def layer_densities(model) -> Dict[str, float]:
  """{kernel variable name: fraction of its weights kept}."""
  return {name: float(m.mean()) for name, m in get_masks(model).items()}


def prune(model, density: float, scope: str = "global", structure: str = "unstructured",
          criterion: str = "magnitude", seed: int = 0) -> float:
  """Sets the masks to keep `density` of the prunable weights, from the current weights.

  Weights already pruned stay pruned. Pruned weights and their optimizer slots
  (momentum, ...) are set to exactly 0, so training cannot revive them.

  Example:
    >>> tfrewind.prune(model, density=0.2)   # one global magnitude threshold
    0.2

  Args:
    model: a model returned by `prunable`.
    density: fraction to keep, of all prunable weights (global) or of each
      kernel (layerwise); of output channels with structure="channel".
    scope: "global" or "layerwise".
    structure: "unstructured" or "channel".
    criterion: "magnitude", or "random" for the control.
    seed: seed of the random criterion.

  Returns:
    The density of the model after pruning.
  """
  pvars = _pruning_vars(model)
  weights = [w.numpy() for w, _, _ in pvars]
  old = [m.numpy() for _, m, _ in pvars]
  new = masks_lib.compute_masks(weights, density, old, scope=scope, structure=structure,
                                criterion=criterion, seed=seed)
  set_masks(model, new)
  return _density(model)


def set_masks(model, new_masks) -> None:
  """Assigns masks (a list in layer order), zeroing pruned weights and their slots."""
  pvars = _pruning_vars(model)
  if len(new_masks) != len(pvars):
    raise ValueError(f"expected {len(pvars)} masks, got {len(new_masks)}")
  for (weight, mask, _), m in zip(pvars, new_masks):
    m = np.asarray(m, dtype=mask.dtype.as_numpy_dtype)
    if m.shape != tuple(mask.shape):
      raise ValueError(f"mask for {weight.name} has shape {m.shape}, expected {tuple(mask.shape)}")
    mask.assign(m)
  apply_masks(model)


def apply_masks(model) -> None:
  """Sets pruned weights and their optimizer slots to exactly +0.0."""
  optimizer = getattr(model, "optimizer", None)
  for weight, mask, _ in _pruning_vars(model):
    m = mask.numpy()
    weight.assign(masks_lib.apply(weight.numpy(), m))
    for slot in optimizer_slots(optimizer, weight):
      slot.assign(masks_lib.apply(slot.numpy(), m))


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
