"""The benchmark runs end to end on a tiny setting (numbers are not asserted: timing is noise)."""

import pytest

from tfrewind import bench

from clitools import PROCESSES, SMALL


@pytest.mark.slow
def test_bench_prints_every_row_and_ratio(capsys):
  assert bench.main(models=["resnet8"], repeats=1, steps=2, batch=8, inference=["resnet8"],
                    quickstart=False, densities=(0.5,)) == 0
  out = capsys.readouterr().out
  for structure in ("channel", "channel_group", "group@ch MACs", "channel_group_mean", "n_m"):
    assert f"resnet8    {structure:<18} {'0.50':>7}" in out, structure  # masked vs deployed
  for row in ("dense tf_keras", "tfrewind pruned 0.2", "input pipeline", "ratio pruned/dense",
              "ratio pipeline/train", "global threshold of wrn16_8", "checkpoint of resnet20",
              "pruned/dense, median step of all repeats: resnet8", "one 3x3 conv at 32x32"):
    assert row in out, row


@pytest.mark.slow
@PROCESSES
def test_quickstart_cycle_runs_the_flag_file_in_a_fresh_process():
  wall, inside, steps = bench.quickstart_cycle(extra=SMALL)
  assert steps == 80  # 40 dense + 40 retraining (lr_rewind retrains a whole cycle)
  assert 0 < inside < wall


def test_global_threshold_and_matmul_rate_are_measured():
  seconds, count = bench.threshold_seconds("resnet20", repeats=1)
  assert count == 270896 and seconds > 0
  assert bench.matmul_gflops(n=256, repeats=1) > 0
