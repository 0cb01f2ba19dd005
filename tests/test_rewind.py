"""RewindCallback, snapshots and the three retraining methods: exact semantics."""

import numpy as np
import pytest
import tensorflow as tf

import tf_keras as keras
import tfrewind
from tfrewind import rewind as rewind_lib
from tfrewind import snapshots
from tfrewind.pruning import masks as masks_lib
from tfrewind.pruning import sparsity

from helpers import Probe, compile_sgd, dataset, tiny_resnet

N, K, SPE = 20, 4, 4  # cycle steps, rewind step, steps per epoch
LR = tfrewind.StepDecay(0.1, [10, 15], 0.1)


def _run(method, schedule, probe_steps=(), with_before=False, **kwargs):
  """Trains with RewindCallback; Probes after it (and, with_before, one before it too)."""
  model = compile_sgd(tfrewind.prunable(tiny_resnet(),
                                        structure=kwargs.get("structure", "unstructured")))
  cb = tfrewind.RewindCallback(method=method, schedule=schedule, cycle_steps=N, lr=LR,
                               rewind_step=K, verbose=0, **kwargs)
  probe, before = Probe(probe_steps), Probe(probe_steps)
  model.fit(dataset(), epochs=cb.total_steps // SPE, steps_per_epoch=SPE, verbose=0,
            callbacks=[before, cb, probe] if with_before else [cb, probe])
  return (model, cb, probe, before) if with_before else (model, cb, probe)


def _expected_lrs(plan, rounds):
  trace = [LR.value(s) for s in range(N)]
  for _ in range(rounds):
    if plan.lr_from is None:
      trace += [float(np.float32(1e-3))] * plan.steps
    else:
      trace += [LR.value(plan.lr_from + s) for s in range(plan.steps)]
  return [float(np.float32(v)) for v in trace]


@pytest.mark.parametrize("method", ["finetune", "weight_rewind", "lr_rewind"])
def test_lr_trace_of_every_step_is_the_replayed_schedule(method):
  schedule = tfrewind.Iterative(rate=0.5, rounds=2)
  model, cb, probe = _run(method, schedule)
  plan = tfrewind.retrain_plan(method, N, K)
  assert probe.lrs == _expected_lrs(plan, 2)
  assert int(model.optimizer.iterations.numpy()) == N + 2 * plan.steps == cb.total_steps
  assert [e["step"] for e in cb.events if e["event"] == "prune"] == [N, N + plan.steps]


def test_weight_rewinding_restores_step_k_bitwise_under_masks_from_trained_weights():
  schedule = tfrewind.Iterative(rate=0.5, rounds=2)
  plan = tfrewind.retrain_plan("weight_rewind", N, K)
  r2 = N + plan.steps
  model, cb, probe = _run("weight_rewind", schedule, probe_steps=(K, r2))
  at_k = probe.at[K]
  snap_k = cb._snapshot  # pylint: disable=protected-access
  assert snap_k.step == K
  # After round 2's prune and rewind (probe runs after the callback at step r2):
  after = probe.at[r2]
  masks = after["masks"]
  for name, m in masks.items():
    kernel = name.replace(":0", "")
    w_now = after["weights"][f"{kernel}:0"]
    w_k = at_k["weights"][f"{kernel}:0"]
    assert w_now[m > 0].tobytes() == w_k[m > 0].tobytes(), name
    assert (w_now[m == 0] == 0).all() and not np.signbit(w_now[m == 0]).any()
  for name, value in at_k["weights"].items():
    if "moving_" in name or "gamma" in name or "beta" in name:
      assert after["weights"][name].tobytes() == value.tobytes(), name
  # Momentum of kept weights is step K's, of pruned weights 0.
  for name, slot in after["slots"].items():
    if "/m/" in name and "kernel" in name:
      layer = name.split("/m/")[1].split("/")[0]
      m = masks[f"{layer}/kernel:0"]
      assert slot[m > 0].tobytes() == at_k["slots"][name][m > 0].tobytes()
      assert (slot[m == 0] == 0).all()


