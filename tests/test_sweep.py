"""tfrewind.sweep: the grid, the snapshot steps it needs, and the checks made before training."""

import dataclasses
import os

import pytest

from clitools import REPO, cli
from tfrewind import hparams
from tfrewind import sweep

BASE = hparams.HParams(train_steps="1000it", lr_boundaries=("500it", "750it"),
                       rewind_step="100it", epoch_steps="100it")


def test_grid_is_seeds_x_methods_x_budgets_x_densities_in_that_order():
  runs = sweep.grid(BASE, ["finetune", "lr_rewind"], [0.5, 0.2], [1, 2], ["2ep", "5ep"])
  assert len(runs) == 16
  assert [(r.seed, r.method, r.retrain, r.density) for r in runs[:5]] == [
      (1, "finetune", "2ep", 0.5), (1, "finetune", "2ep", 0.2), (1, "finetune", "5ep", 0.5),
      (1, "finetune", "5ep", 0.2), (1, "lr_rewind", "2ep", 0.5)]
  assert runs[-1].seed == 2 and runs[-1].method == "lr_rewind"


def test_iterative_grid_ignores_one_shot_densities():
  base = hparams.HParams(schedule="iterative", rounds=3)
  runs = sweep.grid(base, ["lr_rewind"], [0.5, 0.2], [1])
  assert len(runs) == 1 and runs[0].densities == (0.8, 0.8 ** 2, 0.8 ** 3)


def test_snapshot_steps_are_the_weight_restoring_steps_of_the_grid():
  runs = sweep.grid(BASE, ["finetune", "weight_rewind", "lr_rewind"], [0.5], [1],
                    [None, "3ep"])
  # weight_rewind at K=100, and with a 300-step budget at N - T = 700; the others restore none.
  assert sweep.snapshot_steps(runs) == [100, 700]
  assert sweep.snapshot_steps(sweep.grid(BASE, ["finetune", "lr_rewind"], [0.5], [1])) == []


def test_validate_names_the_first_bad_setting():
  with pytest.raises(ValueError, match="unknown --model='resnet21x'"):
    sweep.validate([BASE, hparams.HParams(model="resnet21x")])


@pytest.mark.parametrize("change,match", [
    (dict(density=1e-7), "keeps no weight of resnet20 with --scope=global"),
    # ResNet-20's 3x3x3x16 stem has 432 weights: 1e-3 keeps none of it, though 271 overall.
    (dict(density=1e-3, scope="layerwise"), "--scope=layerwise --structure=unstructured"),
    # 16 channels: 0.02 keeps none of a 16-channel conv.
    (dict(density=0.02, scope="layerwise", structure="channel"), "--structure=channel"),
])
def test_densities_that_empty_a_kernel_fail_before_training(change, match):
  hp = dataclasses.replace(hparams.HParams(), **change)
  with pytest.raises(ValueError, match=match):
    sweep.check_densities([hparams.HParams(density=0.5), hp])


def test_densities_that_keep_weights_pass():
  sweep.check_densities([hparams.HParams(density=0.01),
                         hparams.HParams(density=0.1, scope="layerwise", structure="channel")])


def test_random_controls_add_the_random_mask_runs_of_their_methods_only():
  runs = sweep.grid(BASE, ["finetune", "clr"], [0.5, 0.2], [1], random_controls=["clr"])
  assert [(r.method, r.criterion) for r in runs] == [
      ("finetune", "magnitude")] * 2 + [("clr", "magnitude")] * 2 + [("clr", "random")] * 2
  assert sweep.grid(dataclasses.replace(BASE, criterion="random"), ["clr"], [0.5], [1],
                    random_controls=["clr"])[0].criterion == "random"


def test_sweep_plan_counts_every_run_once_and_the_shareable_prefixes(capsys):
  """Fine-tuning's budgets are prefixes of the largest (constant LR from the trained weights);
  LR rewinding's are not (each replays another part of the schedule)."""
  base = hparams.HParams(dataset="synthetic", model="resnet8", train_steps="40it",
                         lr_boundaries=("20it", "30it"), rewind_step="10it")
  runs = sweep.grid(base, ["finetune", "lr_rewind", "reinit"], [0.5, 0.2], [1],
                    ["10it", "20it", "40it"])
  cost = sweep.cost(runs)
  # dense 40; finetune and lr_rewind (10 + 20 + 40) x 2 densities each; reinit 40 x 2
  assert (cost["dense"], cost["retrain"], cost["runs"]) == (40, 2 * 70 + 2 * 70 + 2 * 40, 15)
  assert cost["shareable"] == 2 * (70 - 40)
  lines = sweep.cost_lines(cost, its=10.0)
  assert lines[0] == "15 runs: 40 dense + 360 retraining = 400 optimizer steps"
  assert "60 steps saved -> 340" in lines[1]
  status, out, _ = cli(["sweep", "--flagfile=" + os.path.join(REPO, "flags",
                                                              "renda_resnet56_one_shot.flags"),
                        "--plan"], capsys)
  assert status == 0 and "213,324 dense" in out  # 3 seeds x 71,108
  assert "(1.241x fewer" in out  # issue #25's "about 1.24x" for Renda's ResNet-56 one-shot
