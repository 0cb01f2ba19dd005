"""Pure NumPy pruning maths: (weights, masks, density) -> new masks.

Nothing here touches TensorFlow, so every invariant (exact counts, the threshold
separating kept from pruned, masks only shrinking) is tested on plain arrays.

Conventions:
  * A mask is a float32 array of 0/1 with the weight's shape.
  * The last axis of a kernel is its output axis (Conv: HWIO, Dense: (in, out)).
  * Counts round half up: keeping density d of n items keeps floor(d * n + 0.5).
  * Ties are broken deterministically: among equal scores the lower flat index
    (in the concatenation order of the layers) is kept.
  * Channel density counts kernel weights by default (count="weights"): one
    threshold on the channel saliency, set where the kept channels' weights come
    closest to d of all the weights, as the reproduction's rule (its figure's axis:
    "9.35x means 29,000 non-zero kernel parameters left in ResNet-20").
    count="channels" counts channels instead.
"""

import math
import random as random_lib
import re
from typing import Dict, List, Optional, Sequence

import numpy as np

from tfrewind import registries
from tfrewind.errors import ConfigError

SCOPES = ("global", "layerwise")
# structured_a / structured_b: Li et al. (2017) L1 filter pruning, settings A and B, with the
# original study's layer lists (filter_masks, FILTER_SETTINGS).
FILTER_STRUCTURES = ("structured_a", "structured_b")
COUNTS = ("weights", "channels")
# What happens to a Dense kernel under channel pruning: "fixed" (the classifier keeps its
# units, which are classes) or "rows" (its input rows are items, the reproduction's rule).
CLASSIFIERS = ("fixed", "rows")
# What a density counts: prunable kernel weights, or the MACs kept (tfrewind.pruning.target).
TARGETS = ("weights", "macs")


class NothingKept(ConfigError):
  """A density that keeps no item of a kernel (layerwise) or of all kernels (global)."""


def keep_dense_pattern(pattern: str) -> "re.Pattern":
  """--keep_dense's regular expression, compiled (ConfigError naming a malformed one)."""
  try:
    return re.compile(pattern)
  except re.error as e:
    raise ConfigError(f"--keep_dense={pattern!r} is not a regular expression ({e}): write e.g. "
                      f"'stem_conv|logits'") from None


def kept_count(density: float, n: int) -> int:
  """Number of items that density `density` keeps out of `n` (round half up)."""
  return int(math.floor(density * n + 0.5))


def check_density(density) -> float:
  """Returns `density` as a float, or raises ValueError naming the bad value."""
  try:
    d = float(density)
  except (TypeError, ValueError):
    raise ConfigError(f"density must be a number in (0, 1], got {density!r}") from None
  if not 0.0 < d <= 1.0 or math.isnan(d):
    raise ConfigError(f"density must be in (0, 1], got {density!r}")
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


def _item_axis(w, row) -> int:
  """The axis whose entries are a kernel's items: output channels, or input rows."""
  return w.ndim - 2 if row and w.ndim > 1 else w.ndim - 1