def test_channel_weight_rewinding_restores_batchnorm_of_kept_channels_and_silences_the_rest():
  schedule = tfrewind.Iterative(rate=0.5, rounds=2)
  r2 = N + tfrewind.retrain_plan("weight_rewind", N, K).steps
  model, _, probe = _run("weight_rewind", schedule, probe_steps=(K, r2), structure="channel",
                         scope="layerwise")
  at_k, after = probe.at[K]["weights"], probe.at[r2]["weights"]
  for norm, (wrapper,) in sparsity.channel_norms(model):
    m = probe.at[r2]["masks"][f"{wrapper.layer.name}/kernel:0"]
    alive = m.reshape(-1, m.shape[-1]).max(0) > 0
    assert alive.sum() == m.shape[-1] // 4  # two rounds of 0.5, per layer
    for v in (norm.gamma, norm.beta):
      now, then = after[v.name], at_k[v.name]
      assert now[alive].tobytes() == then[alive].tobytes(), v.name
      assert now[~alive].tobytes() == np.zeros((~alive).sum(), np.float32).tobytes(), v.name
    for v in (norm.moving_mean, norm.moving_variance):
      assert after[v.name].tobytes() == at_k[v.name].tobytes()


def test_channel_structure_needs_a_channel_prunable_model():
  model = compile_sgd(tfrewind.prunable(tiny_resnet()))
  cb = tfrewind.RewindCallback(method="lr_rewind", schedule=tfrewind.OneShot(0.5), cycle_steps=N,
                               lr=LR, structure="channel", verbose=0)
  with pytest.raises(ValueError, match="structure='channel'"):
    model.fit(dataset(), epochs=1, steps_per_epoch=2, verbose=0, callbacks=[cb])


def test_masks_come_from_trained_weights_and_only_shrink():
  schedule = tfrewind.Iterative(rate=0.6, rounds=3)
  plan = tfrewind.retrain_plan("weight_rewind", N, K)
  steps = [N + r * plan.steps for r in range(3)]
  # The probe placed BEFORE the callback sees the trained weights that the prune reads.
  model, cb, after, before = _run("weight_rewind", schedule, steps, with_before=True)
  previous = None
  total = sum(m.size for m in tfrewind.get_masks(model).values())
  for r, step in enumerate(steps, start=1):
    trained = [before.at[step]["weights"][n] for n in after.at[step]["masks"]]
    old = None if previous is None else list(previous.values())
    expected = masks_lib.compute_masks(trained, 0.6 ** r, old)
    got = after.at[step]["masks"]
    assert all((e == g).all() for e, g in zip(expected, got.values()))
    assert sum(int(g.sum()) for g in got.values()) == masks_lib.kept_count(0.6 ** r, total)
    if previous is not None:
      assert all(((got[n] > 0) <= (previous[n] > 0)).all() for n in got)
    previous = got


def test_lr_rewinding_keeps_trained_weights_and_batchnorm():
  _, _, after, before = _run("lr_rewind", tfrewind.OneShot(0.3), (N,), with_before=True)
  masks = after.at[N]["masks"]
  for name, value in before.at[N]["weights"].items():
    if "mask" in name or "threshold" in name:
      continue
    kernel_mask = masks.get(name)
    now = after.at[N]["weights"][name]
    if kernel_mask is None:
      assert now.tobytes() == value.tobytes(), name
    else:
      assert now.tobytes() == masks_lib.apply(value, kernel_mask).tobytes(), name


def test_custom_general_form_between_weight_and_lr_rewinding():
  model, cb, probe = _run("custom", tfrewind.OneShot(0.5), weights_from=K, lr_from=0,
                          retrain_steps=12)
  assert cb.plan == tfrewind.Retrain(K, 0, 12)
  assert probe.lrs[N:] == [float(np.float32(LR.value(s))) for s in range(12)]
  assert tfrewind.density(model) == pytest.approx(0.5, abs=1e-3)


def test_reset_momentum_zeroes_optimizer_state_at_prune():
  model, cb, probe = _run("lr_rewind", tfrewind.OneShot(0.5), probe_steps=(N,),
                          reset_momentum=True)
  slots = [v for n, v in probe.at[N]["slots"].items() if "/m/" in n]
  assert slots and all((s == 0).all() for s in slots)


