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

Channel pruning (`structure="channel"`) also silences the channel after the
conv: a pruned output channel of a conv followed by BatchNormalization would
otherwise still emit BatchNorm's beta (a learned constant), so the channel
would not really be gone and no smaller network could compute the same
function. `prunable(model, structure="channel")` therefore turns each such
BatchNormalization into a `ChannelNorm`, whose gamma and beta are masked by
the conv's dead channels (the same forward-only masking as `Masked`). The
variables and checkpoint layout stay those of BatchNormalization, so a dense
checkpoint serves unstructured and channel branches alike. `tfrewind.slim`
relies on this to remove pruned channels physically.
"""

from typing import Dict, List, Tuple

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


@keras.utils.register_keras_serializable(package="tfrewind")
class ChannelNorm(keras.layers.BatchNormalization):
  """BatchNormalization whose channels die with the output channels of its conv.

  `source` names the prunable layer it follows; `prunable(..., structure="channel")`
  links it to that layer's mask. Unlinked (e.g. just after `load_model`) it is
  a plain BatchNormalization: its dead channels hold gamma = beta = 0, so it
  still emits exact zeros there in inference, but training it needs the link
  back (`tfrewind.prunable(model, structure="channel")` restores it).
  """

  def __init__(self, source: str = "", **kwargs):
    super().__init__(**kwargs)
    self.source = source
    object.__setattr__(self, "_source_mask", None)

  def get_config(self):
    return {**super().get_config(), "source": self.source}

  def alive(self):
    """1.0 for each channel whose source conv keeps a weight, else 0.0 (a tensor)."""
    mask = self._source_mask
    axes = list(range(len(mask.shape) - 1))
    return tf.cast(tf.reduce_max(mask, axis=axes) > 0, self.dtype)

  def call(self, inputs, training=None):
    if self._source_mask is None:
      return super().call(inputs, training=training)
    alive = self.alive()
    saved = [(a, getattr(self, a)) for a in ("gamma", "beta") if getattr(self, a) is not None]
    try:
      for attr, value in saved:
        object.__setattr__(self, attr, tf.convert_to_tensor(value) * alive)
      return super().call(inputs, training=training)
    finally:
      for attr, value in saved:
        object.__setattr__(self, attr, value)


def _inbound_layers(layer):
  """The layers feeding `layer`'s first call ([] for an unconnected layer)."""
  nodes = getattr(layer, "_inbound_nodes", [])
  if not nodes:
    return []
  inbound = nodes[0].inbound_layers
  return list(inbound) if isinstance(inbound, (list, tuple)) else [inbound]


def _followers(model) -> Dict[str, str]:
  """{BatchNormalization layer name: name of the prunable layer it directly follows}."""
  found = {}
  for layer in flat_layers(model):
    if isinstance(layer, keras.layers.BatchNormalization):
      inbound = _inbound_layers(layer)
      if len(inbound) == 1:
        source = inbound[0].layer if isinstance(inbound[0], Masked) else inbound[0]
        if isinstance(source, _PRUNABLE_TYPES):
          found[layer.name] = source.name
  return found


def flat_layers(model):
  """Every layer of `model`, nested models opened, in order."""
  for layer in model.layers:
    if isinstance(layer, keras.Model):
      yield from flat_layers(layer)
    else:
      yield layer


def channel_norms(model) -> List[Tuple[ChannelNorm, "Masked"]]:
  """(ChannelNorm, the Masked wrapper of its source) pairs of `model`."""
  by_name = {w.layer.name: w for w in wrappers(model)}
  pairs = []
  for layer in flat_layers(model):
    if isinstance(layer, ChannelNorm):
      if layer.source not in by_name:
        raise ValueError(f"ChannelNorm {layer.name} follows {layer.source!r}, which is not a "
                         "pruned layer of this model")
      pairs.append((layer, by_name[layer.source]))
  return pairs


def _link_norms(model) -> None:
  for norm, wrapper in channel_norms(model):
    object.__setattr__(norm, "_source_mask", wrapper.pruning_vars[0][1])


def require_channel_norms(model) -> None:
  """Links each ChannelNorm to its conv's mask; ValueError if a plain BatchNorm follows a conv."""
  layers = {l.name: l for l in flat_layers(model)}
  plain = sorted(n for n in _followers(model) if not isinstance(layers[n], ChannelNorm))
  if plain:
    raise ValueError(f"channel pruning must silence the BatchNorm after each pruned conv "
                     f"({', '.join(plain[:3])}{', ...' if len(plain) > 3 else ''}): build the "
                     f"model with tfrewind.prunable(model, structure='channel')")
  _link_norms(model)


