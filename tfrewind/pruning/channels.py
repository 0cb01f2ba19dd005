"""Which channels of a network are silent and can be removed without changing its output.

A pure analysis of a functional tf_keras model (masked, stripped or plain),
shared by `tfrewind.flops` (a removed channel also removes its share of the next
layer) and `tfrewind.slim` (which removes it physically).

Channels are followed through *groups*: the tensors joined by channel-wise
layers (BatchNorm, activations, pooling, padding, dropout, Add), which index
their channels alike. In a ResNet the tensors of a residual stage form one
group (every block's output is added to it), the inside of a block another. A
Concatenate on the channel axis lays its inputs' groups side by side: its
output's channels are segments of those groups, at offsets (DenseNet's and
Inception's joins).
Channel c of a group is removable when it is exactly zero in every tensor of the
group that a Conv/Dense reads; then dropping c from every layer of the group
(conv outputs, BatchNorm, the readers' input rows, at the group's offset) changes no
value anywhere.
Zeros are exact, from the weights: a conv's channel is zero when its kernel
slice (under the mask) and bias are zero and its activation keeps 0 at 0; a
BatchNorm's when its gamma and beta are zero (ChannelNorm); anything else
channel-wise is zero where all its inputs are. A group that touches a model
input or output, or any other layer (Flatten, Lambda, a Concatenate on another
axis, ...), keeps all its channels.
"""

import dataclasses
from typing import Callable, Dict, List, NamedTuple, Optional, Set, Tuple

import numpy as np
import tensorflow as tf

import tf_keras as keras
from tfrewind.errors import ConfigError
from tfrewind.pruning.channel_norm import ChannelNorm
from tfrewind.pruning.wrapper import Masked

_CONVS = (keras.layers.Conv1D, keras.layers.Conv2D, keras.layers.Conv3D)
_NOT_PLAIN_CONVS = (keras.layers.Conv2DTranspose, keras.layers.Conv1DTranspose,
                    keras.layers.Conv3DTranspose, keras.layers.DepthwiseConv2D,
                    keras.layers.SeparableConv2D, keras.layers.SeparableConv1D)
_CHANNELWISE = (keras.layers.ReLU, keras.layers.Activation, keras.layers.LeakyReLU,
                keras.layers.ELU, keras.layers.Dropout, keras.layers.SpatialDropout2D,
                keras.layers.MaxPooling2D, keras.layers.AveragePooling2D,
                keras.layers.GlobalAveragePooling2D, keras.layers.GlobalMaxPooling2D,
                keras.layers.MaxPooling1D, keras.layers.AveragePooling1D,
                keras.layers.GlobalAveragePooling1D, keras.layers.GlobalMaxPooling1D,
                keras.layers.ZeroPadding2D, keras.layers.Cropping2D, keras.layers.Add)


@dataclasses.dataclass
class Plan:
  """Kept channels per layer, as boolean vectors (True: kept).

  inputs: Conv/Dense layer name -> kept input channels (its kernel's axis -2).
  outputs: Conv/Dense layer name -> kept output channels (axis -1).
  norms: BatchNorm layer name -> kept channels.
  """
  inputs: Dict[str, np.ndarray]
  outputs: Dict[str, np.ndarray]
  norms: Dict[str, np.ndarray]

  def removed(self) -> int:
    """Channels removed, counted at the layers that produce them."""
    return int(sum((~k).sum() for k in self.outputs.values()))


def _inner(layer):
  return layer.layer if isinstance(layer, Masked) else layer


def is_weighted(layer) -> bool:
  """A plain Conv or Dense: its kernel's last axis is its output channels, axis -2 its inputs."""
  inner = _inner(layer)
  if isinstance(inner, keras.layers.Dense):
    return True
  return (isinstance(inner, _CONVS) and not isinstance(inner, _NOT_PLAIN_CONVS)
          and inner.groups == 1)