def test_start_from_trained_dense_model_and_saved_snapshot(tmp_path):
  model = compile_sgd(tfrewind.prunable(tiny_resnet()))
  model.optimizer.learning_rate = LR
  dense = rewind_lib.SnapshotCallback(K, str(tmp_path / "k.npz"))
  model.fit(dataset(), epochs=N // SPE, steps_per_epoch=SPE, verbose=0, callbacks=[dense])
  assert int(model.optimizer.iterations.numpy()) == N and tfrewind.density(model) == 1.0
  snap = snapshots.Snapshot.load(str(tmp_path / "k.npz"))
  assert snap.step == K
  cb = tfrewind.RewindCallback(method="weight_rewind", schedule=tfrewind.OneShot(0.4),
                               cycle_steps=N, lr=LR, rewind_step=K, dense_trained=True,
                               snapshot=str(tmp_path / "k.npz"), verbose=0)
  probe = Probe([N])
  model.fit(dataset(), epochs=(N - K) // SPE, steps_per_epoch=SPE, verbose=0,
            callbacks=[cb, probe])
  assert int(model.optimizer.iterations.numpy()) == 2 * N - K
  masks = probe.at[N]["masks"]
  for name, m in masks.items():
    idx = [v.name for v in snapshots.restorable_weights(model)].index(name)  # pylint: disable=protected-access
    assert probe.at[N]["weights"][name][m > 0].tobytes() == snap.weights[idx][m > 0].tobytes()
  assert probe.lrs == [float(np.float32(LR.value(K + s))) for s in range(N - K)]


def test_snapshot_save_load_round_trip_is_exact(tmp_path):
  model = compile_sgd(tfrewind.prunable(tiny_resnet()))
  model.fit(dataset(), epochs=1, steps_per_epoch=3, verbose=0)
  snap = tfrewind.snapshot(model)
  snap.save(str(tmp_path / "s.npz"))
  again = snapshots.Snapshot.load(str(tmp_path / "s.npz"))
  assert again.step == 3 and len(again.weights) == len(snap.weights) and again.optimizer
  assert all(a.tobytes() == b.tobytes() for a, b in zip(snap.weights + snap.optimizer,
                                                        again.weights + again.optimizer))
  model.fit(dataset(), epochs=1, steps_per_epoch=2, verbose=0)
  tfrewind.rewind_weights(model, again)
  now = tfrewind.snapshot(model)
  assert all(a.tobytes() == b.tobytes() for a, b in zip(now.weights, snap.weights))
  with pytest.raises(ValueError, match="another network"):
    other = compile_sgd(tfrewind.prunable(tiny_resnet(num_classes=3)))
    tfrewind.rewind_weights(other, snap)


@pytest.mark.parametrize("kwargs,match", [
    (dict(method="prune_harder"), "unknown method"),
    (dict(schedule=tfrewind.OneShot(0.5), cycle_steps=0), "cycle_steps"),
    (dict(rewind_step=N + 1), "outside the cycle"),
    (dict(method="custom"), "retrain_steps"),
    (dict(schedule=0.5), "schedule"),
    (dict(scope="nearby"), "scope"),
    (dict(finetune_lr=0.0), "finetune_lr"),
])
def test_bad_arguments_raise_value_error(kwargs, match):
  args = dict(method="weight_rewind", schedule=tfrewind.OneShot(0.5), cycle_steps=N, rewind_step=K)
  args.update(kwargs)
  with pytest.raises(ValueError, match=match):
    tfrewind.RewindCallback(**args)


def test_schedule_longer_than_fit_raises_value_error():
  model = compile_sgd(tfrewind.prunable(tiny_resnet()))
  cb = tfrewind.RewindCallback(method="lr_rewind", schedule=tfrewind.Iterative(rate=0.5, rounds=3),
                               cycle_steps=N, lr=LR, verbose=0)
  with pytest.raises(ValueError, match="needs 80"):
    model.fit(dataset(), epochs=3, steps_per_epoch=SPE, verbose=0, callbacks=[cb])


def test_unwrapped_model_raises_value_error():
  model = compile_sgd(tiny_resnet())
  cb = tfrewind.RewindCallback(method="lr_rewind", schedule=tfrewind.OneShot(0.5), cycle_steps=N)
  with pytest.raises(ValueError, match="prunable"):
    model.fit(dataset(), epochs=1, steps_per_epoch=SPE, verbose=0, callbacks=[cb])


def test_longer_fit_stops_when_the_last_round_ends():
  model = compile_sgd(tfrewind.prunable(tiny_resnet()))
  cb = tfrewind.RewindCallback(method="finetune", schedule=tfrewind.OneShot(0.5), cycle_steps=N,
                               retrain_steps=8, lr=LR, verbose=0)
  model.fit(dataset(), epochs=50, steps_per_epoch=SPE, verbose=0, callbacks=[cb])
  assert int(model.optimizer.iterations.numpy()) == N + 8


def test_steps_per_execution_runs_the_same_lr_trace():
  model = tfrewind.prunable(tiny_resnet())
  model.compile(keras.optimizers.SGD(momentum=0.9),
                keras.losses.SparseCategoricalCrossentropy(from_logits=True), steps_per_execution=2)
  cb = tfrewind.RewindCallback(method="lr_rewind", schedule=tfrewind.OneShot(0.5), cycle_steps=N,
                               lr=LR, verbose=0)
  model.fit(dataset(), epochs=cb.total_steps // SPE, steps_per_epoch=SPE, verbose=0, callbacks=[cb])
  assert int(model.optimizer.iterations.numpy()) == 2 * N
  assert cb.lr_schedule.value(N + 12) == LR.value(12)
  assert tfrewind.density(model) == pytest.approx(0.5, abs=1e-3)


def test_mirrored_strategy_on_two_logical_cpus_gives_the_same_masks():
  devices = [d.name for d in tf.config.list_logical_devices("CPU")]
  assert len(devices) >= 2

  def run(strategy):
    keras.utils.set_random_seed(0)
    with strategy.scope():
      model = compile_sgd(tfrewind.prunable(tiny_resnet(batchnorm=False)))
    cb = tfrewind.RewindCallback(method="weight_rewind", schedule=tfrewind.Iterative(rate=0.5,
                                                                                     rounds=2),
                                 cycle_steps=N, lr=LR, rewind_step=K, verbose=0)
    model.fit(dataset(batch=8), epochs=cb.total_steps // SPE, steps_per_epoch=SPE, verbose=0,
              callbacks=[cb])
    return model, tfrewind.get_masks(model)

  one, masks_one = run(tf.distribute.OneDeviceStrategy(devices[0]))
  two, masks_two = run(tf.distribute.MirroredStrategy(devices[:2]))
  assert two.distribute_strategy.num_replicas_in_sync == 2
  assert masks_one.keys() == masks_two.keys()
  assert [int((masks_one[k] != masks_two[k]).sum()) for k in masks_one] == [0] * len(masks_one)
  for a, b in zip(one.weights, two.weights):  # the same training, up to summation order
    np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-4, atol=1e-5)
  assert all((w.numpy()[m.numpy() == 0] == 0).all() for w, m, _ in sparsity._pruning_vars(two))  # pylint: disable=protected-access


def test_reinit_control_redraws_weights_keeps_the_mask_and_replays_the_schedule():
  _, cb, after, before = _run("reinit", tfrewind.OneShot(0.3), (N,), with_before=True)
  assert cb.plan == tfrewind.Retrain(None, 0, N, reinit=True)
  masks = after.at[N]["masks"]
  trained = [before.at[N]["weights"][n] for n in masks]
  assert all((m == e).all() for m, e in zip(masks.values(), masks_lib.compute_masks(trained, 0.3)))
  for name, m in masks.items():
    w = after.at[N]["weights"][name]
    assert (w[m == 0] == 0).all()
    assert not np.array_equal(w[m > 0], before.at[N]["weights"][name][m > 0])
  assert after.at[N]["weights"]["stem_bn/moving_mean:0"].tobytes() == np.zeros(4, np.float32).tobytes()
  assert all((v == 0).all() for n, v in after.at[N]["slots"].items() if "/m/" in n)
  assert after.lrs[N:] == [float(np.float32(LR.value(s))) for s in range(N)]


def test_reinit_seeds_are_the_same_from_one_iterative_callback_and_from_one_per_round(
    monkeypatch):
  """The command line runs round r of an iterative schedule as a one-round callback
  (first_round=r); the library as one Iterative callback: both re-draw with the same seeds."""
  from tfrewind import snapshots  # pylint: disable=g-import-not-at-top
  seeds = []
  monkeypatch.setattr(snapshots, "reinitialize", lambda model, seed: seeds.append(seed))
  _run("reinit", tfrewind.Iterative(rate=0.5, rounds=2), seed=3)
  library, seeds[:] = list(seeds), []
  model = compile_sgd(tfrewind.prunable(tiny_resnet()))
  for r in (1, 2):
    cb = tfrewind.RewindCallback(method="reinit", schedule=tfrewind.OneShot(0.5 ** r),
                                 cycle_steps=N, lr=LR, verbose=0, seed=3, first_round=r,
                                 dense_trained=r > 1, start_step=N * r)
    model.fit(dataset(), epochs=cb.total_steps // SPE, steps_per_epoch=SPE, verbose=0,
              callbacks=[cb])
  assert library == seeds == [3001, 3002]
