"""Instability analysis: interpolation, barriers, BatchNorm re-estimation, the two copies."""

import glob
import os

import numpy as np
import pandas as pd
import pytest
import tensorflow as tf

import tf_keras as keras
import tfrewind
from tfrewind import connectivity

from clitools import QUICK, SMALL, cli
from helpers import compile_sgd, dataset, tiny_resnet


def _pruned_pair():
  """Two differently trained copies of one network under one mask, and a third to fill."""
  models = []
  for seed in (1, 2, 3):
    keras.utils.set_random_seed(seed)
    models.append(compile_sgd(tfrewind.prunable(tiny_resnet()), metrics=["accuracy"]))
  a, b, into = models
  a.fit(dataset(seed=1), epochs=1, steps_per_epoch=4, verbose=0)
  tfrewind.prune(a, 0.5)
  masks = tfrewind.get_masks(a)
  for model in (b, into):
    from tfrewind.pruning import sparsity  # pylint: disable=g-import-not-at-top
    sparsity.set_masks(model, list(masks.values()))
  b.fit(dataset(seed=2), epochs=1, steps_per_epoch=4, verbose=0)
  return a, b, into, masks


def _bits(model):
  snap = tfrewind.snapshot(model)
  return {n: w.tobytes() for n, w in zip(snap.weight_names, snap.weights)}


def test_interpolation_at_0_and_1_is_a_and_b_bitwise_and_masks_hold_along_the_path():
  a, b, into, masks = _pruned_pair()
  assert _bits(a) != _bits(b)
  assert _bits(connectivity.interpolate(a, b, 0.0, into=into)) == _bits(a)
  assert _bits(connectivity.interpolate(a, b, 1.0, into=into)) == _bits(b)
  weights = {v.name: v for v in into.weights}
  for alpha in connectivity.alphas(11):
    connectivity.interpolate(a, b, alpha, into=into)
    assert {n: m.tobytes() for n, m in tfrewind.get_masks(into).items()} == {
        n: m.tobytes() for n, m in masks.items()}
    for name, mask in masks.items():
      kernel = weights[name].numpy()
      assert (kernel[mask == 0] == 0).all() and not np.signbit(kernel[mask == 0]).any()
  half = connectivity.interpolate(a, b, 0.5, into=into)
  name = next(iter(masks))
  wa, wb = ({v.name: v.numpy() for v in m.weights}[name] for m in (a, b))
  np.testing.assert_array_equal({v.name: v.numpy() for v in half.weights}[name],
                                (wa.astype(np.float64) + 0.5 * (wb.astype(np.float64) - wa))
                                .astype(np.float32))


def test_the_barrier_of_a_model_with_itself_is_zero():
  a, _, into, _ = _pruned_pair()
  data = dataset(n=32, seed=5).take(4)
  accuracies = []
  for alpha in connectivity.alphas(11):
    connectivity.interpolate(a, a, alpha, into=into)
    assert _bits(into) == _bits(a)
    accuracies.append(into.evaluate(data, verbose=0, return_dict=True)["accuracy"])
  assert connectivity.barrier(accuracies) == 0.0


def test_barrier_is_the_dip_below_the_mean_of_the_ends():
  assert connectivity.barrier([0.9, 0.8, 0.7, 0.92]) == pytest.approx(100 * (0.91 - 0.7))
  # an end below the other: the barrier is half their gap, never negative
  assert connectivity.barrier([0.9, 0.95, 0.92]) == pytest.approx(1.0)
  assert connectivity.barrier([0.9, 0.95, 0.9]) == 0.0  # the ends are the minimum
  with pytest.raises(ValueError, match="at least 2 points"):
    connectivity.alphas(1)


