"""Which channels of a network are silent and can be removed without changing its output.

A pure analysis of a functional tf_keras model (masked, stripped or plain),
shared by `tfrewind.flops` (a removed channel also removes its share of the next
layer) and `tfrewind.slim` (which removes it physically).

Channels are followed through *groups*: the tensors joined by channel-wise
layers (BatchNorm, activations, pooling, padding, dropout, Add), which index
their channels alike. In a ResNet the tensors of a residual stage form one
group (every block's output is added to it), the inside of a block another.
Channel c of a group is removable when it is exactly zero in every tensor of the
group that a Conv/Dense reads; then dropping c from every layer of the group
(conv outputs, BatchNorm, the readers' input rows) changes no value anywhere.
Zeros are exact, from the weights: a conv's channel is zero when its kernel
slice (under the mask) and bias are zero and its activation keeps 0 at 0; a
BatchNorm's when its gamma and beta are zero (ChannelNorm); anything else
channel-wise is zero where all its inputs are. A group that touches a model
input or output, or any other layer (Flatten, Concatenate, Lambda, ...), keeps
all its channels.
"""

import dataclasses
from typing import Dict, List, Optional

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
    if isinstance(layer, ChannelNorm) and layer._source_mask is not None:  # pylint: disable=protected-access
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
  """Tensors whose channels are indexed alike (a residual stage, a block's inside, ...).

  writers / readers: the Conv/Dense layers whose output / input is a tensor of the group;
  norms: its BatchNorms; prunable: touches no model input or output and no layer the
  analysis does not know, and a Conv/Dense reads it.
  """
  width: int
  writers: List[str]
  readers: List[str]
  norms: List[str]
  prunable: bool


def _walk(model: keras.Model, strict: bool = False):
  """The union-find over the model's tensors (see the module docstring): (groups {root:
  member keys}, zero {key: zero channels}, pinned, read, weighted [(name, in, out)], norms
  [(name, out)], find). strict: a layer the analysis does not know is an error naming it."""
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

  width: Dict[tuple, int] = {}
  zero: Dict[tuple, np.ndarray] = {}
  pinned, read = set(), set()
  weighted, norms = [], []
  for t in model.inputs:
    zero[key(t)] = np.zeros(t.shape[-1], bool)
    pinned.add(key(t))
  for t in model.outputs:
    pinned.add(key(t))
  for depth in sorted(model._nodes_by_depth, reverse=True):  # pylint: disable=protected-access
    for node in model._nodes_by_depth[depth]:  # pylint: disable=protected-access
      layer = node.layer
      if isinstance(layer, keras.layers.InputLayer):
        continue
      ins = [key(t) for t in node.keras_inputs]
      outs = [key(t) for t in tf.nest.flatten(node.outputs)]
      for t in tf.nest.flatten(node.outputs):
        width[key(t)] = t.shape[-1]
      channelwise = (isinstance(layer, _CHANNELWISE) or _is_norm(layer)) and not is_weighted(layer)
      if isinstance(layer, keras.Model) or not (is_weighted(layer) or channelwise) or len(outs) != 1:
        if strict:
          raise ConfigError(f"--structure=channel_group cannot group the channels through layer "
                            f"{layer.name!r} ({type(_inner(layer)).__name__}): it knows Conv, "
                            f"Dense, BatchNorm, activations, pooling, padding and Add; use "
                            f"--structure=channel, which prunes each conv's channels alone")
        pinned.update(ins + outs)  # unknown: keep every channel it touches
        for k in outs:
          zero[k] = np.zeros(width[k], bool)
        continue
      zero[outs[0]] = _zero_channels(layer, [zero[k] for k in ins])
      if is_weighted(layer):
        read.update(ins)
        weighted.append((_inner(layer).name, ins[0], outs[0]))
      else:
        for k in ins:
          if width.get(k, zero[k].size) != width[outs[0]]:
            pinned.update([k, outs[0]])
          union(k, outs[0])
        if _is_norm(layer):
          norms.append((layer.name, outs[0]))
  groups: Dict[tuple, List[tuple]] = {}
  for k in zero:
    groups.setdefault(find(k), []).append(k)
  return groups, zero, pinned, read, weighted, norms, find


def plan(model: keras.Model) -> Plan:
  """The removable channels of a functional `model` (see the module docstring)."""
  groups, zero, pinned, read, weighted, norms, find = _walk(model)
  keep: Dict[tuple, np.ndarray] = {}
  for root, members in groups.items():
    n = zero[members[0]].size
    readers = [k for k in members if k in read]
    if any(k in pinned for k in members) or not readers:
      keep[root] = np.ones(n, bool)
      continue
    removable = np.logical_and.reduce([zero[k] for k in readers])
    kept = ~removable
    if not kept.any():
      kept[0] = True  # a layer needs a channel; this one only ever carries zeros
    keep[root] = kept
  return Plan(inputs={name: keep[find(i)] for name, i, _ in weighted},
              outputs={name: keep[find(o)] for name, _, o in weighted},
              norms={name: keep[find(o)] for name, o in norms})


def groups(model: keras.Model, strict: bool = True) -> List[Group]:
  """The coupled channel groups of a functional `model`, in layer order of their first writer
  (strict: ConfigError naming a layer the analysis cannot group)."""
  found, zero, pinned, read, weighted, norms, find = _walk(model, strict)
  out = []
  for root, members in found.items():
    member = set(members)
    writers = [name for name, _, o in weighted if o in member]
    readers = [name for name, i, _ in weighted if i in member]
    out.append(Group(width=zero[members[0]].size, writers=writers, readers=readers,
                     norms=[name for name, o in norms if o in member],
                     prunable=bool(readers) and bool(writers) and not (member & pinned)))
  return out


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