def silences_channels(structure: str) -> bool:
  """Whether `structure` removes whole channels (so the BatchNorm after each must follow)."""
  return structure != "unstructured"


def is_prunable_layer(layer) -> bool:
  """True for the layers whose kernels tfrewind prunes: every Conv and Dense."""
  return isinstance(layer, _PRUNABLE_TYPES) and not isinstance(layer, Masked)


def prunable(model: keras.Model, schedule=None, structure: str = "unstructured") -> keras.Model:
  """Wraps every Conv and Dense layer of `model` so that it can be pruned.

  The returned model shares the original layers (and so their weights); biases,
  BatchNorm and every other layer are left as they are, except that with
  structure="channel" each BatchNormalization right after a Conv/Dense becomes
  a `ChannelNorm` (same weights) so that a pruned channel is silent after it too.

  Example:
    >>> model = tfrewind.prunable(keras.Sequential([
    ...     keras.layers.Conv2D(8, 3, input_shape=(8, 8, 3)),
    ...     keras.layers.Flatten(), keras.layers.Dense(10)]))
    >>> tfrewind.density(model)
    1.0

  Args:
    model: a Sequential or functional tf_keras model.
    schedule: recorded on each wrapper (metadata only, see schedules.py).
    structure: "unstructured", "channel", "structured_a" or "structured_b": the
      structure `prune` will be called with.

  Raises:
    ValueError: if the model is subclassed or has nothing to prune.
  """
  if not isinstance(model, keras.Model):
    raise ValueError(f"prunable expects a tf_keras Model, got {type(model).__name__}")
  if structure not in masks_lib.STRUCTURES:
    raise ValueError(f"structure must be one of {masks_lib.STRUCTURES}, got {structure!r}")
  if wrappers(model):
    if silences_channels(structure):
      require_channel_norms(model)
    return model
  if not (isinstance(model, keras.Sequential) or model._is_graph_network):  # pylint: disable=protected-access
    raise ValueError(f"prunable needs a Sequential or functional model; {model.name!r} is a "
                     "subclassed model: build it with the functional API")
  if not any(is_prunable_layer(l) for l in model.submodules if isinstance(l, keras.layers.Layer)):
    raise ValueError(f"model {model.name!r} has no Conv or Dense layer: nothing to prune")

  followers = _followers(model) if silences_channels(structure) else {}
  copies = []

  def wrap(layer):
    if isinstance(layer, keras.Model):
      return keras.models.clone_model(layer, clone_function=wrap)
    if is_prunable_layer(layer):
      return Masked(layer, pruning_schedule=schedule)
    if layer.name in followers and not isinstance(layer, ChannelNorm):
      config = layer.get_config()
      config["source"] = followers[layer.name]
      copies.append((layer, ChannelNorm.from_config(config)))
      return copies[-1][1]
    return layer

  result = keras.models.clone_model(model, clone_function=wrap)
  for old, new in copies:
    new.set_weights(old.get_weights())
  _link_norms(result)
  return result


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
          criterion: str = "magnitude", seed: int = 0, count: str = "weights",
          classifier: str = "fixed", level: int = 1) -> float:
  """Sets the masks to keep `density` of the prunable weights, from the current weights.

  Weights already pruned stay pruned. Pruned weights and their optimizer slots
  (momentum, ...) are set to exactly 0, so training cannot revive them.

  Example:
    >>> tfrewind.prune(model, density=0.2)   # one global magnitude threshold
    0.2

  Args:
    model: a model returned by `prunable`.
    density: fraction to keep, of all prunable weights (global) or of each
      kernel (layerwise). With structure="channel" whole channels go, as many as
      bring the kept weights closest to it (count="weights"), or it counts
      channels (count="channels"). Unused by structured_a/b.
    scope: "global" or "layerwise".
    structure: "unstructured", "channel" (output channels by mean |w|), or
      "structured_a" / "structured_b" (Li et al. 2017 as the original study ran
      them on ResNet-56/110: tfrewind.pruning.masks.FILTER_SETTINGS).
    criterion: "magnitude", or "random" for the control.
    seed: seed of the random criterion.
    count: channel structure: "weights" or "channels" (what `density` counts).
    classifier: channel structure: "fixed" (the output layer keeps its mask: its
      units are classes) or "rows" (every Dense kernel's input rows are pruned
      as channels, the reproduction's rule).
    level: structured_a/b: the ratios compound `level` times (the original's 1..5).

  Returns:
    The density of the model after pruning.
  """
  set_masks(model, new_masks(model, density, scope, structure, criterion, seed, count,
                             classifier, level))
  return _density(model)


