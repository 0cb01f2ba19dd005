"""Coupled channel groups (--structure=channel_group): a channel goes from every layer that
writes or reads it at once, so that `tfrewind.slim` removes it and runs faster.

The groups are tfrewind.pruning.channels': the tensors joined by channel-wise layers and Add
(a residual stage: the stem or projection and every block's last conv write it, the next
convs read it), side by side after a Concatenate. An item is one channel of one group; it
scores the mean of its members' per-weight scores (the writers' output slices, the readers'
input rows; |w| by default), and one global threshold removes the lowest items until the
kept kernel weights come closest to the density (as --structure=channel counts). A group
keeps at least one channel; a group that touches a kernel kept dense, a model input or output
is not pruned. --structure=channel_group_mean first divides each item's score by the mean of
its group's live items, so that the groups of deep, He-initialised stages (smaller |w|) are not
emptied first.
"""

from typing import Dict, List, Sequence, Tuple

import numpy as np

from tfrewind.errors import ConfigError
from tfrewind.pruning import channels
from tfrewind.pruning.wrapper import wrappers


def norm_sources(model) -> Dict[str, str]:
  """{BatchNorm name: a writer of each group it normalises, in channel order, joined by ","},
  for every BatchNorm of prunable groups: each becomes a ChannelNorm whose channels die with
  the groups' (pre-activation BatchNorms, and those after a Concatenate, too)."""
  parts: Dict[str, List[Tuple[int, str]]] = {}
  for g in channels.groups(model):
    if g.prunable:
      for norm, offset in g.norms:
        parts.setdefault(norm, []).append((offset, g.writers[0]))
  return {norm: ",".join(w for _, w in sorted(p)) for norm, p in parts.items()}


def masks(model, old: Sequence[np.ndarray], density: float, fixed: Sequence[bool],
          scores: Sequence[np.ndarray], normalise: bool = False) -> List[np.ndarray]:
  """Masks (a subset of `old`) removing whole group channels, per the module docstring.
  normalise: each channel's score is divided by the mean score of its group's live channels
  (--structure=channel_group_mean)."""
  names = [w.layer.name for w in wrappers(model) for _ in w.pruning_vars]
  index = {name: i for i, name in enumerate(names)}
  found = []
  for g in channels.groups(model):
    members = g.writers + [r for r, _ in g.readers]
    if g.prunable and all(m in index and not fixed[index[m]] for m in members):
      found.append(g)
  new = [(np.asarray(o) > 0).astype(np.float32) for o in old]

  def slices(g, c):
    return ([(index[w], (Ellipsis, c)) for w in g.writers]
            + [(index[r], (Ellipsis, offset + c, slice(None))) for r, offset in g.readers])

  items, values = [], []
  for gi, g in enumerate(found):
    for c in range(g.width):
      parts = slices(g, c)
      alive = any(new[i][s].any() for i, s in parts[:len(g.writers)])
      values.append(float(np.mean(np.concatenate([np.ravel(scores[i][s]) for i, s in parts])))
                    if alive else -np.inf)
      items.append((gi, c))
    if normalise:
      live = [k for k in range(len(values) - g.width, len(values)) if values[k] != -np.inf]
      mean = float(np.mean([values[k] for k in live])) if live else 0.0
      for k in live:
        values[k] = values[k] / mean if mean > 0 else 0.0
  total = float(sum(m.size for m, f in zip(new, fixed) if not f))
  kept = float(sum(m.sum() for m, f in zip(new, fixed) if not f))
  goal = density * total
  if goal > kept + 0.5:
    raise ConfigError(f"density {density} asks to keep {goal:.0f} weights but only {kept:.0f} "
                      f"remain: masks only shrink, so densities must decrease")
  alive = [int(np.sum([new[index[g.writers[0]]][..., c].any() for c in range(g.width)]))
           for g in found]
  # Lowest score first; among equals the higher index goes first (the lower is kept).
  order = sorted(range(len(items)), key=lambda k: (values[k], -k))
  for k in order:
    gi, c = items[k]
    if alive[gi] <= 1 or values[k] == -np.inf:
      continue  # a group keeps a channel; a dead one is gone already
    cost = sum(float(new[i][s].sum()) for i, s in slices(found[gi], c))
    if kept - cost < goal and goal - (kept - cost) >= kept - goal:
      break  # removing it would take the kept weights further from the goal
    for i, s in slices(found[gi], c):
      new[i][s] = 0
    kept -= cost
    alive[gi] -= 1
    if kept <= goal:
      break
  return new