def effective_kernel(layer) -> np.ndarray:
  """The kernel the layer computes with: under its mask if it is a pruning wrapper."""
  inner = _inner(layer)
  kernel = inner.kernel.numpy()
  if isinstance(layer, Masked):
    kernel = kernel * layer.pruning_vars[0][1].numpy()
  return kernel


def _keeps_zero(activation) -> bool:
  return float(activation(tf.zeros([1]))[0]) == 0.0


def _is_norm(layer) -> bool:
  if not isinstance(layer, keras.layers.BatchNormalization):
    return False
  axis = layer.axis if isinstance(layer.axis, (list, tuple)) else [layer.axis]
  return (len(axis) == 1
          and axis[0] in (-1, len(layer.input_shape) - 1))


def _zero_channels(layer, inputs: List[np.ndarray]) -> np.ndarray:
  """Per output channel: is this layer's output exactly zero there."""
  if is_weighted(layer):
    inner = _inner(layer)
    kernel = effective_kernel(layer)
    zero = ~kernel.reshape(-1, kernel.shape[-1]).any(axis=0)
    if inner.use_bias:
      zero &= inner.bias.numpy() == 0
    return zero & _keeps_zero(inner.activation)
  if _is_norm(layer):
    n = inputs[0].size
    alive = np.ones(n, bool)
    linked = isinstance(layer, ChannelNorm) and layer._source_masks is not None  # pylint: disable=protected-access
    if linked:
      alive = layer.alive().numpy() > 0
    gamma = layer.gamma.numpy() * alive if layer.gamma is not None else np.ones(n)
    beta = layer.beta.numpy() * alive if layer.beta is not None else np.zeros(n)
    return (gamma == 0) & (beta == 0)
  zero = np.logical_and.reduce(inputs)
  if isinstance(layer, keras.layers.Activation) and not _keeps_zero(layer.activation):
    zero = np.zeros_like(zero)
  return zero


@dataclasses.dataclass
class Group:
  """Channels indexed alike (a residual stage, a block's inside, one input of a Concatenate).

  writers: the Conv/Dense layers that write the group (their whole output);
  readers: (Conv/Dense layer, offset): the layers that read it, at input rows offset ...
    offset + width (a Concatenate places a group at an offset; a layer reading the same
    group twice appears twice);
  norms: (BatchNorm, offset) likewise;
  prunable: touches no model input or output and no layer the analysis does not know, a
    Conv/Dense writes and one reads it, and every BatchNorm it shares with other groups
    is prunable in all of them.
  """
  width: int
  writers: List[str]
  readers: List[Tuple[str, int]]
  norms: List[Tuple[str, int]]
  prunable: bool


class _Walk(NamedTuple):
  """What _walk finds. Union-find nodes are *segments*: a tensor is the concatenation of its
  layout's segments [(segment key, offset, width)] (one, itself, unless a Concatenate made
  it); channel-wise layers and Add join segments position by position."""
  groups: Dict[tuple, List[tuple]]  # root -> segment keys
  segment: Dict[tuple, Tuple[tuple, int, int]]  # segment key -> (tensor key, offset, width)
  layout: Dict[tuple, List[tuple]]  # tensor key -> its segment keys, in channel order
  zero: Dict[tuple, np.ndarray]  # tensor key -> its exactly-zero channels
  pinned: Set[tuple]  # segment keys whose channels must all stay
  read: Set[tuple]  # tensor keys a Conv/Dense reads
  weighted: List[Tuple[str, tuple, tuple]]  # (layer, input tensor, output tensor)
  norms: List[Tuple[str, tuple]]  # (BatchNorm, output tensor)
  find: Callable[[tuple], tuple]

  def zeros(self, seg) -> np.ndarray:
    tensor, offset, width = self.segment[seg]
    return self.zero[tensor][offset:offset + width]


