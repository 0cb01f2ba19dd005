"""The baselines: gradual magnitude pruning, SNIP / GraSP / SynFlow, the shuffle controls and
layers kept dense. Exact where the quantity is exact (counts, masks, SNIP), against independent
computations (TF-MOT's own PolynomialDecay, tf.GradientTape, NumPy)."""

import dataclasses

import numpy as np
import pytest
import tensorflow as tf
from tensorflow_model_optimization.python.core.sparsity.keras import pruning_schedule

import tf_keras as keras
import tfrewind
from tfrewind import registries
from tfrewind.errors import ConfigError
from tfrewind.pruning import masks as masks_lib
from tfrewind.pruning import saliency
from tfrewind.pruning import sparsity
from tfrewind.pruning.spec import PruneSpec

from helpers import compile_sgd, dataset, tiny_resnet


def _kernels(model):
  return [w.numpy() for w, _, _ in sparsity._pruning_vars(model)]  # pylint: disable=protected-access


def _mask_list(model):
  return list(sparsity.get_masks(model).values())


class _Counts(keras.callbacks.Callback):
  """The masks after every optimizer step (placed after GradualCallback)."""

  def __init__(self):
    super().__init__()
    self.kept, self.masks = [], []

  def on_train_batch_end(self, batch, logs=None):
    masks = _mask_list(self.model)
    self.kept.append(int(sum(m.sum() for m in masks)))
    self.masks.append(masks)


def test_gradual_density_after_every_step_is_tf_mots_polynomial_decay_as_counts():
  keras.utils.set_random_seed(0)
  model = tfrewind.prunable(tiny_resnet())
  compile_sgd(model)
  model.optimizer.learning_rate = 0.05
  total = sum(m.size for m in _mask_list(model))
  begin, end, every, steps = 6, 36, 6, 44
  counts = _Counts()
  model.fit(dataset(), epochs=4, steps_per_epoch=steps // 4, verbose=0,
            callbacks=[tfrewind.GradualCallback(0.2, begin, end, every, power=3), counts])
  # TF-MOT's own schedule: the update at optimizer step t masks with its pruning_step t + 1
  # (its wrapper increments the step in the forward pass, then updates the mask), so the
  # density in force after that update is that of the last prune step <= t + 1.
  schedule = pruning_schedule.PolynomialDecay(0.0, 0.8, begin, end, power=3, frequency=every)
  expected, density = [], 1.0
  for t in range(steps):
    should, s = schedule(tf.constant(t + 1, tf.int64))
    if bool(should):
      density = 1.0 - float(s.numpy())
    expected.append(masks_lib.kept_count(density, total))
  assert counts.kept == expected
  assert expected[end] == masks_lib.kept_count(1.0 - float(np.float32(0.8)), total)
  assert len(set(expected)) == (end - begin) // every + 1  # a new count at every prune
  for before, after in zip(counts.masks, counts.masks[1:]):  # masks only shrink
    assert all(((a > 0) <= (b > 0)).all() for a, b in zip(after, before))


def _two_layer_net():
  inputs = keras.Input((6, 6, 2))
  x = keras.layers.Flatten()(keras.layers.Conv2D(5, 3, name="conv")(inputs))
  return keras.Model(inputs, keras.layers.Dense(7, name="dense")(x))


class _KeptAfterUpdate(keras.callbacks.Callback):
  """Per-kernel kept counts after every update, read by `count(model)`."""

  def __init__(self, count):
    super().__init__()
    self.count, self.kept, self.steps = count, [], []

  def on_train_batch_end(self, batch, logs=None):
    self.kept.append(self.count(self.model))
    wrapped = [l for l in self.model.layers if getattr(l, "pruning_vars", None)]
    self.steps.append(int(wrapped[0].pruning_step.numpy()))