def _scores(weights, masks, structure, criterion, rng, rows, given=None):
  """(per-item saliency, weights per item or None for single weights); items already pruned
  score -inf and never return. The criterion (tfrewind.registries.CRITERIA) scores weights,
  or `given` holds its per-weight scores (of a network scored elsewhere); a channel scores
  the mean of its weights' scores, unless the criterion scores items."""
  entry = registries.criterion(criterion)
  per_weight = None
  if given is not None:
    per_weight = [np.asarray(s, np.float64) for s in given]
  elif entry.scores_model:
    raise ConfigError(f"criterion {criterion!r} scores the network itself: compute its scores "
                      f"with tfrewind.pruning.saliency.scores and pass scores=")
  elif structure == "unstructured" or entry.item_score is None:
    per_weight = [np.asarray(s, np.float64) for s in entry.score(weights, rng)]
  if per_weight is not None:
    if [s.shape for s in per_weight] != [np.shape(w) for w in weights]:
      raise ConfigError(f"criterion {criterion!r} returned scores of shapes "
                        f"{[s.shape for s in per_weight]} for kernels of "
                        f"{[np.shape(w) for w in weights]}: one score per weight")
  out, sizes = [], []
  for i, (w, m, row) in enumerate(zip(weights, masks, rows)):
    if structure == "unstructured":
      s = np.where(m > 0, per_weight[i], -np.inf)
      size = None
    else:
      axis = _item_axis(w, row)
      axes = tuple(a for a in range(w.ndim) if a != axis)
      alive = m.max(axis=axes) > 0 if w.ndim > 1 else m > 0
      s = entry.item_score(w, axis, rng) if per_weight is None else per_weight[i].mean(axis=axes)
      s = np.where(alive, s, -np.inf)
      size = (m > 0).sum(axis=axes).astype(np.float64) if w.ndim > 1 else np.ones(w.size)
    out.append(s.reshape(-1))
    sizes.append(None if size is None else size.reshape(-1))
  return out, sizes


def compute_masks(weights: Sequence[np.ndarray],
                  density: float,
                  masks: Optional[Sequence[np.ndarray]] = None,
                  scope: str = "global",
                  structure: str = "unstructured",
                  criterion: str = "magnitude",
                  seed: int = 0,
                  fixed: Optional[Sequence[bool]] = None,
                  count: str = "weights",
                  rows: Optional[Sequence[bool]] = None,
                  scores: Optional[Sequence[np.ndarray]] = None) -> List[np.ndarray]:
  """New masks that keep `density` of the items, never reviving a pruned one.

  Args:
    weights: kernels, in a fixed order.
    density: fraction of items to keep, counted over all kernels (global) or
      per kernel (layerwise). Items are weights (unstructured) or output
      channels / units (channel); density is relative to the dense network, so
      iterative pruning passes 0.8, 0.64, ...
    count: channel structure: "weights" (d counts kernel weights: as many whole
      channels as bring the kept weights closest to d; the achieved density is
      within half a channel of d) or "channels" (d counts channels).
    rows: per kernel, True to make its input rows the items instead of its
      output channels (the reproduction's rule for Dense layers).
    masks: current masks (default: all ones). The new masks are a subset.
    scope: "global" (one threshold across kernels) or "layerwise".
    structure: "unstructured" or "channel" (saliency = mean |w| over a channel).
    criterion: "magnitude" or "random" (a seeded control with the same counts).
    seed: seed of the random criterion.
    fixed: per kernel, True to leave its mask as it is and out of the counts
      (channel pruning fixes the classifier by default: its units are classes).
    scores: per kernel, the criterion's per-weight scores computed elsewhere (a gradient
      criterion, or --mask_from's network) instead of the criterion's own of `weights`.

  Returns:
    float32 0/1 masks, one per kernel.

  Raises:
    ValueError: on a bad density, scope, structure or criterion, on a density
      that keeps no weight, or on one above the current density (masks only shrink).
  """
  density = check_density(density)
  if scope not in SCOPES:
    raise ConfigError(f"scope must be one of {SCOPES}, got {scope!r}")
  if structure not in ("unstructured", "channel"):
    raise ConfigError(f"compute_masks prunes unstructured or channel, got {structure!r}"
                      + (": use filter_masks" if structure in FILTER_STRUCTURES else ""))
  if count not in COUNTS:
    raise ConfigError(f"count must be one of {COUNTS}, got {count!r}")
  registries.criterion(criterion)
  weights = [np.asarray(w) for w in weights]
  if masks is None:
    masks = [np.ones(w.shape, np.float32) for w in weights]
  masks = [np.asarray(m) for m in masks]
  fixed = [False] * len(weights) if fixed is None else [bool(f) for f in fixed]
  if len(fixed) != len(weights):
    raise ConfigError(f"fixed has {len(fixed)} entries for {len(weights)} kernels")
  if all(fixed):
    raise ConfigError("every kernel is fixed: nothing to prune")
  rows = [False] * len(weights) if rows is None else [bool(r) for r in rows]
  rng = np.random.default_rng(seed)
  free = [i for i, f in enumerate(fixed) if not f]
  if scores is not None and len(scores) != len(weights):
    raise ConfigError(f"scores has {len(scores)} entries for {len(weights)} kernels")
  scores, sizes = _scores([weights[i] for i in free], [masks[i] for i in free], structure,
                          criterion, rng, [rows[i] for i in free],
                          None if scores is None else [scores[i] for i in free])
  totals = [float(weights[i].size) for i in free]
  by_weight = structure == "channel" and count == "weights"

  def keep(s, size, total, where):
    if by_weight:
      return _keep_weighted(s, size, density, total, where)
    return _keep_checked(s, density, where)

  if scope == "global":
    keeps = np.split(keep(np.concatenate(scores), np.concatenate(sizes) if by_weight else None,
                          sum(totals), "all kernels"), np.cumsum([s.size for s in scores])[:-1])
  else:
    keeps = [keep(s, size, total, f"kernel {i}")
             for i, s, size, total in zip(free, scores, sizes, totals)]
  keep_of = dict(zip(free, keeps))

  new = []
  for i, (w, m) in enumerate(zip(weights, masks)):
    if fixed[i]:
      new.append((m > 0).astype(np.float32))
      continue
    kept = keep_of[i]
    if structure == "channel":
      shape = [1] * w.ndim
      shape[_item_axis(w, rows[i])] = -1
      kept = np.broadcast_to(kept.reshape(shape), w.shape)
    new.append((kept.reshape(w.shape) & (m > 0)).astype(np.float32))
  return new