def new_masks(model, density: float, scope: str = "global", structure: str = "unstructured",
              criterion: str = "magnitude", seed: int = 0, count: str = "weights",
              classifier: str = "fixed", level: int = 1) -> List[np.ndarray]:
  """The masks `prune` would set, computed without setting them (ValueError as prune)."""
  pvars = _pruning_vars(model)
  weights = [w.numpy() for w, _, _ in pvars]
  old = [m.numpy() for _, m, _ in pvars]
  if classifier not in masks_lib.CLASSIFIERS:
    raise ValueError(f"classifier must be one of {masks_lib.CLASSIFIERS}, got {classifier!r}")
  if silences_channels(structure):
    require_channel_norms(model)
  if structure in masks_lib.FILTER_STRUCTURES:
    return masks_lib.filter_masks(weights, filter_ratios(weights, structure), level, old,
                                  seed=0)  # the original seeds its rounding with 0, every time
  fixed = rows = None
  if structure == "channel":
    dense = [w.ndim == 2 for w in weights]
    if classifier == "rows":
      rows = dense
    else:
      # A layer that emits the model's output (the classifier) has classes, not channels.
      outputs = _output_layers(model)
      fixed = [w.layer.name in outputs for w in wrappers(model) for _ in w.pruning_vars]
  return masks_lib.compute_masks(weights, density, old, scope=scope, structure=structure,
                                 criterion=criterion, seed=seed, fixed=fixed, count=count,
                                 rows=rows)


def filter_ratios(weights, structure: str) -> Dict[int, float]:
  """Li et al.'s setting as {index into `weights`: ratio}: the original numbers the 3x3 convs
  in order (the stem is conv 1) and names the networks by depth (3x3 convs + 1)."""
  convs = [i for i, w in enumerate(weights) if w.ndim == 4 and w.shape[:2] == (3, 3)]
  depth = len(convs) + 1
  if (depth, structure) not in masks_lib.FILTER_SETTINGS:
    raise ValueError(f"{structure} (Li et al. 2017, as Renda et al. ran it) is defined for "
                     f"{' and '.join(masks_lib.filter_networks())}; this network has {len(convs)} 3x3 convs "
                     f"(a depth-{depth} ResNet): use --structure=channel")
  return {convs[k - 1]: r for k, r in masks_lib.FILTER_SETTINGS[(depth, structure)].items()}


def _output_layers(model) -> set:
  names = set()
  for tensor in model.outputs or []:
    layer = tensor._keras_history.layer  # pylint: disable=protected-access
    names.add(layer.layer.name if isinstance(layer, Masked) else layer.name)
  return names


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
  """Sets pruned weights and their optimizer slots to exactly +0.0.

  Also gamma and beta (and their slots) of each ChannelNorm channel whose conv
  channel is pruned, so that the stripped model holds what the masked one computes.
  """
  optimizer = getattr(model, "optimizer", None)
  for weight, mask, _ in _pruning_vars(model):
    _zero(weight, mask.numpy(), optimizer)
  for norm, wrapper in channel_norms(model):
    mask = wrapper.pruning_vars[0][1].numpy()
    alive = (mask.reshape(-1, mask.shape[-1]).max(axis=0) > 0).astype(np.float32)
    for weight in (norm.gamma, norm.beta):
      if weight is not None:
        _zero(weight, alive, optimizer)


def _zero(weight, mask, optimizer):
  weight.assign(masks_lib.apply(weight.numpy(), mask))
  for slot in optimizer_slots(optimizer, weight):
    slot.assign(masks_lib.apply(slot.numpy(), mask))


def strip(model) -> keras.Model:
  """An ordinary tf_keras model computing what `model` computes in inference.

  TF-MOT's `strip_pruning` (the wrappers removed; pruned weights are already
  exact zeros), and each ChannelNorm turned back into a BatchNormalization
  (its dead channels hold gamma = beta = 0).
  """
  from tensorflow_model_optimization.python.core.sparsity.keras import prune as prune_lib  # pylint: disable=g-import-not-at-top
  stripped = prune_lib.strip_pruning(model) if wrappers(model) else model
  copies = []

  def plain(layer):
    if isinstance(layer, keras.Model):
      return keras.models.clone_model(layer, clone_function=plain)
    if isinstance(layer, ChannelNorm):
      config = layer.get_config()
      config.pop("source")
      copies.append((layer, keras.layers.BatchNormalization.from_config(config)))
      return copies[-1][1]
    return layer

  if not any(isinstance(l, ChannelNorm) for l in flat_layers(stripped)):
    return stripped
  result = keras.models.clone_model(stripped, clone_function=plain)
  for old, new in copies:
    new.set_weights(old.get_weights())
  return result


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
