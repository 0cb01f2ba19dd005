"""Extending tfrewind from a user's module (tests/plugin_example.py, outside the package): one
register_* call per entry plus --import, and the entry works in flags, run identity, training,
hparams.json and the report."""

import glob
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from clitools import QUICK, SMALL, cli, results


@pytest.mark.slow
def test_a_users_criterion_and_method_run_through_run_and_report(tmp_path, capsys):
  root, out = str(tmp_path / "runs"), str(tmp_path / "report")
  args = ["run", "--import=plugin_example", f"--flagfile={QUICK}", f"--root={root}", *SMALL,
          "--methods=half_lr_rewind", "--criterion=smallest"]
  status, _, err = cli(args, capsys)
  assert status == 0, err
  (name, result), = [(n, r) for n, r in results(root).items() if n.startswith("prune_")]
  assert "_half_lr_rewind_" in name and abs(result["density"] - 0.2) < 1e-3
  assert result["devices"] == ["CPU"]  # what it trained on, in every result.json
  meta = json.load(open(os.path.join(root, name, "hparams.json")))
  assert meta["imports"] == ["plugin_example"]
  assert meta["hparams"]["criterion"] == "smallest"
  assert meta["steps"] == 20  # the plan: the second half of the 40-step cycle
  # Without --import (a fresh process: this one has imported it), the name is unknown.
  fresh = subprocess.run([sys.executable, "-m", "tfrewind", "sweep", f"--flagfile={QUICK}",
                          "--methods=half_lr_rewind", "--print"], capture_output=True,
                         text=True, check=False, cwd=tmp_path)
  assert fresh.returncode == 2 and "'half_lr_rewind': not a method" in fresh.stderr
  status, _, err = cli(["report", "--import=plugin_example", f"--root={root}", f"--out={out}"],
                       capsys)
  assert status == 0, err
  report = open(os.path.join(out, "report.md"), encoding="utf-8").read()
  assert "half_lr_rewind_smallest" in report and glob.glob(os.path.join(out, "*.png"))
  from tfrewind.report import figures  # pylint: disable=g-import-not-at-top
  assert figures.style("half_lr_rewind_smallest") == ("half LR rewinding (smallest |w|)",
                                                     "tab:cyan", True)


def test_registered_entries_prune_and_name_runs_like_built_in_ones(capsys):
  import plugin_example  # noqa: F401  pylint: disable=g-import-not-at-top,unused-import
  import tfrewind  # pylint: disable=g-import-not-at-top
  from tfrewind import errors, hparams, registries  # pylint: disable=g-import-not-at-top
  from helpers import tiny_resnet  # pylint: disable=g-import-not-at-top
  from tfrewind.pruning import sparsity  # pylint: disable=g-import-not-at-top
  model = tfrewind.prunable(tiny_resnet())
  kernels = [w.numpy() for w, _, _ in sparsity._pruning_vars(model)]  # pylint: disable=protected-access
  tfrewind.prune(model, 0.3, tfrewind.PruneSpec(criterion="smallest"))
  masks = list(tfrewind.get_masks(model).values())
  kept = np.concatenate([np.abs(k)[m > 0] for k, m in zip(kernels, masks)])
  pruned = np.concatenate([np.abs(k)[m == 0] for k, m in zip(kernels, masks)])
  assert kept.max() <= pruned.min()  # the user's rule, under the global threshold
  model = tfrewind.prunable(tiny_resnet())
  tfrewind.prune(model, 0.5, structure="first_half")
  for m in tfrewind.get_masks(model).values():
    flat = m.reshape(-1)
    assert flat[:int(np.ceil(0.5 * flat.size))].all() and not flat[int(np.ceil(0.5 * flat.size)):].any()
  hp = hparams.HParams(method="half_lr_rewind", criterion="smallest", density=0.3)
  hp.validate()
  assert hparams.run_key(hp, 1) != hparams.run_key(
      hparams.HParams(method="half_lr_rewind", density=0.3), 1)
  with pytest.raises(errors.ConfigError, match="registered already"):
    registries.register_criterion("smallest", lambda w, rng: w)
  with pytest.raises(errors.ConfigError, match="letters, digits"):
    tfrewind.register_method("../escape", lambda *a: None)
  status, out, _ = cli(["sweep", "--import=plugin_example", f"--flagfile={QUICK}",
                        "--structure=first_half", "--methods=half_lr_rewind", "--print"], capsys)
  assert status == 0 and "--structure=first_half" in out and "--import=plugin_example" in out
