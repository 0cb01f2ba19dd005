"""prunable / prune / density / get_masks on real tf_keras models."""

import os

import numpy as np
import pytest
import tensorflow as tf

import tf_keras as keras
import tfrewind
from tfrewind.pruning import masks as masks_lib
from tfrewind.pruning import sparsity

from helpers import compile_sgd, dataset, tiny_resnet


def test_prunable_wraps_every_conv_and_dense_including_shortcut_and_logits():
  model = tfrewind.prunable(tiny_resnet())
  wrapped = {w.layer.name for w in sparsity.wrappers(model)}
  assert wrapped == {"stem", "block_conv", "shortcut", "logits"}
  assert all(isinstance(w, sparsity.Masked) for w in sparsity.wrappers(model))
  assert tfrewind.density(model) == 1.0
  assert set(tfrewind.get_masks(model)) == {"stem/kernel:0", "block_conv/kernel:0",
                                            "shortcut/kernel:0", "logits/kernel:0"}


def test_prunable_keeps_the_weights_and_outputs():
  base = tiny_resnet()
  x = np.random.default_rng(0).random((4, 8, 8, 3), dtype=np.float32)
  before = base(x, training=False).numpy()
  model = tfrewind.prunable(base)
  assert model(x, training=False).numpy().tobytes() == before.tobytes()


def test_prune_global_exact_count_threshold_and_untouched_biases_and_batchnorm():
  model = tfrewind.prunable(tiny_resnet())
  others = {v.name: v.numpy() for v in model.weights if "kernel" not in v.name
            and "mask" not in v.name and "threshold" not in v.name}
  kernels = [w.numpy() for w, _, _ in sparsity._pruning_vars(model)]  # pylint: disable=protected-access
  total = sum(k.size for k in kernels)
  achieved = tfrewind.prune(model, density=0.2)
  masks = list(tfrewind.get_masks(model).values())
  kept = sum(int(m.sum()) for m in masks)
  assert kept == masks_lib.kept_count(0.2, total) and achieved == kept / total
  kept_abs = np.concatenate([np.abs(k)[m > 0] for k, m in zip(kernels, masks)])
  pruned_abs = np.concatenate([np.abs(k)[m == 0] for k, m in zip(kernels, masks)])
  assert kept_abs.min() >= pruned_abs.max()
  for (w, _, _), m, k in zip(sparsity._pruning_vars(model), masks, kernels):  # pylint: disable=protected-access
    v = w.numpy()
    assert (v[m > 0] == k[m > 0]).all() and (v[m == 0] == 0).all()
  for v in model.weights:
    if v.name in others:
      assert v.numpy().tobytes() == others[v.name].tobytes(), v.name


def test_tensorboard_threshold_is_the_real_threshold_of_each_prune(tmp_path, monkeypatch):
  """TF-MOT's threshold variable (what PruningSummaries logs) holds the prune's cut: the
  smallest kept |w| over all kernels (global) or per kernel (layerwise); NaN, not logged, for
  rules without a magnitude threshold; nothing logged before the first prune."""
  from tfrewind import callbacks  # pylint: disable=g-import-not-at-top
  model = tfrewind.prunable(tiny_resnet())
  kernels = [w.numpy() for w, _, _ in sparsity._pruning_vars(model)]  # pylint: disable=protected-access
  tfrewind.prune(model, density=0.2)
  cut = np.sort(np.abs(np.concatenate([k.ravel() for k in kernels])))[::-1][
      masks_lib.kept_count(0.2, sum(k.size for k in kernels)) - 1]
  for _, _, t in sparsity._pruning_vars(model):  # pylint: disable=protected-access
    assert t.numpy() == np.float32(cut)
  model = tfrewind.prunable(tiny_resnet())
  kernels = [w.numpy() for w, _, _ in sparsity._pruning_vars(model)]  # pylint: disable=protected-access
  tfrewind.prune(model, density=0.5, scope="layerwise")
  for k, (_, m, t) in zip(kernels, sparsity._pruning_vars(model)):  # pylint: disable=protected-access
    assert t.numpy() == np.abs(k)[m.numpy() > 0].min()
  tfrewind.prune(model, density=0.25, criterion="random")
  assert all(np.isnan(t.numpy()) for _, _, t in sparsity._pruning_vars(model))  # pylint: disable=protected-access
  filtered = []
  monkeypatch.setattr(callbacks.pruning_callbacks.PruningSummaries, "_log_pruning_metrics",
                      lambda self, logs, prefix, step: filtered.append(logs))
  callbacks.MaskSummaries(str(tmp_path))._log_pruning_metrics(  # pylint: disable=protected-access
      {"a/sparsity": 0.5, "a/threshold": 0.0, "b/threshold": float("nan"), "c/threshold": 0.25},
      "", 0)
  assert filtered == [{"a/sparsity": 0.5, "c/threshold": 0.25}]


