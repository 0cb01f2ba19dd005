"""Pure NumPy pruning maths: (weights, masks, density) -> new masks.

Nothing here touches TensorFlow, so every invariant (exact counts, the threshold
separating kept from pruned, masks only shrinking) is tested on plain arrays.

Conventions:
  * A mask is a float32 array of 0/1 with the weight's shape.
  * The last axis of a kernel is its output axis (Conv: HWIO, Dense: (in, out)).
  * Counts round half up: keeping density d of n items keeps floor(d * n + 0.5).
  * Ties are broken deterministically: among equal scores the lower flat index
    (in the concatenation order of the layers) is kept.
"""

import math
from typing import List, Optional, Sequence

import numpy as np

SCOPES = ("global", "layerwise")
STRUCTURES = ("unstructured", "channel")
CRITERIA = ("magnitude", "random")


class NothingKept(ValueError):
  """A density that keeps no item of a kernel (layerwise) or of all kernels (global)."""


def kept_count(density: float, n: int) -> int:
  """Number of items that density `density` keeps out of `n` (round half up)."""
  return int(math.floor(density * n + 0.5))


def check_density(density) -> float:
  """Returns `density` as a float, or raises ValueError naming the bad value."""
  try:
    d = float(density)
  except (TypeError, ValueError):
    raise ValueError(f"density must be a number in (0, 1], got {density!r}") from None
  if not 0.0 < d <= 1.0 or math.isnan(d):
    raise ValueError(f"density must be in (0, 1], got {density!r}")
  return d


def keep_top(scores: np.ndarray, k: int) -> np.ndarray:
  """Boolean mask with exactly `k` True at the largest `scores`.

  O(n) (a partition, not a sort), so an 11M-weight WRN-16-8 takes well under a
  second. Ties at the threshold go to the lowest indices.
  """
  scores = np.asarray(scores).reshape(-1)
  n = scores.size
  keep = np.zeros(n, dtype=bool)
  if k <= 0:
    return keep
  if k >= n:
    keep[:] = True
    return keep
  threshold = np.partition(scores, n - k)[n - k]
  keep = scores > threshold
  ties = np.flatnonzero(scores == threshold)
  keep[ties[: k - int(keep.sum())]] = True
  return keep


def _scores(weights, masks, structure, criterion, rng):
  """Per-item saliency; items already pruned score -inf so they never return."""
  out = []
  for w, m in zip(weights, masks):
    if structure == "unstructured":
      s = np.abs(w.astype(np.float64)) if criterion == "magnitude" else rng.random(w.shape)
      s = np.where(m > 0, s, -np.inf)
    else:
      axes = tuple(range(w.ndim - 1))
      alive = m.max(axis=axes) > 0 if w.ndim > 1 else m > 0
      if criterion == "magnitude":
        s = np.abs(w.astype(np.float64)).mean(axis=axes)
      else:
        s = rng.random(w.shape[-1])
      s = np.where(alive, s, -np.inf)
    out.append(s.reshape(-1))
  return out


def compute_masks(weights: Sequence[np.ndarray],
                  density: float,
                  masks: Optional[Sequence[np.ndarray]] = None,
                  scope: str = "global",
                  structure: str = "unstructured",
                  criterion: str = "magnitude",
                  seed: int = 0,
                  fixed: Optional[Sequence[bool]] = None) -> List[np.ndarray]:
  """New masks that keep `density` of the items, never reviving a pruned one.

  Args:
    weights: kernels, in a fixed order.
    density: fraction of items to keep, counted over all kernels (global) or
      per kernel (layerwise). Items are weights (unstructured) or output
      channels / units (channel); density is relative to the dense network, so
      iterative pruning passes 0.8, 0.64, ...
    masks: current masks (default: all ones). The new masks are a subset.
    scope: "global" (one threshold across kernels) or "layerwise".
    structure: "unstructured" or "channel" (saliency = mean |w| over a channel).
    criterion: "magnitude" or "random" (a seeded control with the same counts).
    seed: seed of the random criterion.
    fixed: per kernel, True to leave its mask as it is and out of the counts
      (channel pruning fixes the classifier, whose units are classes).

  Returns:
    float32 0/1 masks, one per kernel.

  Raises:
    ValueError: on a bad density, scope, structure or criterion, on a density
      that keeps no weight, or on one above the current density (masks only shrink).
  """
  density = check_density(density)
  if scope not in SCOPES:
    raise ValueError(f"scope must be one of {SCOPES}, got {scope!r}")
  if structure not in STRUCTURES:
    raise ValueError(f"structure must be one of {STRUCTURES}, got {structure!r}")
  if criterion not in CRITERIA:
    raise ValueError(f"criterion must be one of {CRITERIA}, got {criterion!r}")
  weights = [np.asarray(w) for w in weights]
  if masks is None:
    masks = [np.ones(w.shape, np.float32) for w in weights]
  masks = [np.asarray(m) for m in masks]
  fixed = [False] * len(weights) if fixed is None else [bool(f) for f in fixed]
  if len(fixed) != len(weights):
    raise ValueError(f"fixed has {len(fixed)} entries for {len(weights)} kernels")
  if all(fixed):
    raise ValueError("every kernel is fixed: nothing to prune")
  rng = np.random.default_rng(seed)
  free = [i for i, f in enumerate(fixed) if not f]
  scores = _scores([weights[i] for i in free], [masks[i] for i in free], structure, criterion, rng)

  if scope == "global":
    flat = np.concatenate(scores)
    keeps = np.split(_keep_checked(flat, density, "all kernels"),
                     np.cumsum([s.size for s in scores])[:-1])
  else:
    keeps = [_keep_checked(s, density, f"kernel {i}") for i, s in zip(free, scores)]
  keep_of = dict(zip(free, keeps))

  new = []
  for i, (w, m) in enumerate(zip(weights, masks)):
    if fixed[i]:
      new.append((m > 0).astype(np.float32))
      continue
    keep = keep_of[i]
    if structure == "channel":
      keep = np.broadcast_to(keep.reshape((1,) * (w.ndim - 1) + (-1,)), w.shape)
    new.append((keep.reshape(w.shape) & (m > 0)).astype(np.float32))
  return new


def _keep_checked(scores, density, where):
  k = kept_count(density, scores.size)
  alive = int(np.isfinite(scores).sum())
  if k == 0:
    raise NothingKept(f"density {density} keeps no item of {where} ({scores.size} items); "
                     "use a larger density")
  if k > alive:
    raise ValueError(f"density {density} asks to keep {k} items of {where} but only {alive} "
                     "remain: masks only shrink, so densities must decrease")
  return keep_top(scores, k)


def apply(weight: np.ndarray, mask: np.ndarray) -> np.ndarray:
  """`weight` with pruned entries set to +0.0 (w * 0 would give -0.0 for w < 0)."""
  return np.where(mask > 0, weight, np.zeros((), weight.dtype)).astype(weight.dtype)