def _keep_weighted(scores, sizes, density, total, where):
  """The most salient items whose weights (sizes) add up closest to density * total.

  Items in order of saliency (ties: lower index first); of two counts equally close,
  the larger. A density above what is still alive (beyond half an item) is an error.
  """
  target = density * total
  order = np.lexsort((np.arange(scores.size), -scores))[:int(np.isfinite(scores).sum())]
  kept_weights = np.concatenate([[0.0], np.cumsum(sizes[order])])
  gap = np.abs(kept_weights - target)
  k = int(gap.size - 1 - np.argmin(gap[::-1]))
  if k == 0:
    raise NothingKept(f"density {density} keeps no channel of {where} ({int(total)} weights, "
                      f"the smallest channel has {int(sizes.min()) if sizes.size else 0}); "
                      "use a larger density")
  if target - kept_weights[-1] > sizes[order].max() / 2:
    raise ConfigError(f"density {density} asks to keep {target:.0f} weights of {where} but only "
                     f"{kept_weights[-1]:.0f} remain: masks only shrink, so densities must "
                     "decrease")
  keep = np.zeros(scores.size, bool)
  keep[order[:k]] = True
  return keep


def _keep_checked(scores, density, where):
  k = kept_count(density, scores.size)
  alive = int(np.isfinite(scores).sum())
  if k == 0:
    raise NothingKept(f"density {density} keeps no item of {where} ({scores.size} items); "
                     "use a larger density")
  if k > alive:
    raise ConfigError(f"density {density} asks to keep {k} items of {where} but only {alive} "
                     "remain: masks only shrink, so densities must decrease")
  return keep_top(scores, k)


def apply(weight: np.ndarray, mask: np.ndarray) -> np.ndarray:
  """`weight` with pruned entries set to +0.0 (w * 0 would give -0.0 for w < 0)."""
  return np.where(mask > 0, weight, np.zeros((), weight.dtype)).astype(weight.dtype)