def test_prune_layerwise_and_channel():
  model = tfrewind.prunable(tiny_resnet())
  tfrewind.prune(model, 0.5, scope="layerwise")
  for name, m in tfrewind.get_masks(model).items():
    assert int(m.sum()) == masks_lib.kept_count(0.5, m.size), name
  with pytest.raises(ValueError, match="structure='channel'"):
    tfrewind.prune(tfrewind.prunable(tiny_resnet()), 0.5, structure="channel")
  model = tfrewind.prunable(tiny_resnet(), structure="channel")
  tfrewind.prune(model, 0.5, structure="channel", count="channels")
  masks = tfrewind.get_masks(model)
  for m in masks.values():
    per_channel = m.reshape(-1, m.shape[-1])
    assert ((per_channel == 0).all(0) | (per_channel == 1).all(0)).all()
  # The classifier's units are classes: never pruned, and not counted.
  assert masks.pop("logits/kernel:0").all()
  alive = sum(int(m.reshape(-1, m.shape[-1]).max(0).sum()) for m in masks.values())
  assert alive == masks_lib.kept_count(0.5, 4 + 8 + 8)


def _randomize_batchnorm(model, seed=0):
  rng = np.random.default_rng(seed)
  for layer in model.layers:
    if isinstance(layer, keras.layers.BatchNormalization):
      n = layer.gamma.shape[0]
      layer.set_weights([rng.normal(1, 0.3, n), rng.normal(0, 0.3, n), rng.normal(0, 0.3, n),
                         rng.uniform(0.5, 2, n)])


def test_channel_pruning_silences_the_batchnorm_after_the_conv_through_training(tmp_path):
  base = tiny_resnet()
  _randomize_batchnorm(base)
  x = np.random.default_rng(1).random((4, 8, 8, 3), dtype=np.float32)
  before = base(x, training=False).numpy()
  model = compile_sgd(tfrewind.prunable(base, structure="channel"))
  norms = {n.name: w.layer.name for n, (w,) in sparsity.channel_norms(model)}
  assert norms == {"stem_bn": "stem", "block_bn": "block_conv"}
  # Same weights and outputs as the plain network until something is pruned.
  assert model(x, training=False).numpy().tobytes() == before.tobytes()
  model.fit(dataset(), epochs=1, steps_per_epoch=2, verbose=0)  # non-zero momentum on beta
  tfrewind.prune(model, 0.5, scope="layerwise", structure="channel")
  masks = tfrewind.get_masks(model)
  dead = {n: masks[f"{s}/kernel:0"].reshape(-1, masks[f"{s}/kernel:0"].shape[-1]).max(0) == 0
          for n, s in norms.items()}
  assert [int(d.sum()) for d in dead.values()] == [2, 4]
  model.fit(dataset(), epochs=1, steps_per_epoch=4, verbose=0)
  for name, d in dead.items():
    layer = model.get_layer(name)
    for v in (layer.gamma, layer.beta):
      values = v.numpy()
      assert values[d].tobytes() == np.zeros(int(d.sum()), np.float32).tobytes(), v.name
      assert (values[~d] != 0).all()
      for slot in sparsity.optimizer_slots(model.optimizer, v):
        assert (slot.numpy()[d] == 0).all()
  # Silent after the BatchNorm: the stripped network (plain layers) computes the same, bitwise.
  stripped = tfrewind.strip(model)
  assert {type(l).__name__ for l in stripped.layers} >= {"BatchNormalization", "Conv2D"}
  assert not any(isinstance(l, (sparsity.Masked, sparsity.ChannelNorm)) for l in stripped.layers)
  assert stripped(x, training=False).numpy().tobytes() == model(x, training=False).numpy().tobytes()
  stem_out = keras.Model(model.inputs, model.get_layer("stem_bn").output)(x, training=True)
  assert (stem_out.numpy()[..., dead["stem_bn"]] == 0).all()


