"""Every named network builds, is prunable everywhere, trains a step; L2 counted once."""

import numpy as np
import pytest
import tensorflow as tf

import tf_keras as keras
import tfrewind
from tfrewind.models import build_model, counts, registry
from tfrewind.pruning import sparsity

# (name, expected prunable kernels: convs + 1x1 shortcuts + the final Dense)
EXPECTED_KERNELS = {"resnet20": 19 + 2 + 1, "resnet56": 55 + 2 + 1, "resnet110": 109 + 2 + 1,
                    "wrn16_8": 13 + 3 + 1, "vgg16": 13 + 1, "vgg19": 16 + 1,
                    "resnet34": 33 + 3 + 1, "resnet50": 53 + 1}
# Published sizes: ResNet-20 0.27M, ResNet-56 0.85M, ResNet-110 1.7M, WRN-16-8 11.0M, ResNet-50 25.6M.
EXPECTED_TRAINABLE = {"resnet20": 272474, "resnet56": 855770, "resnet110": 1730714,
                      "wrn16_8": 10961370, "resnet34": 21797672, "resnet50": 25557032}


@pytest.mark.slow
@pytest.mark.parametrize("name", registry.PRESETS)
def test_every_preset_builds_is_fully_prunable_and_trains_a_step(name):
  imagenet = name in ("resnet34", "resnet50")
  classes = 1000 if imagenet else 10
  full = build_model(name, num_classes=classes)
  c = counts(full)
  assert c["prunable_layers"] == EXPECTED_KERNELS[name]
  if name in EXPECTED_TRAINABLE:
    assert c["trainable"] == EXPECTED_TRAINABLE[name]
  del full
  keras.backend.clear_session()
  # Tiny input so that every preset trains a step quickly.
  shape = (32, 32, 3) if imagenet else (16, 16, 3)
  model = tfrewind.prunable(build_model(name, num_classes=classes, input_shape=shape))
  wrapped = len(sparsity.wrappers(model))
  assert wrapped == EXPECTED_KERNELS[name]
  convs_and_dense = [l for l in model.layers if isinstance(l, (keras.layers.Conv2D,
                                                               keras.layers.Dense))]
  assert not convs_and_dense  # every one is wrapped
  model.compile(keras.optimizers.SGD(0.01, momentum=0.9),
                keras.losses.SparseCategoricalCrossentropy(from_logits=True))
  x = np.random.default_rng(0).random((2,) + shape, dtype=np.float32)
  y = np.array([0, 1])
  assert model(x).shape == (2, classes)
  # ResNet-20 and -56 train a step of ResNet-110's family, ResNet-50 of ResNet-34's (which
  # tests/test_imagenet.py trains through every method)
  if name not in ("resnet110", "resnet34"):
    assert np.isfinite(model.train_on_batch(x, y))
  tfrewind.prune(model, 0.5)
  assert tfrewind.density(model) == pytest.approx(0.5, abs=1e-4)


def test_general_depths_and_widths():
  assert counts(build_model("resnet8", width=8))["prunable_layers"] == 7 + 2 + 1
  assert build_model("resnet32").name == "resnet32"
  assert build_model("wrn10_2", num_classes=100).output_shape == (None, 100)
  assert counts(build_model("resnet20", shortcut="pad"))["prunable_layers"] == 19 + 1


@pytest.mark.parametrize("name,kw,match", [
    ("resnet21", {}, "6n\\+2"), ("wrn15_8", {}, "6n\\+4"), ("vgg12", {}, "VGG depth"),
    ("alexnet", {}, "unknown model"), ("resnet20", {"dropout": 0.5}, "takes no dropout"),
    ("resnet20", {"shortcut": "dense"}, "shortcut"), ("resnet20", {"num_classes": 0}, "num_classes"),
])
def test_bad_model_requests_raise(name, kw, match):
  with pytest.raises(ValueError, match=match):
    build_model(name, **kw)


def test_paper_defaults_and_overrides():
  def bn(m):
    return next(l for l in m.layers if isinstance(l, keras.layers.BatchNormalization))

  def conv(m):
    return next(l for l in m.layers if isinstance(l, keras.layers.Conv2D))

  r = build_model("resnet20")
  assert (bn(r).momentum, bn(r).epsilon) == (0.997, 1e-5)
  assert float(conv(r).kernel_regularizer.l2) == pytest.approx(1e-4)
  assert conv(r).kernel_initializer.__class__.__name__ == "HeUniform" and not conv(r).use_bias
  w = build_model("wrn16_8", input_shape=(8, 8, 3))
  assert (bn(w).momentum, bn(w).epsilon) == (0.9, 1e-3)
  assert float(conv(w).kernel_regularizer.l2) == pytest.approx(2e-4)
  o = build_model("resnet20", bn_momentum=0.9, l2=0.0, initializer="glorot_uniform")
  assert bn(o).momentum == 0.9 and conv(o).kernel_regularizer is None
  assert conv(o).kernel_initializer.__class__.__name__ == "GlorotUniform"


