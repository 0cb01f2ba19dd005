"""Invariants of the pure NumPy pruning maths (tfrewind/pruning/masks.py)."""

import numpy as np
import pytest

from tfrewind.pruning import masks as M


def _kernels(seed=0):
  rng = np.random.default_rng(seed)
  return [rng.standard_normal(s).astype(np.float32) for s in [(3, 3, 3, 16), (3, 3, 16, 32),
                                                              (1, 1, 16, 32), (32, 10)]]


@pytest.mark.parametrize("density", [0.8, 0.5, 0.2, 0.8 ** 10, 0.013, 1.0])
def test_global_keeps_exact_count_and_threshold_separates(density):
  ws = _kernels()
  masks = M.compute_masks(ws, density)
  total = sum(w.size for w in ws)
  kept = sum(int(m.sum()) for m in masks)
  assert kept == M.kept_count(density, total) == int(np.floor(density * total + 0.5))
  kept_abs = np.concatenate([np.abs(w)[m > 0] for w, m in zip(ws, masks)])
  pruned_abs = np.concatenate([np.abs(w)[m == 0] for w, m in zip(ws, masks)])
  if pruned_abs.size:
    assert kept_abs.min() >= pruned_abs.max()
  for w, m in zip(ws, masks):
    assert m.shape == w.shape and m.dtype == np.float32
    assert set(np.unique(m)) <= {0.0, 1.0}


def test_global_is_one_threshold_not_per_layer():
  # A layer of small weights loses far more than one of large weights.
  ws = [np.full((10, 10), 0.01, np.float32) + np.arange(100).reshape(10, 10) * 1e-5,
        np.full((10, 10), 1.0, np.float32) + np.arange(100).reshape(10, 10) * 1e-5]
  masks = M.compute_masks(ws, 0.5)
  assert masks[0].sum() == 0 and masks[1].sum() == 100


def test_layerwise_gives_each_layer_the_density():
  ws = _kernels()
  masks = M.compute_masks(ws, 0.3, scope="layerwise")
  for w, m in zip(ws, masks):
    assert int(m.sum()) == M.kept_count(0.3, w.size)


def test_ties_are_broken_by_lowest_index_deterministically():
  ws = [np.ones((2, 5), np.float32), np.ones((5,), np.float32)]
  masks = M.compute_masks(ws, 0.5)
  assert masks[0].reshape(-1).tolist() == [1] * 8 + [0] * 2
  assert masks[1].tolist() == [0] * 5
  assert all((a == b).all() for a, b in zip(masks, M.compute_masks(ws, 0.5)))


def test_iterative_masks_only_shrink_and_counts_are_relative_to_dense():
  rng = np.random.default_rng(1)
  ws = _kernels()
  total = sum(w.size for w in ws)
  masks = None
  for k in range(1, 8):
    # Weights move between rounds; a pruned weight must still never return.
    ws = [w * m if masks else w for w, m in zip(ws, masks or ws)]
    ws = [w + rng.standard_normal(w.shape).astype(np.float32) * 0.5 for w in ws]
    new = M.compute_masks(ws, 0.8 ** k, masks)
    if masks:
      assert all(((n > 0) <= (o > 0)).all() for n, o in zip(new, masks))
    assert sum(int(m.sum()) for m in new) == M.kept_count(0.8 ** k, total)
    masks = new


def test_channel_structure_masks_whole_output_channels():
  ws = _kernels()
  masks = M.compute_masks(ws, 0.25, structure="channel", count="channels")
  channels = sum(w.shape[-1] for w in ws)
  kept_channels = 0
  saliency_kept, saliency_pruned = [], []
  for w, m in zip(ws, masks):
    per_channel = m.reshape(-1, w.shape[-1])
    assert ((per_channel == 0).all(axis=0) | (per_channel == 1).all(axis=0)).all()
    alive = per_channel[0] > 0
    kept_channels += int(alive.sum())
    s = np.abs(w).reshape(-1, w.shape[-1]).mean(axis=0)
    saliency_kept += list(s[alive])
    saliency_pruned += list(s[~alive])
  assert kept_channels == M.kept_count(0.25, channels)
  assert min(saliency_kept) >= max(saliency_pruned)