@pytest.mark.parametrize("setting", ["mixed_float16", "mirrored"])
def test_channel_norm_stays_silent_under_mixed_precision_and_mirrored_strategy(setting):
  # ReductionToOneDevice: a second collective-based strategy in one process (test_rewind has
  # one) reuses collective instance keys, and TF then compares gradient shapes across models.
  strategy = (tf.distribute.MirroredStrategy(tf.config.list_logical_devices("CPU")[:2],
                                             cross_device_ops=tf.distribute.ReductionToOneDevice())
              if setting == "mirrored" else tf.distribute.get_strategy())
  if setting == "mixed_float16":
    keras.mixed_precision.set_global_policy("mixed_float16")
  try:
    with strategy.scope():
      model = compile_sgd(tfrewind.prunable(tiny_resnet(), structure="channel"))
    model.fit(dataset(), epochs=1, steps_per_epoch=2, verbose=0)
    tfrewind.prune(model, 0.5, scope="layerwise", structure="channel")
    model.fit(dataset(), epochs=1, steps_per_epoch=3, verbose=0)
    for norm, (wrapper,) in sparsity.channel_norms(model):
      m = wrapper.pruning_vars[0][1].numpy()
      dead = m.reshape(-1, m.shape[-1]).max(0) == 0
      assert dead.sum() == m.shape[-1] // 2
      assert (norm.gamma.numpy()[dead] == 0).all() and (norm.beta.numpy()[dead] == 0).all()
      assert (norm.beta.numpy()[~dead] != 0).all()
  finally:
    keras.mixed_precision.set_global_policy("float32")


def test_dense_checkpoint_serves_unstructured_and_channel_models(tmp_path):
  dense = compile_sgd(tfrewind.prunable(tiny_resnet()))
  dense.fit(dataset(), epochs=1, steps_per_epoch=2, verbose=0)
  path = tf.train.Checkpoint(model=dense, optimizer=dense.optimizer).write(str(tmp_path / "c"))
  channel = compile_sgd(tfrewind.prunable(tiny_resnet(), structure="channel"))
  channel.optimizer.build(channel.trainable_variables)
  tf.train.Checkpoint(model=channel, optimizer=channel.optimizer).read(
      path).assert_existing_objects_matched()
  for a, b in zip(dense.weights, channel.weights):
    assert a.numpy().tobytes() == b.numpy().tobytes()
  # Saved and loaded as .keras, a ChannelNorm comes back and is linked by prunable again.
  channel.save(str(tmp_path / "m.keras"))
  loaded = tfrewind.prunable(keras.models.load_model(str(tmp_path / "m.keras")),
                             structure="channel")
  assert all(n._source_masks is not None for n, _ in sparsity.channel_norms(loaded))  # pylint: disable=protected-access


def test_nothing_to_prune_and_subclassed_models_raise():
  with pytest.raises(ValueError, match="nothing to prune"):
    tfrewind.prunable(keras.Sequential([keras.layers.Flatten(input_shape=(4, 4)),
                                        keras.layers.ReLU()]))

  class Sub(keras.Model):

    def __init__(self):
      super().__init__()
      self.d = keras.layers.Dense(2)

    def call(self, x):
      return self.d(x)

  with pytest.raises(ValueError, match="subclassed"):
    tfrewind.prunable(Sub())
  with pytest.raises(ValueError, match="prunable"):
    tfrewind.prune(tiny_resnet(), 0.5)
  with pytest.raises(ValueError, match="density"):
    tfrewind.prune(tfrewind.prunable(tiny_resnet()), 0.0)


def _pruned_weights_zero(model):
  return all((w.numpy()[m.numpy() == 0] == 0).all() for w, m, _ in sparsity._pruning_vars(model))  # pylint: disable=protected-access


@pytest.mark.parametrize("optimizer", [
    lambda: keras.optimizers.SGD(0.1, momentum=0.9, nesterov=True),
    lambda: keras.optimizers.Adam(0.01),
    lambda: keras.optimizers.AdamW(0.01, weight_decay=0.1),
    lambda: keras.optimizers.legacy.SGD(0.1, momentum=0.9)])
