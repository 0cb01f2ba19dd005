"""Every published series that `tfrewind report --reference_only` draws has a flag file whose
`sweep --print` produces its runs: the same network, structure, schedule, method, density,
retraining budget, trials and protocol as the released trials (Renda et al. 2020) and Mikler's
Table 5."""

import contextlib
import glob
import io
import math
import os
import shlex

import pytest
from absl import flags

from tfrewind import plan
from tfrewind.report import aggregate, reference

from clitools import REPO, cli


def _budget_steps(epochs: int, dataset: str = "cifar10") -> int:
  if dataset == "imagenet2012":  # its TPU code's checkpoints: multiples of 1,251 iterations
    return 1251 * epochs
  # the original's checkpoints: 71,108 - ceil(390.625 * t) for t < 182 (its README)
  return 71108 if epochs == 182 else math.ceil(50000 / 128 * epochs)


# The protocol of the code that made each dataset's released trials.
PROTOCOL = {"cifar10": "renda_code", "imagenet2012": "renda_tpu_code"}


@pytest.fixture(scope="module")
def printed_runs():
  """{flag file: [HParams of each line of its `sweep --print`]}, every flag file."""
  from tfrewind import cli as cli_lib, commands  # pylint: disable=g-import-not-at-top
  out = {}
  old = os.getcwd()
  os.chdir(REPO)  # the printed lines name flags/... relative to the checkout
  try:
    for path in sorted(glob.glob(os.path.join("flags", "*.flags"))):
      buffer = io.StringIO()
      with contextlib.redirect_stdout(buffer):
        status, _, _ = cli(["sweep", f"--flagfile={path}", "--print"])
      assert status == 0, path
      runs = []
      for line in buffer.getvalue().splitlines():
        args = shlex.split(line)
        assert args[:2] == ["tfrewind", "run"], line
        flags.FLAGS.unparse_flags()
        flags.FLAGS(["tfrewind"] + cli_lib.expand_flagfiles(args[2:]))
        grid = commands.make_grid(check_networks=False)
        assert len(grid) == 1, line  # one line, one run
        runs.append(grid[0])
      flags.FLAGS.unparse_flags()
      out[os.path.basename(path)] = runs
  finally:
    os.chdir(old)
  return out


def _covers(hp, row, published_levels) -> bool:
  if (hp.model, hp.dataset, hp.structure, hp.schedule, hp.method) != (
      row.network, row.dataset, row.structure, row.schedule, row.method):
    return False
  if hp.structure.startswith("structured"):
    point = published_levels[(row.network, row.structure)].index(row.density) + 1 == hp.level
  elif hp.schedule == "one_shot":
    point = round(hp.density, 4) == row.density
  else:
    point = row.density in [round(d, 4) for d in hp.densities]
  budget = ("retrain" not in plan.METHODS[hp.method].reads
            or hp.to_steps("retrain") == _budget_steps(int(row.retrain_epochs), row.dataset))
  return point and budget