def test_fixed_kernels_keep_their_masks_and_stay_out_of_the_counts():
  ws = _kernels()
  old = [np.ones(w.shape, np.float32) for w in ws]
  old[-1].reshape(-1)[:3] = 0
  fixed = [False] * (len(ws) - 1) + [True]
  for structure in ("unstructured", "channel"):
    masks = M.compute_masks(ws, 0.3, old, structure=structure, fixed=fixed, count="channels")
    assert masks[-1].tobytes() == old[-1].tobytes()
    items = (lambda m: int(m.sum())) if structure == "unstructured" else (
        lambda m: int(m.reshape(-1, m.shape[-1]).max(0).sum()))
    total = sum(w.size if structure == "unstructured" else w.shape[-1] for w in ws[:-1])
    assert sum(items(m) for m in masks[:-1]) == M.kept_count(0.3, total)
  with pytest.raises(ValueError, match="nothing to prune"):
    M.compute_masks(ws, 0.3, fixed=[True] * len(ws))


def test_random_criterion_keeps_the_same_counts_and_differs_from_magnitude():
  ws = _kernels()
  mag = M.compute_masks(ws, 0.3)
  rnd = M.compute_masks(ws, 0.3, criterion="random", seed=3)
  assert sum(m.sum() for m in rnd) == sum(m.sum() for m in mag)
  assert any((a != b).any() for a, b in zip(mag, rnd))
  again = M.compute_masks(ws, 0.3, criterion="random", seed=3)
  assert all((a == b).all() for a, b in zip(rnd, again))
  lw = M.compute_masks(ws, 0.3, scope="layerwise", criterion="random")
  assert [int(m.sum()) for m in lw] == [M.kept_count(0.3, w.size) for w in ws]


@pytest.mark.parametrize("density", [0.0, -0.1, 1.5, float("nan"), "x", None])
def test_bad_density_raises_naming_the_value(density):
  with pytest.raises(ValueError, match="density"):
    M.compute_masks(_kernels(), density)


def test_density_that_keeps_nothing_raises():
  with pytest.raises(ValueError, match="keeps no item"):
    M.compute_masks([np.ones((4,), np.float32)], 0.1)


def test_density_above_current_raises():
  ws = _kernels()
  masks = M.compute_masks(ws, 0.2)
  with pytest.raises(ValueError, match="only shrink"):
    M.compute_masks(ws, 0.5, masks)


@pytest.mark.parametrize("kw", [{"scope": "local"}, {"structure": "block"}, {"criterion": "grad"}])
def test_bad_options_raise(kw):
  with pytest.raises(ValueError, match=list(kw.values())[0]):
    M.compute_masks(_kernels(), 0.5, **kw)


def test_keep_top_exact_on_large_input():
  scores = np.random.default_rng(0).random(1_000_003)
  keep = M.keep_top(scores, 12345)
  assert keep.sum() == 12345
  assert scores[keep].min() >= scores[~keep].max()


def test_apply_gives_positive_zero():
  w = np.array([-1.5, 2.0, -3.0], np.float32)
  out = M.apply(w, np.array([0, 1, 0], np.float32))
  assert out.tobytes() == np.array([0.0, 2.0, 0.0], np.float32).tobytes()


# ------------------------------------------------------------------ channel density by weights
def reproduction_masks(weights, sparsity):
  """The reproduction's rule, written again from its pruning/tools.py (structurize_salience and
  get_pruning_mask): each conv output channel and each Dense INPUT row gets its mean |w|,
  broadcast to its weights; one np.percentile over all of them; below it is pruned."""
  saliences = []
  for w in weights:
    a = np.abs(w)
    if w.ndim == 2:
      saliences.append(np.ones_like(a) * a.mean(axis=1, keepdims=True))
    else:
      flat = a.reshape(-1, w.shape[-1])
      saliences.append((np.ones_like(flat) * flat.mean(axis=0, keepdims=True)).reshape(w.shape))
  flat = np.concatenate([s.reshape(-1) for s in saliences])
  threshold = np.percentile(flat, sparsity * 100)
  return [(s >= threshold).astype(np.float32) for s in saliences]


