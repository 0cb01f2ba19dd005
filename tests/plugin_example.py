"""A user's module, outside the package: one register_* call per entry. Used with
`tfrewind run --import=plugin_example ...` by tests/test_plugins.py."""

import numpy as np

import tfrewind


def _smallest(weights, rng):
  """Scores that keep the smallest |w|: the opposite of magnitude pruning."""
  del rng
  return [-np.abs(np.asarray(w, np.float64)) for w in weights]


def _second_half(n, k, t, weights_from, lr_from, warmup):
  """Keep the trained weights; replay the second half of the dense LR schedule."""
  del k, t, weights_from, lr_from, warmup
  return tfrewind.Retrain(None, n // 2, n - n // 2)


def _first_half(weights, density, masks, scope, seed):
  """Keep the first ceil(density * size) weights of each kernel, in memory order."""
  del scope, seed
  out = []
  for w, m in zip(weights, masks):
    keep = np.zeros(w.size, np.float32)
    keep[:int(np.ceil(density * w.size))] = 1
    out.append(keep.reshape(w.shape) * m)
  return out


tfrewind.register_criterion("smallest", _smallest, help="keep the smallest |w| (an example)",
                            label="smallest |w|")
tfrewind.register_method("half_lr_rewind", _second_half, help="replay the second half of the "
                         "LR schedule (an example)", label="half LR rewinding",
                         colour="tab:cyan", family="large_lr")
tfrewind.register_structure("first_half", _first_half, help="the first weights of each "
                            "kernel (an example)")