def test_every_released_series_has_a_flag_file_that_runs_it(printed_runs):
  trials = reference.renda_trials()
  levels = {key: tuple(sorted(g["density"].unique(), reverse=True))
            for key, g in trials.groupby(["network", "structure"])}
  settings = trials.groupby(["network", "dataset", "structure", "schedule", "method", "density",
                             "retrain_epochs"])["trial"].nunique().reset_index()
  drawn = {k for k, _ in aggregate.figure_groups(reference.renda_table())}
  series = settings.groupby(["network", "dataset", "schedule", "structure"]).ngroups
  assert len(drawn) == series == 14  # the published figures: ten CIFAR-10, four ImageNet
  by_series = {}
  for name, runs in printed_runs.items():
    for hp in runs:
      by_series.setdefault((hp.model, hp.dataset, hp.structure, hp.schedule, hp.method),
                           []).append((name, hp))
  missing = []
  for row in settings.itertuples():
    candidates = by_series.get((row.network, row.dataset, row.structure, row.schedule,
                                row.method), [])
    found = [(name, hp) for name, hp in candidates if _covers(hp, row, levels)]
    files = {name for name, _ in found}
    seeds = {hp.seed for _, hp in found}
    protocols = {hp.protocol for _, hp in found}
    if not found or len(seeds) < row.trial or protocols != {PROTOCOL[row.dataset]}:
      missing.append((row.network, row.structure, row.schedule, row.method, row.density,
                      row.retrain_epochs, sorted(files), sorted(seeds), sorted(protocols)))
  assert not missing, missing[:5]
  # released settings (x10 budgets). CIFAR-10: unstructured one-shot 3 x 5 methods x 10
  # densities, iterative 4 methods x (10 + 17 + 10) densities, structured 4 x 5 methods x 5
  # levels. ImageNet: ResNet-50 one-shot 5 methods x 10 densities, iterative 3 x 10, ResNet-34
  # structured 2 x 5 methods x 5 levels.
  cifar = settings.dataset == "cifar10"
  assert (~cifar).sum() == (5 * 10 + 3 * 10 + 2 * 5 * 5) * 10 == 1300
  assert len(settings) == (3 * 5 * 10 + 4 * 37 + 4 * 5 * 5) * 10 + 1300


def test_mikler_table_5_has_a_flag_file_that_runs_it(printed_runs):
  points = reference.mikler_points()
  runs = printed_runs["resnet110_one_shot.flags"]
  for row in points.itertuples():
    assert any(hp.model == row.network and hp.dataset == row.dataset and hp.method == row.method
               and round(hp.density, 3) == row.density and hp.protocol == "mikler_code"
               and hp.schedule == "one_shot" and hp.structure == "unstructured" for hp in runs), row


def test_renda_flag_files_run_the_originals_cycle_and_checkpoints(printed_runs):
  runs = printed_runs["renda_resnet56_one_shot.flags"]
  hp = runs[0]
  assert (hp.cycle_steps, hp.boundaries, hp.nesterov, hp.validation) == (
      71108, [35546, 53125], False, True)
  # every rewind point is one of the original's checkpoint_iters (its README)
  steps = sorted({p.weights_from for p in (h.plan() for h in runs) if p.weights_from is not None})
  assert steps == [0, 4701, 12514, 20326, 28139, 35951, 43764, 51576, 59389, 67201]
  assert {h.method for h in runs} == {"finetune", "weight_rewind", "lr_rewind",
                                      "weight_rewind_low_lr", "reinit"}
  # reinit ignores the budget: one run per density and seed, not one per budget
  assert sum(h.method == "reinit" for h in runs) == 10 * 3
  assert len(runs) == 4 * 10 * 10 * 3 + 10 * 3


def test_renda_imagenet_flag_files_run_the_tpu_codes_cycle_and_checkpoints(printed_runs):
  runs = printed_runs["renda_resnet50_one_shot.flags"]
  hp = runs[0]
  assert (hp.cycle_steps, hp.boundaries, hp.lr, hp.lr_warmup, hp.nesterov, hp.batch_size) == (
      112590, [37535, 75069, 100092], 0.4, 5.0, True, 1024)
  assert hp.steps_per_epoch() == 1251 and hp.protocol == "renda_tpu_code"
  steps = sorted({p.weights_from for p in (h.plan() for h in runs) if p.weights_from is not None})
  assert steps == [1251 * 9 * k for k in range(10)]  # rewinding to N - t, t = 9..90 epochs
  assert len(runs) == 4 * 10 * 10 * 3 + 10 * 3
  assert len(printed_runs["renda_resnet50_iterative.flags"]) == 3 * 10 * 3
  for s in ("a", "b"):
    structured = printed_runs[f"renda_resnet34_structured_{s}.flags"]
    assert {h.level for h in structured} == {1, 2, 3, 4, 5} and len(structured) == 615