def _concat_axis_is_channels(layer, rank: int) -> bool:
  return layer.axis in (-1, rank - 1)


def _walk(model: keras.Model, strict: bool = False) -> _Walk:
  """The union-find over the model's channel segments (see the module docstring and _Walk).
  strict: a layer the analysis does not know is an error naming it."""
  if not getattr(model, "_is_graph_network", False):
    raise ConfigError(f"channel analysis needs a functional or Sequential model; {model.name!r} "
                     "is subclassed")
  key = lambda t: (t._keras_history.layer.name, t._keras_history.node_index,  # pylint: disable=protected-access
                   t._keras_history.tensor_index)
  parent: Dict[tuple, tuple] = {}

  def find(k):
    while parent.setdefault(k, k) != k:
      parent[k] = parent[parent[k]]
      k = parent[k]
    return k

  def union(a, b):
    parent[find(a)] = find(b)

  segment: Dict[tuple, Tuple[tuple, int, int]] = {}
  layout: Dict[tuple, List[tuple]] = {}

  def lay(k, widths):
    """Gives tensor k segments of `widths` (one: the tensor itself is its segment)."""
    keys = [k] if len(widths) == 1 else [k + ("segment", j) for j in range(len(widths))]
    offsets = np.cumsum([0] + list(widths))
    for s, o, w in zip(keys, offsets, widths):
      segment[s] = (k, int(o), int(w))
      find(s)
    layout[k] = keys
    return keys

  widths = lambda k: [segment[s][2] for s in layout[k]]
  zero: Dict[tuple, np.ndarray] = {}
  pinned, read = set(), set()
  weighted, norms = [], []
  for t in model.inputs:
    zero[key(t)] = np.zeros(t.shape[-1], bool)
    pinned.update(lay(key(t), [t.shape[-1]]))
  for depth in sorted(model._nodes_by_depth, reverse=True):  # pylint: disable=protected-access
    for node in model._nodes_by_depth[depth]:  # pylint: disable=protected-access
      layer = node.layer
      if isinstance(layer, keras.layers.InputLayer):
        continue
      ins = [key(t) for t in node.keras_inputs]
      outs = [key(t) for t in tf.nest.flatten(node.outputs)]
      shapes = [t.shape for t in tf.nest.flatten(node.outputs)]
      channelwise = (isinstance(layer, _CHANNELWISE) or _is_norm(layer)) and not is_weighted(layer)
      concat = (isinstance(layer, keras.layers.Concatenate) and len(outs) == 1
                and _concat_axis_is_channels(layer, len(shapes[0])))
      if (isinstance(layer, keras.Model) or not (is_weighted(layer) or channelwise or concat)
          or len(outs) != 1):
        if strict:
          raise ConfigError(f"--structure=channel_group cannot group the channels through layer "
                            f"{layer.name!r} ({type(_inner(layer)).__name__}): it knows Conv, "
                            f"Dense, BatchNorm, activations, pooling, padding, Add and "
                            f"Concatenate; use --structure=channel, which prunes each conv's "
                            f"channels alone")
        for k in ins:
          pinned.update(layout[k])  # unknown: keep every channel it touches
        for k, shape in zip(outs, shapes):
          zero[k] = np.zeros(shape[-1], bool)
          pinned.update(lay(k, [shape[-1]]))
        continue
      out = outs[0]
      if concat:
        zero[out] = np.concatenate([zero[k] for k in ins])
        parts = [s for k in ins for s in layout[k]]
        for s, new in zip(parts, lay(out, [segment[s][2] for s in parts])):
          union(s, new)
        continue
      if is_weighted(layer):
        zero[out] = _zero_channels(layer, [])
        lay(out, [shapes[0][-1]])
        read.add(ins[0])
        weighted.append((_inner(layer).name, ins[0], out))
        continue
      zero[out] = _zero_channels(layer, [zero[k] for k in ins])
      if all(widths(k) == widths(ins[0]) for k in ins) and sum(widths(ins[0])) == shapes[0][-1]:
        for k in ins:
          for s, new in zip(layout[k], lay(out, widths(ins[0]))):
            union(s, new)
      else:  # a channel count that changes, or inputs laid out differently: keep them all
        for k in ins:
          pinned.update(layout[k])
        pinned.update(lay(out, [shapes[0][-1]]))
      if _is_norm(layer):
        norms.append((layer.name, out))
  for t in model.outputs:
    pinned.update(layout[key(t)])
  groups: Dict[tuple, List[tuple]] = {}
  for s in segment:
    groups.setdefault(find(s), []).append(s)
  return _Walk(groups, segment, layout, zero, pinned, read, weighted, norms, find)