def test_masks_hold_through_training_and_in_every_checkpoint(optimizer, tmp_path):
  model = tfrewind.prunable(tiny_resnet(l2=1e-2))
  model.compile(optimizer(), keras.losses.SparseCategoricalCrossentropy(from_logits=True))
  ds = dataset()
  model.fit(ds, epochs=1, steps_per_epoch=3, verbose=0)  # momentum is now non-zero everywhere
  tfrewind.prune(model, 0.3)
  masks = tfrewind.get_masks(model)

  class CheckEveryStep(keras.callbacks.Callback):
    bad = 0

    def on_train_batch_end(self, batch, logs=None):
      CheckEveryStep.bad += not _pruned_weights_zero(self.model)

  ckpt = str(tmp_path / "ckpt-{batch}")
  model.fit(ds, epochs=2, steps_per_epoch=5, verbose=0, callbacks=[
      CheckEveryStep(), keras.callbacks.ModelCheckpoint(ckpt, save_weights_only=True, save_freq=3)])
  assert CheckEveryStep.bad == 0
  after = tfrewind.get_masks(model)
  assert all((masks[k] == after[k]).all() for k in masks)
  step = int(model.optimizer.iterations.numpy())
  model.save_weights(str(tmp_path / "final"))
  for path in [str(tmp_path / "final"), tf.train.latest_checkpoint(str(tmp_path)) or
               str(tmp_path / "ckpt-3")]:
    fresh = tfrewind.prunable(tiny_resnet(l2=1e-2))
    fresh.compile(optimizer(), keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    fresh.load_weights(path)
    restored = tfrewind.get_masks(fresh)
    assert all((masks[k] == restored[k]).all() for k in masks)
    assert _pruned_weights_zero(fresh)
  reader = tf.train.load_checkpoint(str(tmp_path / "final"))
  names = [n for n in reader.get_variable_to_shape_map() if "iter" in n]
  assert names and any(int(reader.get_tensor(n)) == step for n in names)


def test_saved_model_round_trip_keeps_masks_and_strip_pruning(tmp_path):
  model = compile_sgd(tfrewind.prunable(tiny_resnet()))
  model.fit(dataset(), epochs=1, steps_per_epoch=2, verbose=0)
  tfrewind.prune(model, 0.25)
  model.save(str(tmp_path / "m.keras"))
  loaded = keras.models.load_model(str(tmp_path / "m.keras"))
  a, b = tfrewind.get_masks(model), tfrewind.get_masks(loaded)
  assert a.keys() == b.keys() and all((a[k] == b[k]).all() for k in a)
  assert int(loaded.optimizer.iterations.numpy()) == 2
  import tensorflow_model_optimization as tfmot  # pylint: disable=g-import-not-at-top
  stripped = tfmot.sparsity.keras.strip_pruning(model)
  assert not sparsity.wrappers(stripped)
  kernels = [l.kernel.numpy() for l in stripped.layers if hasattr(l, "kernel")]
  zeros = sum(int((k == 0).sum()) for k in kernels)
  assert zeros == sum(int((m == 0).sum()) for m in a.values())
  x = np.random.default_rng(1).random((2, 8, 8, 3), dtype=np.float32)
  np.testing.assert_array_equal(stripped(x, training=False), model(x, training=False))


def test_mixed_precision_keeps_masks_exact():
  keras.mixed_precision.set_global_policy("mixed_float16")
  try:
    model = compile_sgd(tfrewind.prunable(tiny_resnet()))
    model.fit(dataset(), epochs=1, steps_per_epoch=2, verbose=0)
    tfrewind.prune(model, 0.3)
    masks = tfrewind.get_masks(model)
    model.fit(dataset(), epochs=1, steps_per_epoch=4, verbose=0)
    assert _pruned_weights_zero(model)
    after = tfrewind.get_masks(model)
    assert all((masks[k] == after[k]).all() for k in masks)
    assert all(w.dtype == tf.float32 for w, _, _ in sparsity._pruning_vars(model))  # pylint: disable=protected-access
  finally:
    keras.mixed_precision.set_global_policy("float32")


def test_jit_compile_keeps_masks_exact():
  model = tfrewind.prunable(tiny_resnet())
  model.compile(keras.optimizers.SGD(0.1, momentum=0.9),
                keras.losses.SparseCategoricalCrossentropy(from_logits=True), jit_compile=True)
  model.fit(dataset(), epochs=1, steps_per_epoch=2, verbose=0)
  tfrewind.prune(model, 0.3)
  masks = tfrewind.get_masks(model)
  model.fit(dataset(), epochs=1, steps_per_epoch=3, verbose=0)
  assert _pruned_weights_zero(model)
  assert all((masks[k] == v).all() for k, v in tfrewind.get_masks(model).items())


def test_density_counts_masks():
  model = tfrewind.prunable(tiny_resnet())
  tfrewind.prune(model, 0.5)
  counts = [(m.sum(), m.size) for m in tfrewind.get_masks(model).values()]
  assert tfrewind.density(model) == sum(c for c, _ in counts) / sum(n for _, n in counts)
  assert set(tfrewind.layer_densities(model)) == set(tfrewind.get_masks(model))
  assert os.environ["TF_USE_LEGACY_KERAS"] == "1"


# Filters kept by the first conv of each block at level 1 (stage: blocks in order): Python's
# random.Random(0), one draw per listed conv in order, as the original's random.seed(0).
LEVEL1_FILTERS = {
    ("resnet56", "structured_a"): {
        "stage1": [15, 15, 14, 14, 14, 14, 15, 16, 14],
        "stage2": [32, 29, 29, 29, 29, 29, 29, 29, 29],
        "stage3": [64, 58, 58, 58, 58, 57, 58, 58, 64]},
    ("resnet56", "structured_b"): {
        "stage1": [7, 7, 6, 6, 6, 6, 7, 16, 16],
        "stage2": [32, 22, 22, 22, 23, 22, 22, 32, 23],
        "stage3": [64, 58, 57, 58, 58, 58, 58, 57, 64]},
}


def _released_densities(network, structure):
  from tfrewind.report import reference  # pylint: disable=g-import-not-at-top
  trials = reference.renda_trials()
  return sorted(trials[(trials.network == network) & (trials.structure == structure)]
                ["density"].unique(), reverse=True)


@pytest.mark.parametrize("network,structure", sorted(LEVEL1_FILTERS))
def test_structured_a_b_prune_the_originals_filters(network, structure):
  model = tfrewind.prunable(tfrewind.build_model(network), structure=structure)
  names = [w.layer.name for w in sparsity.wrappers(model)]
  weights = [w.layer.kernel.numpy() for w in sparsity.wrappers(model)]
  ratios = sparsity.filter_ratios(weights, structure)
  # the original numbers 3x3 convs from the stem (conv_1): block j's first conv is 2 + 2j
  assert {names[i] for i in ratios} == {
      f"stage{(k - 2) // 18 + 1}_block{(k - 2) % 18 // 2 + 1}_conv1"
      for k in masks_lib.FILTER_SETTINGS[(56, structure)]}
  from test_masks import original_filter_masks  # pylint: disable=g-import-not-at-top
  released = _released_densities(network, structure)
  for level in range(1, 6):
    masks = sparsity.new_masks(model, 1.0, structure=structure, level=level)
    ones = [np.ones(w.shape, np.float32) for w in weights]
    assert all(a.tobytes() == b.tobytes() for a, b in zip(
        masks, original_filter_masks(weights, ones, ratios, level)))
    if level == 1:
      kept = {}
      for name, m in zip(names, masks):
        if name.endswith("_conv1") and name.startswith("stage"):
          kept.setdefault(name.split("_")[0], []).append(int(m.reshape(-1, m.shape[-1])
                                                             .any(0).sum()))
      assert kept == LEVEL1_FILTERS[(network, structure)]
    # The released densities count a removed filter's inputs in the next conv as removed
    # too (Li et al.'s count); ours land within 0.002 of them (their rounding draws are
    # not released; the trials' densities do not follow from seed 0 and these shapes).
    effective = 0
    for i, m in enumerate(masks):
      if i - 1 in ratios:
        dead = ~masks[i - 1].reshape(-1, masks[i - 1].shape[-1]).any(0)
        m = m.copy()
        m[:, :, dead, :] = 0
      effective += m.sum()
    assert abs(effective / sum(m.size for m in masks) - released[level - 1]) < 0.002
  tfrewind.prune(model, 1.0, structure=structure, level=2)
  with pytest.raises(ValueError, match="defined for resnet110 and resnet34 and resnet56"):
    sparsity.new_masks(tfrewind.prunable(tiny_resnet(), structure=structure), 1.0,
                       structure=structure)
