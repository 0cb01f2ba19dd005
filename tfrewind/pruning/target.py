"""What --density counts: kernel weights (the default), or MACs (--target=macs).

`prune` is tfrewind.prune: with a spec whose target is "macs", the density passed is the
fraction of one forward pass's MACs to keep (tfrewind.flops, as the network is pruned: slim
MACs for channel structures, the sparse count otherwise), and the weight density that the
structure's own rule is given is the one whose masked MACs come closest to it.
"""

import dataclasses
from typing import Optional

from tfrewind import macs
from tfrewind import registries
from tfrewind.errors import ConfigError
from tfrewind.pruning import masks as masks_lib
from tfrewind.pruning import sparsity

def prune(model, density: float, spec=None, *, scores=None, **keywords) -> float:
  """tfrewind.pruning.sparsity.prune, with `spec.target` resolved (see the module docstring).

  Example:
    >>> tfrewind.prune(model, 0.25, tfrewind.PruneSpec(structure="channel", target="macs"))
  """
  from tfrewind.pruning.spec import PruneSpec  # pylint: disable=g-import-not-at-top
  target = keywords.pop("target", "weights")
  spec = spec if spec is not None else PruneSpec(target=target, **keywords)
  return sparsity.prune(model, weight_density(model, density, spec, scores),
                        dataclasses.replace(spec, target="weights"), scores=scores)


def weight_density(model, density: float, spec, scores=None) -> float:
  """The density to give the structure's rule for `density` of spec.target (weights: itself)."""
  density = masks_lib.check_density(density)
  if spec.target == "weights":
    return density
  if spec.target != "macs":
    raise ConfigError(f"target must be one of {masks_lib.TARGETS}, got {spec.target!r}")
  entry = registries.structure(spec.structure)
  if entry.by_level or entry.density is not None:  # structured_a/b, N:M set their own
    raise ConfigError(f"--target=macs sets a density; --structure={spec.structure} sets its own")
  kwargs = {k: v for k, v in spec.kwargs().items() if k not in ("control", "target")}
  pvars = sparsity._pruning_vars(model)  # pylint: disable=protected-access
  saved = [m.numpy() for _, m, _ in pvars]
  dense = macs.flops(model)["dense_macs"]
  goal = density * dense

  def cost(d: float) -> Optional[int]:
    """MACs after a prune to weight density d (None: d keeps nothing), from the saved masks."""
    for (_, mask, _), m in zip(pvars, saved):
      mask.assign(m)
    try:
      new = sparsity.new_masks(model, d, scores=scores, **kwargs)
    except masks_lib.NothingKept:
      return None
    for (_, mask, _), m in zip(pvars, new):
      mask.assign(m)
    return macs.flops(model)["pruned_macs"]

  try:
    now = macs.flops(model)["pruned_macs"]  # what the current masks keep: masks only shrink
    current = sparsity.density(model, spec.keep_dense)
    if goal >= now:
      return current
    low, high = 0.0, current  # cost(low) <= goal < cost(high) (low: nothing kept)
    low_cost, high_cost = 0, now
    # Bisection on the weight density down to adjacent kept sets: within one item (a weight,
    # or a channel) of the MACs goal.
    step = 0.5 / sum(int(m.size) for m in saved)  # half a weight: adjacent kept sets
    while high - low > step:
      mid = (low + high) / 2
      c = cost(mid)
      if c is None or c <= goal:
        low, low_cost = mid, (c or 0)
      else:
        high, high_cost = mid, c
    if low == 0.0:
      return high
    return low if goal - low_cost <= high_cost - goal else high
  finally:
    for (_, mask, _), m in zip(pvars, saved):
      mask.assign(m)