def plan(model: keras.Model) -> Plan:
  """The removable channels of a functional `model` (see the module docstring)."""
  w = _walk(model)
  keep: Dict[tuple, np.ndarray] = {}
  for root, members in w.groups.items():
    n = w.segment[members[0]][2]
    readers = [s for s in members if w.segment[s][0] in w.read]
    if any(s in w.pinned for s in members) or not readers:
      keep[root] = np.ones(n, bool)
      continue
    kept = ~np.logical_and.reduce([w.zeros(s) for s in readers])
    if not kept.any():
      kept[0] = True  # a layer needs a channel; this one only ever carries zeros
    keep[root] = kept
  kept = lambda k: np.concatenate([keep[w.find(s)] for s in w.layout[k]])
  return Plan(inputs={name: kept(i) for name, i, _ in w.weighted},
              outputs={name: kept(o) for name, _, o in w.weighted},
              norms={name: kept(o) for name, o in w.norms})


def groups(model: keras.Model, strict: bool = True) -> List[Group]:
  """The coupled channel groups of a functional `model`, in the order the walk meets them
  (strict: ConfigError naming a layer the analysis cannot group)."""
  w = _walk(model, strict)
  out = {root: Group(width=w.segment[members[0]][2], writers=[], readers=[], norms=[],
                     prunable=not any(s in w.pinned for s in members))
         for root, members in w.groups.items()}

  def placed(tensor):
    """(group, offset) of each segment of `tensor`."""
    return [(out[w.find(s)], w.segment[s][1]) for s in w.layout[tensor]]

  for name, i, o in w.weighted:  # one pass, in layer order
    for g, _ in placed(o):
      g.writers.append(name)
    for g, offset in placed(i):
      g.readers.append((name, offset))
  for name, o in w.norms:
    for g, offset in placed(o):
      g.norms.append((name, offset))
  for g in out.values():
    g.prunable = g.prunable and bool(g.readers) and bool(g.writers)
  # A BatchNorm over several groups (after a Concatenate) silences its channels only if all
  # of them are pruned by channel: otherwise none of its groups is pruned.
  changed = True
  while changed:
    changed = False
    for _, o in w.norms:
      roots = {w.find(s) for s in w.layout[o]}
      if len(roots) > 1 and not all(out[r].prunable for r in roots):
        for r in roots:
          changed |= out[r].prunable
          out[r].prunable = False
  return list(out.values())


def kept_weights(layer, p: Optional[Plan] = None, sparse: bool = True) -> np.ndarray:
  """0/1 array over the kernel: 1 where both channels of a weight are kept, and (sparse) the
  weight itself is (its mask; False: zero weights of kept channels count, as slim runs them)."""
  inner = _inner(layer)
  shape = tuple(inner.kernel.shape)
  mask = (layer.pruning_vars[0][1].numpy() if isinstance(layer, Masked) and sparse
          else np.ones(shape, np.float32))
  if p is not None and inner.name in p.outputs:
    mask = mask * p.outputs[inner.name]
    in_keep = p.inputs[inner.name].reshape((-1, 1))
    mask = mask * in_keep.astype(mask.dtype)
  return mask
