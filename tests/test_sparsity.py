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


def test_prune_layerwise_and_channel():
  model = tfrewind.prunable(tiny_resnet())
  tfrewind.prune(model, 0.5, scope="layerwise")
  for name, m in tfrewind.get_masks(model).items():
    assert int(m.sum()) == masks_lib.kept_count(0.5, m.size), name
  model = tfrewind.prunable(tiny_resnet())
  tfrewind.prune(model, 0.5, structure="channel")
  for m in tfrewind.get_masks(model).values():
    per_channel = m.reshape(-1, m.shape[-1])
    assert ((per_channel == 0).all(0) | (per_channel == 1).all(0)).all()


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
