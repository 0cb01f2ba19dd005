"""Snapshots of the training state at one step, and restoring them under masks.

A Snapshot holds every weight (BatchNorm statistics included) and every
optimizer slot by variable name, and restores by name: a snapshot of another
network fails naming what does not match, never lands by position.

Example:
  >>> snap = tfrewind.snapshot(model)      # e.g. at step K
  >>> tfrewind.rewind_weights(model, snap)  # later, after pruning
"""

import dataclasses
import io
from typing import Dict, List, Sequence, Tuple

import numpy as np
import tensorflow as tf

import tf_keras as keras
from tfrewind import store
from tfrewind.pruning import sparsity
from tfrewind.errors import ConfigError


@dataclasses.dataclass(frozen=True)
class Snapshot:
  """The training state at one step: weights, BatchNorm statistics, optimizer slots.

  `weights[i]` is the value of the variable named `weight_names[i]` (the pruning
  wrappers' own mask/threshold/step variables excluded); likewise `optimizer`
  and `optimizer_names` for the per-weight optimizer slots.
  """
  step: int
  weights: Tuple[np.ndarray, ...]
  optimizer: Tuple[np.ndarray, ...]
  weight_names: Tuple[str, ...]
  optimizer_names: Tuple[str, ...]

  def save(self, path: str) -> None:
    """Writes the snapshot atomically (a temporary file, then a rename)."""
    arrays = {"step": np.asarray(self.step, np.int64),
              "weight_names": np.asarray(self.weight_names, dtype=np.str_),
              "optimizer_names": np.asarray(self.optimizer_names, dtype=np.str_)}
    arrays.update({f"w{i}": a for i, a in enumerate(self.weights)})
    arrays.update({f"o{i}": a for i, a in enumerate(self.optimizer)})
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    store.atomic_write(path, buffer.getvalue())

  @classmethod
  def load(cls, path: str) -> "Snapshot":
    """Reads a saved snapshot (ValueError if it is not one, or has no variable names)."""
    with tf.io.gfile.GFile(path, "rb") as f:
      data = np.load(io.BytesIO(f.read()), allow_pickle=False)
      if "weight_names" not in data.files:
        raise ConfigError(f"{path} has no variable names (an older tfrewind wrote it): delete "
                         f"it, and the runner makes it again")
      w_names = tuple(str(n) for n in data["weight_names"])
      o_names = tuple(str(n) for n in data["optimizer_names"])
      return cls(step=int(data["step"]),
                 weights=tuple(data[f"w{i}"] for i in range(len(w_names))),
                 optimizer=tuple(data[f"o{i}"] for i in range(len(o_names))),
                 weight_names=w_names, optimizer_names=o_names)


def restorable_weights(model) -> List[tf.Variable]:
  own = {id(v) for w in sparsity.wrappers(model) for v in w._non_trainable_weights}  # pylint: disable=protected-access
  return [v for v in model.weights if id(v) not in own]


def optimizer_state(optimizer) -> List[tf.Variable]:
  """Per-weight optimizer variables (momentum, ...): not the step, not the LR."""
  if optimizer is None:
    return []
  optimizer = getattr(optimizer, "inner_optimizer", optimizer)
  skip = {id(optimizer.iterations)}
  return [v for v in optimizer.variables
          if id(v) not in skip and "learning_rate" not in v.name and "iteration" not in v.name]


def _named(what: str, variables: Sequence[tf.Variable]) -> Dict[str, tf.Variable]:
  out = {}
  for v in variables:
    if v.name in out:
      raise ConfigError(f"two {what} variables are named {v.name!r}: give the layers unique "
                       f"names to snapshot this model")
    out[v.name] = v
  return out


def snapshot(model) -> Snapshot:
  """The current state of `model` (and its optimizer, if compiled).

  Example:
    >>> snap = tfrewind.snapshot(model)      # e.g. at step K
    >>> tfrewind.rewind_weights(model, snap)  # later, after pruning
  """
  optimizer = getattr(model, "optimizer", None)
  step = int(optimizer.iterations.numpy()) if optimizer is not None else 0
  weights = _named("model", restorable_weights(model))
  state = _named("optimizer", optimizer_state(optimizer))
  return Snapshot(step=step, weights=tuple(v.numpy() for v in weights.values()),
                  optimizer=tuple(v.numpy() for v in state.values()),
                  weight_names=tuple(weights), optimizer_names=tuple(state))


def _restore(what: str, variables: Sequence[tf.Variable], names: Sequence[str],
             arrays: Sequence[np.ndarray]) -> None:
  """Assigns arrays[i] to the variable named names[i]; the two name sets must be equal."""
  targets = _named(what, variables)
  missing = sorted(set(targets) - set(names))
  extra = sorted(set(names) - set(targets))
  if missing or extra:
    raise ConfigError(f"snapshot {what} variables do not match the model: the model has "
                     f"{missing[:3]}{' ...' if len(missing) > 3 else ''} not in the snapshot, "
                     f"the snapshot has {extra[:3]}{' ...' if len(extra) > 3 else ''} not in "
                     f"the model; was it taken from another network?")
  for name, a in zip(names, arrays):
    if tuple(targets[name].shape) != tuple(a.shape):
      raise ConfigError(f"snapshot {what} variable {name!r} has shape {tuple(a.shape)}, the "
                       f"model's {tuple(targets[name].shape)}; was it taken from another "
                       f"network?")
  for name, a in zip(names, arrays):
    targets[name].assign(a)


def rewind_weights(model, snap: Snapshot, optimizer: bool = True) -> None:
  """Restores `snap` under the current masks, by variable name.

  Every kept weight gets its snapshot value bitwise, every pruned weight +0.0;
  BatchNorm statistics and (if `optimizer`) the optimizer slots are restored
  too, slots of pruned weights zeroed. A snapshot taken before the optimizer
  was built (step 0) restores zero momentum. The masks and the optimizer's
  step counter are left as they are.
  """
  _restore("model", restorable_weights(model), snap.weight_names, snap.weights)
  if optimizer:
    if snap.optimizer:
      _restore("optimizer", optimizer_state(getattr(model, "optimizer", None)),
               snap.optimizer_names, snap.optimizer)
    else:
      reset_optimizer_state(model)
  sparsity.apply_masks(model)


def reinitialize(model, seed: int) -> None:
  """Re-draws every weight from its layer's initializer (seeded); masks kept, slots zeroed.

  BatchNorm statistics return to their initial values too: the network is new but for
  its mask.
  """
  rng = np.random.default_rng(seed)
  for layer in model.submodules:
    if not isinstance(layer, keras.layers.Layer) or isinstance(layer, sparsity.Masked):
      continue
    for weight in layer._trainable_weights + layer._non_trainable_weights:  # pylint: disable=protected-access
      attr = weight.name.split("/")[-1].split(":")[0]
      initializer = getattr(layer, f"{attr}_initializer", None)
      if initializer is None:
        continue
      config = dict(initializer.get_config())
      if "seed" in config:
        config["seed"] = int(rng.integers(2**31 - 1))
      fresh = type(initializer).from_config(config)
      weight.assign(fresh(weight.shape, weight.dtype))
  reset_optimizer_state(model)
  sparsity.apply_masks(model)


def reset_optimizer_state(model) -> None:
  """Zeroes every optimizer slot (a fresh optimizer, as in Mikler's code)."""
  for v in optimizer_state(getattr(model, "optimizer", None)):
    v.assign(tf.zeros(v.shape, v.dtype))