# Li et al. (2017) settings A and B as the original study ran them (its l1_filter_pruning.py):
# conv index (the convs wider than 1x1 in order, the stem is 1, so block j's first conv is
# 2 + 2j: CIFAR's 3x3 stem, ImageNet's 7x7) -> fraction of that conv's filters pruned at level
# 1. Only the first conv of a block is pruned; its filters feed the block's second conv alone,
# so no residual sum is touched. ResNet-34's stage 4 (convs 28..33) is never pruned.
FILTER_SETTINGS: Dict[tuple, Dict[int, float]] = {
    (56, "structured_a"): {i: 0.1 for i in range(2, 55, 2) if i not in (16, 20, 38, 54)},
    (56, "structured_b"): {i: 0.6 if i <= 19 else 0.3 if i <= 37 else 0.1
                           for i in range(2, 56, 2) if i not in (16, 18, 20, 34, 38, 54)},
    (110, "structured_a"): {i: 0.5 for i in range(2, 37, 2) if i not in (36,)},
    (110, "structured_b"): {i: 0.5 if i <= 37 else 0.4 if i <= 73 else 0.3
                            for i in range(2, 110, 2) if i not in (36, 38, 74)},
    (34, "structured_a"): {i: 0.3 for i in range(2, 27, 2) if i not in (2, 8, 14, 16, 26)},
    (34, "structured_b"): {i: 0.5 if i <= 6 else 0.6 if i <= 14 else 0.4
                           for i in range(2, 27, 2) if i not in (2, 8, 14, 16, 26)},
}


def filter_networks(structure: Optional[str] = None) -> List[str]:
  """The networks (names) that Li et al.'s settings are defined for: of `structure`, or any."""
  return sorted({f"resnet{d}" for d, s in FILTER_SETTINGS if structure in (None, s)})


def filter_masks(weights: Sequence[np.ndarray], ratios: Dict[int, float], level: int = 1,
                 masks: Optional[Sequence[np.ndarray]] = None, seed: int = 0) -> List[np.ndarray]:
  """Li et al.'s L1 filter pruning, as the original study's `prune_<net>_<A|B>_<level>`.

  Kernel i of `ratios` loses round(f * (1 - (1 - r) ** level)) of its f live filters (f *
  ... fractional: rounded up with probability equal to the fraction, one draw of Python's
  random.Random(seed) per listed kernel in order, as the original's random.seed(0)), the
  filters of smallest L1 norm (of the masked kernel; ties: lower index). Other kernels keep
  their masks.

  Args:
    weights: kernels, in layer order; the last axis is the filters.
    ratios: kernel index (into `weights`) -> fraction pruned at level 1.
    level: how many times the ratios compound (the original's 1..5).
    masks: current masks (default: all ones).
    seed: the seed of the rounding draws (the original: 0, every time).
  """
  if int(level) != level or level < 1:
    raise ConfigError(f"level must be a positive integer, got {level!r}")
  weights = [np.asarray(w) for w in weights]
  masks = [np.ones(w.shape, np.float32) if masks is None else (np.asarray(masks[i]) > 0)
           .astype(np.float32) for i, w in enumerate(weights)]
  draws = random_lib.Random(seed)
  for i in sorted(ratios):
    w, m = weights[i], masks[i]
    norms = np.abs((w * m).astype(np.float64)).reshape(-1, w.shape[-1]).sum(axis=0)
    alive = np.flatnonzero(m.reshape(-1, w.shape[-1]).any(axis=0))
    count = len(alive) * (1 - (1 - ratios[i]) ** level)
    count = int(count) + (draws.random() < (count - int(count)))
    pruned = alive[np.argsort(norms[alive], kind="stable")[:count]]
    m = m.copy()
    m[..., pruned] = 0
    masks[i] = m
  return masks


parse_n_m = registries.parse_n_m  # '2:4' -> (2, 4), the N:M entry's own parser


def n_m_applies(kernel: np.ndarray, m: int) -> bool:
  """A Conv or Dense kernel whose input size is a multiple of M (TF-MOT leaves others dense)."""
  return np.ndim(kernel) >= 2 and np.shape(kernel)[-2] % m == 0


