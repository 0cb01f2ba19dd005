"""tfrewind.flops: hand count of ResNet-20's first block, monotone in density."""

import pytest

import tfrewind


def test_resnet20_first_block_hand_count_and_total():
  model = tfrewind.prunable(tfrewind.build_model("resnet20"))
  stem = 32 * 32 * 3 * 3 * 3 * 16  # output positions x kernel weights
  block_conv = 32 * 32 * 3 * 3 * 16 * 16
  f = tfrewind.flops(model)
  # Stem + the first block's two convs, counted by hand:
  first = stem + 2 * block_conv
  assert first == 442368 + 2 * 2359296
  total = (stem + 6 * block_conv                    # stage 1: 3 blocks x 2 convs
           + 16 * 16 * (3 * 3 * 16 * 32 + 5 * 3 * 3 * 32 * 32 + 16 * 32)   # stage 2 + shortcut
           + 8 * 8 * (3 * 3 * 32 * 64 + 5 * 3 * 3 * 64 * 64 + 32 * 64)    # stage 3 + shortcut
           + 64 * 10)                               # logits
  assert f["dense_macs"] == f["pruned_macs"] == total and f["speedup"] == 1.0


def test_flops_fall_with_density_and_a_pruned_weight_costs_nothing():
  model = tfrewind.prunable(tfrewind.build_model("resnet20"))
  previous = tfrewind.flops(model)["pruned_macs"]
  for density in (0.8, 0.5, 0.2, 0.05):
    tfrewind.prune(model, density)
    f = tfrewind.flops(model)
    assert f["pruned_macs"] < previous and f["speedup"] > 1
    previous = f["pruned_macs"]
  assert f["dense_macs"] / f["pruned_macs"] == pytest.approx(f["speedup"], abs=1e-3)
