"""`ChannelNorm`: the BatchNorm after a conv whose channels die with the conv's.

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

import tensorflow as tf

import tf_keras as keras
from tfrewind import registries
from tfrewind.errors import ConfigError
from tfrewind.pruning.wrapper import _PRUNABLE_TYPES, Masked, flat_layers, wrappers


@keras.utils.register_keras_serializable(package="tfrewind")
class ChannelNorm(keras.layers.BatchNormalization):
  """BatchNormalization whose channels die with the output channels of its conv.

  `source` names the prunable layer it follows (after a Concatenate, a layer of each group
  it normalises, in channel order, joined by ","; its channels then concatenate theirs);
  `prunable(..., structure="channel")` links it to that layer's mask. Unlinked (e.g. just
  after `load_model`) it is a plain BatchNormalization: its dead channels hold gamma = beta =
  0, so it still emits exact zeros there in inference, but training it needs the link back
  (`tfrewind.prunable(model, structure="channel")` restores it).
  """

  def __init__(self, source: str = "", **kwargs):
    super().__init__(**kwargs)
    self.source = source
    object.__setattr__(self, "_source_masks", None)

  @property
  def sources(self) -> List[str]:
    """The layers whose channels it follows, in channel order: one, or (after a Concatenate,
    --structure=channel_group) one per group it normalises."""
    return self.source.split(",")

  def get_config(self):
    return {**super().get_config(), "source": self.source}

  def alive(self, masks=None):
    """1.0 for each channel whose source conv keeps a weight, else 0.0 (a tensor); masks:
    the sources' masks, when it is not linked to them (default: the linked ones)."""
    parts = []
    for mask in (masks if masks is not None else self._source_masks):
      axes = list(range(len(mask.shape) - 1))
      parts.append(tf.cast(tf.reduce_max(mask, axis=axes) > 0, self.dtype))
    return parts[0] if len(parts) == 1 else tf.concat(parts, axis=0)

  def call(self, inputs, training=None):
    if self._source_masks is None:
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


def channel_norms(model) -> List[Tuple[ChannelNorm, List["Masked"]]]:
  """(ChannelNorm, the Masked wrappers of its sources) pairs of `model`."""
  by_name = {w.layer.name: w for w in wrappers(model)}
  pairs = []
  for layer in flat_layers(model):
    if isinstance(layer, ChannelNorm):
      missing = [s for s in layer.sources if s not in by_name]
      if missing:
        raise ConfigError(f"ChannelNorm {layer.name} follows {missing[0]!r}, which is not a "
                         "pruned layer of this model")
      pairs.append((layer, [by_name[s] for s in layer.sources]))
  return pairs


def _link_norms(model) -> None:
  for norm, sources in channel_norms(model):
    object.__setattr__(norm, "_source_masks", [w.pruning_vars[0][1] for w in sources])


def require_channel_norms(model) -> None:
  """Links each ChannelNorm to its conv's mask; ValueError if a plain BatchNorm follows a conv."""
  layers = {l.name: l for l in flat_layers(model)}
  plain = sorted(n for n in _followers(model) if not isinstance(layers[n], ChannelNorm))
  if plain:
    raise ConfigError(f"channel pruning must silence the BatchNorm after each pruned conv "
                     f"({', '.join(plain[:3])}{', ...' if len(plain) > 3 else ''}): build the "
                     f"model with tfrewind.prunable(model, structure='channel')")
  _link_norms(model)


def silences_channels(structure: str) -> bool:
  """Whether `structure` removes whole channels (so the BatchNorm after each must follow):
  its registry entry says so."""
  return registries.structure(structure).silences_channels