def _items(w, m, row):
  """Per item (conv output channel, or Dense input row with row=True): kept?"""
  return (m.any(axis=1) if row else m.reshape(-1, m.shape[-1]).any(axis=0))


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("density", [0.8, 0.8 ** 3, 0.8 ** 5, 0.8 ** 10, 0.5, 0.05])
def test_channel_density_counts_weights_like_the_reproduction(seed, density):
  rng = np.random.default_rng(seed)
  # a stem, two stages, a shortcut and a classifier, each channel with its own scale
  shapes = [(3, 3, 3, 16), (3, 3, 16, 16), (3, 3, 16, 32), (3, 3, 32, 32), (1, 1, 16, 32),
            (32, 10)]
  ws = [(rng.standard_normal(s) * rng.uniform(0.2, 2.0, s[-1] if len(s) == 4 else (s[0], 1))
         ).astype(np.float32) for s in shapes]
  rows = [w.ndim == 2 for w in ws]
  ours = M.compute_masks(ws, density, structure="channel", rows=rows)
  theirs = reproduction_masks(ws, 1 - density)
  total = sum(w.size for w in ws)
  ours_items = np.concatenate([_items(w, m, r) for w, m, r in zip(ws, ours, rows)])
  their_items = np.concatenate([_items(w, m, r) for w, m, r in zip(ws, theirs, rows)])
  sizes = np.concatenate([np.full(w.shape[0], w.shape[1]) if r else
                          np.full(w.shape[-1], w.size // w.shape[-1]) for w, r in zip(ws, rows)])
  # Whole items only, the same ones as the reproduction's but for at most the one channel at
  # the threshold (it keeps that channel whenever the percentile falls inside it; we keep it
  # when that brings the kept weights closer to d).
  for w, m, r in zip(ws, ours, rows):
    assert (m == np.broadcast_to(_items(w, m, r)[:, None] if r else _items(w, m, r), w.shape)
            ).all()
  differ = np.flatnonzero(ours_items != their_items)
  assert len(differ) <= 1
  kept = sum(int(m.sum()) for m in ours)
  assert abs(kept - density * total) <= sizes[ours_items | their_items].max() / 2
  if differ.size:
    # the differing channel is the least salient of the larger set
    saliency = np.concatenate([np.abs(w).mean(axis=1) if r else
                               np.abs(w).reshape(-1, w.shape[-1]).mean(axis=0)
                               for w, r in zip(ws, rows)])
    larger = ours_items | their_items
    assert saliency[differ[0]] == saliency[larger].min()


def test_channel_weight_count_is_closest_to_d_and_channels_count_stays_an_option():
  # four channels of 2, 4, 8 and 16 weights (saliency rising with size)
  ws = [np.ones((2, 1), np.float32), np.ones((4, 1), np.float32) * 2,
        np.ones((8, 1), np.float32) * 3, np.ones((16, 1), np.float32) * 4]
  total = 30
  for density, expected in [(16 / 30, [0, 0, 0, 1]), (24 / 30, [0, 0, 1, 1]),
                            (20 / 30, [0, 0, 1, 1]), (19 / 30, [0, 0, 0, 1]),
                            (29 / 30, [1, 1, 1, 1])]:
    got = M.compute_masks(ws, density, structure="channel")
    assert [int(m.max()) for m in got] == expected, density
    kept = sum(int(m.sum()) for m in got)
    assert abs(kept - density * total) <= 8 / 2 + 1e-9
  # count="channels": half of the channels, whatever their size
  got = M.compute_masks(ws, 0.5, structure="channel", count="channels")
  assert [int(m.max()) for m in got] == [0, 0, 1, 1]
  with pytest.raises(M.NothingKept, match="keeps no channel"):
    M.compute_masks(ws, 0.01, structure="channel")
  with pytest.raises(ValueError, match="count must be one of"):
    M.compute_masks(ws, 0.5, structure="channel", count="filters")


def test_channel_weight_count_iterates_and_only_shrinks():
  ws = _kernels(3)
  masks, total = None, sum(w.size for w in ws)
  for k in range(1, 6):
    new = M.compute_masks(ws, 0.8 ** k, masks, structure="channel")
    if masks:
      assert all(((n > 0) <= (o > 0)).all() for n, o in zip(new, masks))
    kept = sum(int(m.sum()) for m in new)
    assert abs(kept - 0.8 ** k * total) <= max(w.size // w.shape[-1] for w in ws) / 2
    masks = new
  with pytest.raises(ValueError, match="only shrink"):
    M.compute_masks(ws, 0.9, masks, structure="channel")


# ------------------------------------------------------------------ Li et al. filters
def test_filter_settings_are_the_originals_layer_lists():
  # vision/lottery/lottery/l1_filter_pruning.py, as released
  a56 = M.FILTER_SETTINGS[(56, "structured_a")]
  assert sorted(a56) == [i for i in range(2, 55, 2) if i not in (16, 20, 38, 54)]
  assert set(a56.values()) == {0.1}
  b56 = M.FILTER_SETTINGS[(56, "structured_b")]
  assert sorted(b56) == [i for i in range(2, 56, 2) if i not in (16, 18, 20, 34, 38, 54)]
  assert [b56[i] for i in (2, 14, 22, 36, 40, 52)] == [0.6, 0.6, 0.3, 0.3, 0.1, 0.1]
  assert sorted(M.FILTER_SETTINGS[(110, "structured_a")]) == list(range(2, 35, 2))
  b110 = M.FILTER_SETTINGS[(110, "structured_b")]
  assert len(b110) == 51 and {36, 38, 74}.isdisjoint(b110)
  assert [b110[i] for i in (34, 40, 72, 76, 108)] == [0.5, 0.4, 0.4, 0.3, 0.3]


def original_filter_masks(weights, masks, ratios, level):
  """The original's _prune_resnet_generic / prune_structured_generic, written again."""
  import random  # pylint: disable=g-import-not-at-top
  random.seed(0)
  out = []
  for i, (w, m) in enumerate(zip(weights, masks)):
    m = m.copy()
    if i in ratios:
      percent = 1 - (1 - ratios[i]) ** level
      n = w.shape[-1]
      norms = np.linalg.norm((m * w).reshape(-1, n), ord=1, axis=0)
      smallest = np.argsort(norms, kind="stable")
      nnz = sum(not np.allclose(m[..., f], 0) for f in range(n))
      count = nnz * percent
      count = int(count) + (random.random() < (count - int(count)))
      m[..., tuple(smallest[n - nnz:n - nnz + count])] = 0
    out.append(m)
  return out


@pytest.mark.parametrize("level", [1, 2, 3, 5])
def test_filter_masks_are_the_originals(level):
  rng = np.random.default_rng(level)
  ws = [rng.standard_normal((3, 3, 8, 16)).astype(np.float32) for _ in range(6)]
  ratios = {1: 0.1, 3: 0.6, 4: 0.3}
  ones = [np.ones(w.shape, np.float32) for w in ws]
  ours = M.filter_masks(ws, ratios, level)
  theirs = original_filter_masks(ws, ones, ratios, level)
  assert all(a.tobytes() == b.tobytes() for a, b in zip(ours, theirs))
  for i, (w, m) in enumerate(zip(ws, ours)):
    alive = m.reshape(-1, 16).any(axis=0)
    assert (m.reshape(-1, 16)[:, alive] == 1).all()  # whole filters
    if i not in ratios:
      assert alive.all()
      continue
    exact = 16 * (1 - (1 - ratios[i]) ** level)
    assert int(exact) <= 16 - alive.sum() <= int(exact) + 1
    norms = np.abs(w).reshape(-1, 16).sum(axis=0)
    if alive.any() and not alive.all():  # (the original may prune every filter, as here)
      assert norms[~alive].max() <= norms[alive].min()


def test_filter_masks_round_up_at_random_seeded():
  ws = [np.random.default_rng(0).standard_normal((3, 3, 4, 16)).astype(np.float32)] * 40
  ratios = {i: 0.1 for i in range(40)}  # 1.6 filters each: 1 or 2, 2 with probability 0.6
  pruned = [16 - int(m.reshape(-1, 16).any(0).sum()) for m in M.filter_masks(ws, ratios)]
  assert set(pruned) == {1, 2}
  assert pruned == [16 - int(m.reshape(-1, 16).any(0).sum())
                    for m in M.filter_masks(ws, ratios)]
  other = [16 - int(m.reshape(-1, 16).any(0).sum()) for m in M.filter_masks(ws, ratios, seed=1)]
  assert other != pruned
  with pytest.raises(ValueError, match="level must be a positive integer"):
    M.filter_masks(ws, ratios, level=0)
  with pytest.raises(ValueError, match="use filter_masks"):
    M.compute_masks(ws, 0.5, structure="structured_a")
