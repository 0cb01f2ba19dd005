"""Run identity: one function names every run; these literal hashes change only knowingly.

If a change of tfrewind moves one of these, old run folders are no longer found: say so in
the README's migration notes, then update the literal.
"""

import dataclasses
import os

import pytest

from tfrewind import hparams
from tfrewind import store

QUICK = dict(dataset="synthetic", model="resnet8", train_steps="600it", epoch_steps="100it",
             lr_boundaries=("300it", "450it"), rewind_step="60it", density=0.2)


@pytest.mark.parametrize("hp,round_,dense,branch", [
    (hparams.HParams(), 1, "dense_resnet20_cifar10_s1_44136fa355",
     "prune_resnet20_cifar10_lr_rewind_os_d0.2_s1_f54a90a8f8"),
    (hparams.HParams(method="weight_rewind", **QUICK), 1, "dense_resnet8_synthetic_s1_2c691c5351",
     "prune_resnet8_synthetic_weight_rewind_os_d0.2_s1_cd2206c4e5"),
    (hparams.HParams(method="finetune", **QUICK), 1, "dense_resnet8_synthetic_s1_2c691c5351",
     "prune_resnet8_synthetic_finetune_os_d0.2_s1_4f995101bc"),
    (hparams.HParams(model="wrn16_8", schedule="iterative", rounds=20, method="weight_rewind",
                     seed=2), 3, "dense_wrn16_8_cifar10_s2_0aba8cb9ad",
     "prune_wrn16_8_cifar10_weight_rewind_it3_d0.512_s2_10d4959d6a"),
])
def test_reference_run_folders_are_pinned(hp, round_, dense, branch):
  assert os.path.basename(store.dense_paths("R", hp).dir) == dense
  assert os.path.basename(store.branch_paths("R", hp, round_).dir) == branch


@pytest.mark.parametrize("method", ["finetune", "lr_rewind", "reinit"])
def test_a_rewind_step_the_method_does_not_read_does_not_split_its_runs(method):
  a = hparams.HParams(method=method)
  b = hparams.HParams(method=method, rewind_step="500it")
  assert hparams.run_key(a, 1) == hparams.run_key(b, 1)


def test_settings_a_method_reads_do_split_its_runs():
  wr = hparams.HParams(method="weight_rewind")
  assert hparams.run_key(wr, 1) != hparams.run_key(
      hparams.HParams(method="weight_rewind", rewind_step="500it"), 1)
  ft = hparams.HParams(method="finetune")
  assert hparams.run_key(ft, 1) != hparams.run_key(
      hparams.HParams(method="finetune", finetune_lr=0.01), 1)
  # fine-tuning's LR is not lr_rewind's business
  assert hparams.run_key(hparams.HParams(), 1) == hparams.run_key(
      hparams.HParams(finetune_lr=0.01), 1)


def test_dense_identity_ignores_every_branch_setting_and_rounds_differ():
  a, b = hparams.HParams(), hparams.HParams(method="finetune", density=0.1, scope="layerwise")
  assert hparams.run_key(a, 0) == hparams.run_key(b, 0)
  it = hparams.HParams(schedule="iterative", rounds=3)
  assert len({hparams.run_key(it, r) for r in (0, 1, 2, 3)}) == 4
  # later rounds name the same folder whatever the total number of rounds
  assert hparams.run_key(it, 2) == hparams.run_key(hparams.HParams(schedule="iterative",
                                                                   rounds=5), 2)


def test_stored_hparams_with_an_unknown_key_are_an_error():
  stored = hparams.HParams().to_json()
  assert hparams.HParams.from_json(stored) == hparams.HParams()
  with pytest.raises(ValueError, match=r"unknown key\(s\) \[.warmup_epochs.\]"):
    hparams.HParams.from_json({**stored, "warmup_epochs": 5})


def test_structured_levels_name_runs_and_densities_do_not():
  base = dict(model="resnet56", structure="structured_a", method="finetune")
  a, b = hparams.HParams(level=2, **base), hparams.HParams(level=2, density=0.5, **base)
  assert hparams.run_key(a, 1) == hparams.run_key(b, 1)  # a density means nothing there
  assert hparams.run_key(a, 1) != hparams.run_key(hparams.HParams(level=3, **base), 1)
  assert "_os_structured_a_l2_s1_" in store.branch_paths("R", a).dir
  # a level means nothing to other structures
  assert hparams.run_key(hparams.HParams(), 1) == hparams.run_key(hparams.HParams(level=4), 1)


def test_channel_runs_name_what_their_density_counts():
  weights = hparams.HParams(structure="channel")
  channels = hparams.HParams(structure="channel", channel_count="channels")
  assert hparams.run_key(weights, 1) != hparams.run_key(channels, 1)
  # the identity always carries it: a channel run written when densities counted channels
  # (before channel_count existed) is never taken for a weight-counted one
  assert hparams.identity(weights, 1)["channel_count"] == "weights"
  assert "channel_count" not in hparams.identity(hparams.HParams(), 1)
  assert hparams.run_key(hparams.HParams(), 1) == hparams.run_key(
      hparams.HParams(classifier="rows"), 1)


def test_restore_optimizer_splits_runs_only_where_momentum_is_kept():
  from tfrewind import hparams  # pylint: disable=g-import-not-at-top
  base = hparams.HParams(method="weight_rewind", density=0.1)
  key = lambda **kw: hparams.run_key(dataclasses.replace(base, **kw), 1)  # noqa: E731
  # reset_momentum (the default) zeroes the optimizer state at the prune: step K's is unused.
  assert key(restore_optimizer=False) == key(restore_optimizer=True)
  assert key(reset_momentum=False, restore_optimizer=False) != key(reset_momentum=False)