def test_batchnorm_reestimation_changes_only_the_moving_statistics_to_the_batch_average():
  a, _, _, _ = _pruned_pair()
  before = _bits(a)
  batches = [x for x, _ in dataset(n=32, batch=8, seed=9).take(3)]
  connectivity.reestimate_batchnorm(a, batches)
  after = _bits(a)
  moving = {n for n in before if "moving_" in n}
  assert moving and all(before[n] != after[n] for n in moving)
  assert {n: v for n, v in before.items() if n not in moving} == {
      n: v for n, v in after.items() if n not in moving}
  assert a.get_layer("stem_bn").momentum == 0.99  # restored
  # A BatchNorm on the input: its moving mean is the plain mean of the batch means.
  inputs = keras.Input((8, 8, 3))
  bn_only = keras.Model(inputs, keras.layers.BatchNormalization(name="bn")(inputs))
  connectivity.reestimate_batchnorm(bn_only, batches)
  expected = np.mean([tf.reduce_mean(x, axis=(0, 1, 2)).numpy() for x in batches], axis=0)
  np.testing.assert_allclose(bn_only.get_layer("bn").moving_mean.numpy(), expected, rtol=1e-6)


@pytest.mark.slow
def test_stability_command_writes_barriers_that_recompute_from_the_path(tmp_path, capsys):
  from tfrewind import experiment, hparams, stability, store  # pylint: disable=g-import-not-at-top
  root, out = str(tmp_path / "runs"), str(tmp_path / "runs" / "stability")
  os.makedirs(root)  # an explicit --root must exist (a typo would retrain every copy)
  status, stdout, err = cli(["stability", f"--flagfile={QUICK}", f"--root={root}", *SMALL,
                             "--rewind_steps=10it", "--densities=1.0,0.5", "--alphas=11",
                             "--bn_batches=2", f"--out={out}"], capsys)
  assert status == 0, err
  assert "earliest stable rewind step (every seed): density 1:" in stdout
  table = pd.read_csv(os.path.join(out, "stability.csv"))
  barriers = pd.read_csv(os.path.join(out, "barriers.csv"))
  assert len(table) == 2 * 11 and len(barriers) == 2
  for (d, k, s), g in table.groupby(["density", "rewind_step", "seed"]):
    row = barriers[(barriers.density == d) & (barriers.rewind_step == k) & (barriers.seed == s)]
    assert row.barrier_pt.item() == connectivity.barrier(g.sort_values("alpha").test_accuracy)
    assert bool(row.stable.item()) == (row.barrier_pt.item() < 2.0)
  assert {os.path.basename(p) for p in glob.glob(os.path.join(out, "*.png"))} == {
      "accuracy_d1.png", "accuracy_d0.5.png", "barriers.png"}
  # Copies A and B: the same mask and step-K weights (one snapshot of the dense run), not the
  # same data order.
  base = hparams.HParams.from_json(store.read_json(glob.glob(os.path.join(
      root, "dense_*", "hparams.json"))[0])["hparams"])
  hp_a, hp_b = stability.copies(base, 0.5, 10)
  a, b = store.branch_paths(root, hp_a), store.branch_paths(root, hp_b)
  assert a.finished() and b.finished() and a.dir != b.dir
  assert store.read_json(b.hparams)["hparams"]["data_order"] == 1
  assert store.read_json(a.hparams)["dense_run"] == store.read_json(b.hparams)["dense_run"]
  assert hp_a.plan().weights_from == hp_b.plan().weights_from == 10
  assert len(glob.glob(os.path.join(root, "dense_*", "snapshots", "step_10.npz"))) == 1
  from tfrewind import training  # pylint: disable=g-import-not-at-top
  ma, mb = training.load_final(hp_a, a), training.load_final(hp_b, b)
  assert {n: m.tobytes() for n, m in tfrewind.get_masks(ma).items()} == {
      n: m.tobytes() for n, m in tfrewind.get_masks(mb).items()}
  runner = experiment.Runner(experiment.Env(root=root, verbose=0))
  xa = next(iter(runner.data(hp_a, 1, 0).train))[0].numpy()
  xb = next(iter(runner.data(hp_b, 1, 0).train))[0].numpy()
  assert xa.tobytes() != xb.tobytes()
  # The report picks the stability folder up.
  report = str(tmp_path / "report")
  assert cli(["report", f"--root={root}", f"--out={report}"], capsys)[0] == 0
  md = open(os.path.join(report, "report.md")).read()
  assert "## Instability analysis (stability)" in md and "stability_barriers.png" in md
  assert os.path.exists(os.path.join(report, "stability_barriers.png"))