def test_weight_decay_enters_the_loss_exactly_once_even_when_wrapped():
  model = tfrewind.prunable(build_model("resnet8", width=4, input_shape=(8, 8, 3), l2=1e-3))
  kernels = registry.prunable_kernels(model)
  expected = sum(np.float32(1e-3) * tf.reduce_sum(tf.square(k)) for k in kernels)
  assert len(model.losses) == len(kernels)
  assert float(tf.add_n(model.losses)) == pytest.approx(float(expected), rel=1e-6)
  model.compile(keras.optimizers.SGD(0.0), keras.losses.SparseCategoricalCrossentropy(
      from_logits=True))
  x = np.zeros((2, 8, 8, 3), np.float32)
  y = np.array([0, 1])
  data_loss = float(keras.losses.SparseCategoricalCrossentropy(from_logits=True)(
      y, model(x, training=True)))
  total = model.train_on_batch(x, y)
  assert total == pytest.approx(data_loss + float(expected), rel=1e-5)


def test_resnet_v1_structure():
  m = build_model("resnet20")
  names = [l.name for l in m.layers]
  assert names.count("stage2_block1_shortcut") == 1 and "stage1_block1_shortcut" not in names
  shortcut = m.get_layer("stage2_block1_shortcut")
  assert shortcut.kernel_size == (1, 1) and shortcut.strides == (2, 2)
  assert m.get_layer("stage3_block3_add").output.shape[1:] == (8, 8, 64)
  assert isinstance(m.get_layer("stage1_block1_relu2"), keras.layers.ReLU)  # ReLU after the add


def test_tf_official_resnet_as_the_original_code_builds_it():
  # renda_code builds CIFAR ResNets as TF's official ResNet v1 (Renda's resnet_model.py)
  from tfrewind import hparams  # pylint: disable=g-import-not-at-top
  hp = hparams.HParams(protocol="renda_code")
  options = hp.model_overrides()
  assert options == {"shortcut": "projection_all", "fixed_padding": True,
                     "classifier_stddev": 0.01, "decay_all": True}
  assert hparams.HParams(protocol="renda_code", shortcut="pad").model_overrides()["shortcut"] == (
      "pad")  # an explicit flag wins
  assert hparams.HParams(protocol="renda_code", model="wrn16_8").model_overrides() == {}
  assert hparams.HParams().model_overrides() == {}
  official, keras_default = build_model("resnet20", **options), build_model("resnet20")
  # a 1x1 projection in the first block of stage 1 too: 16 x 16 more kernel weights
  assert counts(official)["prunable"] - counts(keras_default)["prunable"] == 16 * 16
  assert counts(official)["prunable_layers"] == counts(keras_default)["prunable_layers"] + 1
  # strided 3x3 convs: one pixel of zeros on each side, then VALID (TF's fixed_padding)
  pads = [l.name for l in official.layers if isinstance(l, keras.layers.ZeroPadding2D)]
  assert pads == ["stage2_block1_conv1_pad", "stage3_block1_conv1_pad"]
  conv = official.get_layer("stage2_block1_conv1")
  assert conv.padding == "valid" and conv.strides == (2, 2)
  x = tf.random.stateless_normal((2, 32, 32, 16), seed=[1, 2])
  sub = keras.Model(official.get_layer("stage2_block1_conv1_pad").input, conv.output)
  expected = tf.nn.conv2d(tf.pad(x, [[0, 0], [1, 1], [1, 1], [0, 0]]), conv.kernel, 2, "VALID")
  assert sub(x).numpy().tobytes() == expected.numpy().tobytes()
  assert sub(x).numpy().tobytes() != tf.nn.conv2d(x, conv.kernel, 2, "SAME").numpy().tobytes()
  # L2 on every trainable variable (gamma, beta, the classifier's bias too), L2(1e-4) each
  assert len(official.losses) == len(official.trainable_weights)
  assert len(keras_default.losses) == counts(keras_default)["prunable_layers"]
  expected_l2 = sum(np.float64(1e-4) * np.sum(np.square(w.numpy().astype(np.float64)))
                    for w in official.trainable_weights)
  assert float(tf.add_n(official.losses)) == pytest.approx(expected_l2, rel=1e-5)
  init = official.get_layer("logits").kernel_initializer
  assert isinstance(init, keras.initializers.RandomNormal) and init.stddev == 0.01
  # and it prunes, slims and counts channels like the other networks
  model = tfrewind.prunable(build_model("resnet20", **options), structure="channel")
  tfrewind.prune(model, 0.5, structure="channel")
  small = tfrewind.slim(model)
  y = np.random.default_rng(0).normal(size=(2, 32, 32, 3)).astype(np.float32)
  out = model(y, training=False).numpy()
  np.testing.assert_allclose(small(y, training=False).numpy(), out, rtol=1e-5,
                             atol=1e-5 * np.abs(out).max())
  assert small.count_params() < tfrewind.strip(model).count_params()