def n_m_masks(weights: Sequence[np.ndarray], n: int, m: int,
              masks: Optional[Sequence[np.ndarray]] = None,
              scores: Optional[Sequence[np.ndarray]] = None) -> List[np.ndarray]:
  """N:M sparsity in TF-MOT's `sparsity_m_by_n` layout: the kernel read as [C_OUT, ..., C_IN],
  every M consecutive weights along C_IN keep the N of highest score (|w| by default; ties: the
  lower index; pruned weights never return). Kernels that `n_m_applies` rejects keep their
  masks (the 3-channel stem, as TF-MOT does)."""
  out = []
  for i, w in enumerate(weights):
    w = np.asarray(w)
    old = np.ones(w.shape, np.float32) if masks is None else np.asarray(masks[i], np.float32)
    if not n_m_applies(w, m):
      out.append((old > 0).astype(np.float32))
      continue
    s = np.abs(w.astype(np.float64)) if scores is None else np.asarray(scores[i], np.float64)
    s = np.where(old > 0, s, -np.inf)
    groups = np.moveaxis(s, -1, 0).reshape(-1, m)
    # Per group, positions by descending score, ties to the lower position.
    order = np.lexsort((np.broadcast_to(np.arange(m), groups.shape), -groups), axis=-1)
    keep = np.zeros(groups.shape, bool)
    np.put_along_axis(keep, order[:, :n], True, axis=-1)
    keep = np.moveaxis(keep.reshape(np.moveaxis(s, -1, 0).shape), 0, -1)
    out.append((keep & (old > 0)).astype(np.float32))
  return out


def grasp_code_keep(scores: List[np.ndarray], density: float) -> List[np.ndarray]:
  """GraSP's released keep rule, in float32 as its code: the scores -w * Hg (here -s) divided
  by |their sum| + 1e-10; k = int(n * (1 - keep_ratio)) with keep_ratio = 1 - (1 - density),
  the k-th largest the threshold, and every score <= it kept (so k - 1 go, ties aside). The
  sum's order differs from PyTorch's, which moves the divisor by a rounding at most."""
  code = [(-np.asarray(x)).astype(np.float32) for x in scores]
  flat = np.concatenate([c.ravel() for c in code])
  norm = np.float32(abs(flat.sum(dtype=np.float32))) + np.float32(1e-10)
  remove = int(flat.size * (1 - (1 - (1 - float(density)))))
  if remove == 0:  # torch.topk(x, 0)[-1] fails; nothing goes
    return [np.ones(c.shape, np.float32) for c in code]
  threshold = np.sort(flat / norm)[-remove]
  return [((c / norm) <= threshold).astype(np.float32) for c in code]


def check_own_keep(criterion: str, scope: str, structure: str) -> None:
  """A criterion with its own keep rule (GraSP's code) prunes once, globally, unstructured."""
  if (scope, structure) != ("global", "unstructured"):
    raise ConfigError(f"--criterion={criterion} keeps by its own global rule: use "
                      f"--scope=global --structure=unstructured")


def kept_by(keep, criterion: str, density: float, rule, scores, old, fixed) -> List[np.ndarray]:
  """The masks of a criterion with a keep rule of its own (`keep(scores, density)` over the
  kernels not kept dense; GraSP's code): `rule` must be (scope, structure) = one global
  unstructured prune. Kernels kept dense keep their masks; masks only shrink."""
  check_own_keep(criterion, *rule)
  if scores is None:
    raise ConfigError(f"criterion {criterion!r} keeps weights by its scores: pass them")
  free = [i for i, f in enumerate(fixed) if not f]
  got = iter(keep([np.asarray(scores[i]) for i in free], check_density(density)))
  return [np.asarray(old[i], np.float32) if f else np.minimum(next(got), old[i]).astype(
      np.float32) for i, f in enumerate(fixed)]