@pytest.mark.parametrize("scope", ["layerwise", "global"])
def test_gradual_prunes_at_the_update_tf_mots_own_wrapper_does(scope):
  """TF-MOT's prune_low_magnitude + UpdatePruningStep in fit, beside GradualCallback on the same
  weights (LR 0, so the masks depend on the schedule alone): equal kept counts after every
  update. TF-MOT prunes layer by layer; under global scope the total follows the same schedule
  at the same updates, counted by tfrewind's global rule."""
  import tensorflow_model_optimization as tfmot  # pylint: disable=g-import-not-at-top
  keras.utils.set_random_seed(0)
  base = _two_layer_net()
  data = dataset(n=8, batch=4, shape=(6, 6, 2), classes=7)
  schedule = pruning_schedule.PolynomialDecay(0.0, 0.8, begin_step=3, end_step=9, power=3,
                                              frequency=1)

  def trained(model, callbacks, count):
    for layer in model.layers:
      inner = getattr(layer, "layer", layer)
      if inner.weights:
        inner.set_weights(base.get_layer(inner.name).get_weights())
    model.compile(keras.optimizers.SGD(0.0),
                  keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    kept = _KeptAfterUpdate(count)
    model.fit(data, epochs=1, steps_per_epoch=12, verbose=0, callbacks=[*callbacks, kept])
    return kept

  theirs = trained(tfmot.sparsity.keras.prune_low_magnitude(_two_layer_net(),
                                                            pruning_schedule=schedule),
                   [tfmot.sparsity.keras.UpdatePruningStep()],
                   lambda m: [int(l.pruning_vars[0][1].numpy().sum()) for l in m.layers
                              if getattr(l, "pruning_vars", None)])
  ours = trained(tfrewind.prunable(_two_layer_net()),
                 [tfrewind.GradualCallback(0.2, 3, 9, 1, prune=PruneSpec(scope=scope))],
                 lambda m: [int(k.sum()) for k in _mask_list(m)])
  assert theirs.steps == list(range(1, 13))  # TF-MOT's pruning_step after update t (0-based): t + 1
  if scope == "layerwise":
    assert ours.kept == theirs.kept
  else:
    total = sum(base.get_layer(n).kernel.shape.num_elements() for n in ("conv", "dense"))
    expected = []
    for step in theirs.steps:
      active = [s for s in range(3, min(step, 9) + 1)]
      density = 1.0 - float(schedule(tf.constant(active[-1], tf.int64))[1]) if active else 1.0
      expected.append(masks_lib.kept_count(density, total))
    assert [sum(k) for k in ours.kept] == expected
  changed = [t for t in range(1, 12) if theirs.kept[t] != theirs.kept[t - 1]]
  assert changed == [t for t in range(1, 12) if ours.kept[t] != ours.kept[t - 1]] == list(
      range(3, 9))  # pruning steps 4..9: step 3 (begin) prunes to sparsity 0


def test_gradual_steps_must_reach_the_density():
  from tfrewind.hparams import HParams  # pylint: disable=g-import-not-at-top
  with pytest.raises(ConfigError, match="does not divide the pruning span 0..150"):
    HParams(schedule="gradual", train_steps="300it", lr_boundaries=("150it", "225it"),
            gradual_every="100it").validate()
  hp = HParams(schedule="gradual", train_steps="300it", lr_boundaries=("150it", "225it"),
               gradual_every="10it").validate()
  assert registries.gradual_steps(hp) == (0, 150, 10)
  with pytest.raises(ConfigError, match="weight criterion"):
    HParams(schedule="gradual", criterion="snip", train_steps="300it",
            lr_boundaries=("150it",), gradual_every="10it").validate()


def _batches(n=2, seed=3):
  rng = np.random.default_rng(seed)
  return [(tf.constant(rng.random((8, 8, 8, 3), dtype=np.float32)),
           tf.constant(rng.integers(0, 10, 8))) for _ in range(n)]


def test_snip_scores_are_bitwise_an_independent_gradient_tape_computation():
  keras.utils.set_random_seed(1)
  plain = tiny_resnet()
  model = tfrewind.prunable(plain)  # shares plain's layers and weights
  batches = _batches()
  got = saliency.scores(model, PruneSpec(criterion="snip"), batches=batches)
  kernels = [l.kernel for l in plain.layers if hasattr(l, "kernel")]
  total = [tf.zeros_like(k) for k in kernels]
  loss_fn = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
  for x, y in batches:
    with tf.GradientTape() as tape:
      loss = loss_fn(y, plain(x, training=False))
    total = [t + g for t, g in zip(total, tape.gradient(loss, kernels))]
  want = [np.abs((k * g).numpy()) for k, g in zip(kernels, total)]
  assert len(got) == len(want)
  assert all(np.array_equal(a, b) for a, b in zip(got, want))
  # One batch is another score: the batches matter.
  one = saliency.scores(model, PruneSpec(criterion="snip"), batches=batches[:1])
  assert not all(np.array_equal(a, b) for a, b in zip(one, got))


def _mlp():
  inputs = keras.Input((5,))
  x = keras.layers.Dense(4, activation="tanh", name="hidden")(inputs)
  return keras.Model(inputs, keras.layers.Dense(3, name="out")(x), name="mlp")


def test_grasp_scores_are_w_times_hessian_gradient_by_an_explicit_hessian():
  keras.utils.set_random_seed(2)
  plain = _mlp()
  model = tfrewind.prunable(plain)
  rng = np.random.default_rng(0)
  batches = [(tf.constant(rng.normal(size=(6, 5)).astype(np.float32)),
              tf.constant(rng.integers(0, 3, 6))) for _ in range(2)]
  got = saliency.scores(model, PruneSpec(criterion="grasp"), batches=batches)
  kernels = [plain.get_layer("hidden").kernel, plain.get_layer("out").kernel]
  t = saliency.GRASP_TEMPERATURE
  loss_fn = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
  g = [np.zeros(k.shape) for k in kernels]
  hessian = [[np.zeros(a.shape + b.shape) for b in kernels] for a in kernels]
  for x, y in batches:
    with tf.GradientTape(persistent=True) as outer:
      with tf.GradientTape() as inner:
        loss = loss_fn(y, plain(x, training=False) / t)
      grads = inner.gradient(loss, kernels)
    for i, gi in enumerate(grads):
      g[i] += gi.numpy()
      for j, kj in enumerate(kernels):
        hessian[i][j] += outer.jacobian(gi, kj).numpy()
  hg = [sum(np.tensordot(hessian[i][j], g[j], axes=g[j].ndim) for j in range(len(kernels)))
        for i in range(len(kernels))]
  want = [k.numpy() * h for k, h in zip(kernels, hg)]
  for a, b in zip(got, want):
    assert np.max(np.abs(a - b)) <= 1e-6 * np.max(np.abs(b))


def test_synflow_scores_are_the_path_norm_gradients_by_hand_and_restore_the_network():
  keras.utils.set_random_seed(3)
  inputs = keras.Input((5,))
  x = keras.layers.Dense(4, activation="relu", name="hidden")(inputs)
  plain = keras.Model(inputs, keras.layers.Dense(3, name="out")(x))
  model = tfrewind.prunable(plain)
  before = [v.numpy() for v in model.variables]
  w1, b1 = [np.abs(a.astype(np.float64)) for a in plain.get_layer("hidden").get_weights()]
  w2 = np.abs(plain.get_layer("out").get_weights()[0].astype(np.float64))
  # R = 1' (|W2|' (|W1|' 1 + |b1|) + |b2|): dR/dW1[i, j] = sum_k |W2|[j, k], dR/dW2[j, k] = h_j
  h = w1.sum(axis=0) + b1
  want = [np.abs(np.outer(np.ones(5), w2.sum(axis=1)) * w1), np.abs(np.outer(h, np.ones(3)) * w2)]
  got = saliency.scores(model, PruneSpec(criterion="synflow"), density=0.5, rounds=1)
  for a, b in zip(got, want):
    np.testing.assert_allclose(a, b, rtol=1e-6)
  assert all(np.array_equal(a, v.numpy()) for a, v in zip(before, model.variables))
  # Three rounds: the same prunes by hand, each on the masked |weights|.
  masks = [np.ones_like(w1), np.ones_like(w2)]
  for k in (1, 2, 3):
    m1, m2 = masks
    a1, a2 = w1 * m1, w2 * m2
    hk = a1.sum(axis=0) + b1
    scores = [np.abs(np.outer(np.ones(5), a2.sum(axis=1)) * a1) * m1,
              np.abs(np.outer(hk, np.ones(3)) * a2) * m2]
    masks = masks_lib.compute_masks([w1, w2], 0.25 ** (k / 3), masks, scores=scores)
  got = saliency.scores(model, PruneSpec(criterion="synflow"), density=0.25, rounds=3)
  tfrewind.prune(model, 0.25, PruneSpec(criterion="synflow"), scores=got)
  assert all(np.array_equal(a, b) for a, b in zip(_mask_list(model), masks))


@pytest.mark.parametrize("control", ["shuffle_masks", "shuffle_weights", "shuffle_layers"])
def test_shuffle_controls_keep_each_layers_count_move_positions_and_follow_the_seed(control):
  def pruned(seed):
    keras.utils.set_random_seed(4)
    model = tfrewind.prunable(tiny_resnet())
    source = _kernels(model)
    tfrewind.prune(model, 0.3, PruneSpec(control=control, seed=seed))
    return model, source

  keras.utils.set_random_seed(4)
  plain = tfrewind.prunable(tiny_resnet())
  tfrewind.prune(plain, 0.3)
  reference = _mask_list(plain)
  model, source = pruned(7)
  masks, kernels = _mask_list(model), _kernels(model)
  assert [int(m.sum()) for m in masks] == [int(m.sum()) for m in reference]
  again, _ = pruned(7)
  assert all(np.array_equal(a, b) for a, b in zip(_kernels(again), kernels))
  assert all(np.array_equal(a, b) for a, b in zip(_mask_list(again), masks))
  other, _ = pruned(8)
  if control == "shuffle_weights":  # the mask stays; the kept values move among its positions
    assert all(np.array_equal(a, b) for a, b in zip(masks, reference))
    for k, m, s, r in zip(kernels, masks, source, reference):
      assert np.array_equal(np.sort(k[m > 0]), np.sort(s[r > 0]))
    assert not all(np.array_equal(a, b) for a, b in zip(_kernels(other), kernels))
  else:
    assert not all(np.array_equal(a, b) for a, b in zip(masks, reference))
    assert not all(np.array_equal(a, b) for a, b in zip(_mask_list(other), masks))
  if control == "shuffle_masks":  # the weights stay where they were (the trained ones)
    for k, m, s in zip(kernels, masks, source):
      assert np.array_equal(k[m > 0], s[m > 0])
  if control == "shuffle_layers":  # weights and mask moved together: the kept values stay
    for k, m, s, r in zip(kernels, masks, source, reference):
      assert np.array_equal(np.sort(k[m > 0]), np.sort(s[r > 0]))
  assert all((k[m == 0] == 0).all() for k, m in zip(kernels, masks))


def test_keep_dense_layers_stay_whole_and_the_density_counts_the_rest():
  keras.utils.set_random_seed(5)
  model = tfrewind.prunable(tiny_resnet())
  sizes = {name: m.size for name, m in sparsity.get_masks(model).items()}
  achieved = tfrewind.prune(model, 0.2, keep_dense="stem|logits")
  masks = sparsity.get_masks(model)
  assert masks["stem/kernel:0"].all() and masks["logits/kernel:0"].all()
  rest = sizes["block_conv/kernel:0"] + sizes["shortcut/kernel:0"]
  kept = int(masks["block_conv/kernel:0"].sum() + masks["shortcut/kernel:0"].sum())
  assert kept == masks_lib.kept_count(0.2, rest)
  assert achieved == kept / rest == sparsity.density(model, "stem|logits")
  assert sparsity.density(model) == (kept + sizes["stem/kernel:0"] + sizes["logits/kernel:0"]) / sum(
      sizes.values())
  # Channel pruning keeps them too, beside the classifier it always keeps.
  channel = tfrewind.prunable(tiny_resnet(), structure="channel")
  tfrewind.prune(channel, 0.5, structure="channel", keep_dense="stem")
  assert sparsity.get_masks(channel)["stem/kernel:0"].all()
  with pytest.raises(ConfigError, match="matches no layer"):
    tfrewind.prune(model, 0.1, keep_dense="stem_conv")
  with pytest.raises(ConfigError, match="not a regular expression"):
    tfrewind.prune(model, 0.1, keep_dense="stem(")


def test_rewind_callback_scores_a_gradient_criterion_on_its_own_data():
  keras.utils.set_random_seed(6)
  with pytest.raises(ConfigError, match="criterion_data"):
    tfrewind.RewindCallback("lr_rewind", tfrewind.OneShot(0.3), cycle_steps=4, criterion="snip")
  model = compile_sgd(tfrewind.prunable(tiny_resnet()))
  callback = tfrewind.RewindCallback("lr_rewind", tfrewind.OneShot(0.3), cycle_steps=4,
                                     criterion="snip", criterion_data=dataset(seed=9),
                                     criterion_batches=2, lr=0.05)
  model.fit(dataset(), epochs=2, steps_per_epoch=4, callbacks=[callback], verbose=0)
  assert callback.events[-1]["density"] == pytest.approx(0.3, abs=1e-3)


def test_the_grid_adds_controls_pruning_at_initialisation_and_budgets():
  from tfrewind import sweep  # pylint: disable=g-import-not-at-top
  from tfrewind.hparams import HParams  # pylint: disable=g-import-not-at-top
  base = HParams(train_steps="300it", lr_boundaries=("150it", "225it"), rewind_step="30it")
  runs = sweep.grid(base, ["lr_rewind"], [0.3, 0.1], [1], controls=["shuffle_masks"],
                    at_init=["snip", "random"])
  assert [(r.method, r.criterion, r.control, r.mask_from, r.density) for r in runs] == [
      ("lr_rewind", "magnitude", None, None, 0.3),
      ("lr_rewind", "magnitude", "shuffle_masks", None, 0.3),
      ("lr_rewind", "magnitude", None, None, 0.1),
      ("lr_rewind", "magnitude", "shuffle_masks", None, 0.1),
      ("weight_rewind", "snip", None, "0it", 0.3), ("weight_rewind", "snip", None, "0it", 0.1),
      ("weight_rewind", "random", None, "0it", 0.3),
      ("weight_rewind", "random", None, "0it", 0.1)]
  assert all(r.to_steps("rewind_step") == 0 for r in runs[4:])
  gradual = HParams(schedule="gradual", train_steps="300it", lr_boundaries=("150it", "225it"),
                    gradual_every="10it")
  runs = sweep.unique(sweep.grid(gradual, ["finetune", "lr_rewind"], [0.1], [1],
                                 train_budgets=["300it", "600it"]))
  assert [(r.cycle_steps, r.boundaries) for r in runs] == [(300, [150, 225]), (600, [300, 450])]
  assert sweep.cost(runs)["total"] == 900 and sweep.snapshot_steps(runs) == []


def test_new_settings_enter_run_identity_only_when_set_or_read():
  from tfrewind import hparams as hp_lib  # pylint: disable=g-import-not-at-top
  base = hp_lib.HParams(train_steps="300it", lr_boundaries=("150it", "225it"),
                        rewind_step="30it")
  key = hp_lib.run_key(base, 1)
  # unread: criterion_batches by magnitude, gradual settings by one-shot
  assert hp_lib.run_key(dataclasses.replace(base, criterion_batches=4), 1) == key
  assert hp_lib.run_key(dataclasses.replace(base, gradual_every="10it"), 1) == key
  for change in (dict(keep_dense="stem_conv"), dict(control="shuffle_masks"),
                 dict(mask_from="0it"), dict(criterion="snip")):
    assert hp_lib.run_key(dataclasses.replace(base, **change), 1) != key, change
  snip = dataclasses.replace(base, criterion="snip")
  assert hp_lib.run_key(dataclasses.replace(snip, criterion_batches=4), 1) != hp_lib.run_key(
      snip, 1)
  # a gradual run reads no retraining method
  gradual = dataclasses.replace(base, schedule="gradual", gradual_every="10it")
  assert hp_lib.run_key(dataclasses.replace(gradual, method="finetune"), 1) == hp_lib.run_key(
      gradual, 1)


def test_a_prune_without_a_magnitude_threshold_still_checkpoints():
  """Random (and SynFlow, a control) leave TF-MOT's threshold NaN, by design; the finite-weights
  check guarding every epoch checkpoint must not count it (it did: such runs never saved)."""
  from tfrewind import callbacks  # pylint: disable=g-import-not-at-top
  model = tfrewind.prunable(tiny_resnet())
  tfrewind.prune(model, 0.3, criterion="random")
  assert all(np.isnan(t.numpy()) for _, _, t in sparsity._pruning_vars(model))  # pylint: disable=protected-access
  assert callbacks.all_finite(model)
  model.layers[1].trainable_weights[0].assign(
      np.full(model.layers[1].trainable_weights[0].shape, np.nan, np.float32))
  assert not callbacks.all_finite(model)


def test_synflow_scores_a_thin_resnet20_at_cifar_size():
  """TF 2.21's oneDNN filter gradient aborts the process on a batch of 1 at width 4 (exit 134 or
  139): SynFlow scores an all-ones batch of two, so this returns, and its masks keep the count."""
  model = tfrewind.prunable(tfrewind.build_model("resnet20", num_classes=10, width=4))
  spec = PruneSpec(criterion="synflow")
  got = saliency.scores(model, spec, density=0.1, rounds=2)
  tfrewind.prune(model, 0.1, spec, scores=got)
  total = sum(m.size for m in _mask_list(model))
  assert int(sum(m.sum() for m in _mask_list(model))) == masks_lib.kept_count(0.1, total)


def _bn_mlp():
  inputs = keras.Input((5,))
  x = keras.layers.Dense(6, name="hidden")(inputs)
  x = keras.layers.Activation("tanh")(keras.layers.BatchNormalization(name="bn")(x))
  return keras.Model(inputs, keras.layers.Dense(3, name="out")(x), name="bn_mlp")


def test_grasp_code_is_its_released_code_training_mode_redrawn_classifier_balanced_halves():
  """Against an independent computation: the samples GraSP_fetch_data takes, the classifier
  re-drawn from the same seed, BatchNorm on batch statistics, and H g as a forward-mode JVP of
  the gradient (tf.autodiff.ForwardAccumulator) rather than a second backward pass."""
  keras.utils.set_random_seed(5)
  plain = _bn_mlp()
  model = tfrewind.prunable(plain)
  before = [v.numpy() for v in model.variables]
  rng = np.random.default_rng(1)
  stream = [(rng.normal(size=(7, 5)).astype(np.float32), rng.integers(0, 3, 7)) for _ in range(9)]
  halves = saliency.grasp_code_samples(iter(stream), model, per_class=4)
  # GraSP_fetch_data by hand: each class's first 4 in stream order, class by class, two halves.
  xs = np.concatenate([x for x, _ in stream])
  ys = np.concatenate([y for _, y in stream])
  order = np.concatenate([np.flatnonzero(ys == c)[:4] for c in range(3)])
  assert np.array_equal(np.concatenate([halves[0][1], halves[1][1]]), ys[order])
  assert np.array_equal(np.concatenate([halves[0][0], halves[1][0]]), xs[order])
  assert [len(h[1]) for h in halves] == [6, 6]
  spec = PruneSpec(criterion="grasp_code", seed=3)
  got = saliency.scores(model, spec, batches=halves)
  assert all(np.array_equal(a, v.numpy()) for a, v in zip(before, model.variables))

  fresh = _bn_mlp()
  fresh.set_weights(plain.get_weights())
  kernels = [fresh.get_layer("hidden").kernel, fresh.get_layer("out").kernel]
  draws = np.random.default_rng(3)  # every Linear layer is re-drawn, in layer order
  for k in kernels:
    k.assign(draws.normal(0.0, np.sqrt(2.0 / sum(k.shape)), k.shape).astype(np.float32))
  loss_fn = keras.losses.SparseCategoricalCrossentropy(from_logits=True)

  def grads(x, y):
    with tf.GradientTape() as tape:
      loss = loss_fn(y, fresh(x, training=True) / saliency.GRASP_TEMPERATURE)
    return tape.gradient(loss, kernels)

  g = [sum(gs) for gs in zip(*(grads(x, y) for x, y in halves))]
  hg = [tf.zeros_like(k) for k in kernels]
  for x, y in halves:
    with tf.autodiff.ForwardAccumulator(kernels, g) as acc:
      inner = grads(x, y)
    hg = [h + acc.jvp(i) for h, i in zip(hg, inner)]
  want = [(k * h).numpy() for k, h in zip(kernels, hg)]
  for a, b in zip(got, want):
    assert np.max(np.abs(a - b)) <= 1e-5 * np.max(np.abs(b))
  # Inference-mode BatchNorm and the kept classifier (today's grasp) score otherwise.
  other = saliency.scores(model, PruneSpec(criterion="grasp"), batches=halves)
  assert not np.allclose(other[0], got[0])


def test_grasp_code_keeps_scores_at_or_below_the_kth_largest_as_its_code():
  """The released rule: k = int(n * (1 - keep_ratio)), the k-th largest of -w*Hg / |sum| the
  threshold, every score <= it kept: n - k + 1 weights without ties. Written from torch.topk's
  definition, over a prunable model's kernels; a kernel kept dense keeps its mask."""
  keras.utils.set_random_seed(6)
  model = tfrewind.prunable(tiny_resnet())
  shapes = [m.shape for m in _mask_list(model)]
  rng = np.random.default_rng(2)
  scores = [rng.normal(size=s) for s in shapes]
  n = sum(int(np.prod(s)) for s in shapes)
  for density in (0.3, 0.1, 0.03):
    fresh = tfrewind.prunable(tiny_resnet())
    tfrewind.prune(fresh, density, PruneSpec(criterion="grasp_code"), scores=scores)
    code = np.concatenate([(-s).astype(np.float32).ravel() for s in scores])
    norm = np.float32(abs(code.sum(dtype=np.float32))) + np.float32(1e-10)
    k = int(n * (1 - (1 - (1 - density))))
    threshold = np.sort(code / norm)[::-1][k - 1]
    want = [((-s).astype(np.float32) / norm <= threshold) for s in scores]
    assert all(np.array_equal(m > 0, w) for m, w in zip(_mask_list(fresh), want))
    assert int(sum(m.sum() for m in _mask_list(fresh))) == n - k + 1
  kept = tfrewind.prunable(tiny_resnet())
  tfrewind.prune(kept, 0.1, PruneSpec(criterion="grasp_code", keep_dense="logits"),
                 scores=scores)
  assert _mask_list(kept)[-1].all()
  with pytest.raises(ConfigError, match="its own global rule"):
    tfrewind.prune(kept, 0.1, PruneSpec(criterion="grasp_code", scope="layerwise"),
                   scores=scores)
