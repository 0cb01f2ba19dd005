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
  masks = M.compute_masks(ws, 0.25, structure="channel")
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
  for structure in M.STRUCTURES:
    masks = M.compute_masks(ws, 0.3, old, structure=structure, fixed=fixed)
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
