"""Tiny models and data shared by the tests."""

import contextlib

import numpy as np
import tensorflow as tf

import tf_keras as keras


def tiny_resnet(num_classes=10, l2=1e-4, input_shape=(8, 8, 3), batchnorm=True):
  """First conv, one residual block with a 1x1 projection shortcut, final Dense.

  batchnorm=False swaps BatchNormalization for an identity, for comparisons
  across replica counts (per-replica batch statistics differ by design).
  """
  reg = keras.regularizers.L2(l2) if l2 else None
  bn = keras.layers.BatchNormalization if batchnorm else (
      lambda name: keras.layers.Activation("linear", name=name))
  inputs = keras.Input(input_shape)
  x = keras.layers.Conv2D(4, 3, padding="same", use_bias=False, kernel_regularizer=reg,
                          name="stem")(inputs)
  x = bn(name="stem_bn")(x)
  x = keras.layers.ReLU()(x)
  y = keras.layers.Conv2D(8, 3, strides=2, padding="same", use_bias=False, kernel_regularizer=reg,
                          name="block_conv")(x)
  y = bn(name="block_bn")(y)
  s = keras.layers.Conv2D(8, 1, strides=2, use_bias=False, kernel_regularizer=reg,
                          name="shortcut")(x)
  x = keras.layers.ReLU()(keras.layers.Add()([y, s]))
  x = keras.layers.GlobalAveragePooling2D()(x)
  outputs = keras.layers.Dense(num_classes, kernel_regularizer=reg, name="logits")(x)
  return keras.Model(inputs, outputs, name="tiny_resnet")


def dataset(n=64, batch=8, shape=(8, 8, 3), classes=10, seed=0):
  rng = np.random.default_rng(seed)
  x = rng.random((n,) + shape, dtype=np.float32)
  y = rng.integers(0, classes, n)
  return tf.data.Dataset.from_tensor_slices((x, y)).batch(batch, drop_remainder=True).repeat()


def compile_sgd(model, momentum=0.9, nesterov=True, **kwargs):
  model.compile(keras.optimizers.SGD(momentum=momentum, nesterov=nesterov),
                keras.losses.SparseCategoricalCrossentropy(from_logits=True), **kwargs)
  return model


class Probe(keras.callbacks.Callback):
  """Records weights, masks and the LR at chosen steps (placed after RewindCallback)."""

  def __init__(self, steps=()):
    super().__init__()
    self.steps = set(steps)
    self.at = {}
    self.lrs = []

  def on_train_batch_begin(self, batch, logs=None):
    step = int(self.model.optimizer.iterations.numpy())
    if step in self.steps:
      import tfrewind  # pylint: disable=g-import-not-at-top
      self.at[step] = {"weights": {v.name: v.numpy() for v in self.model.weights},
                       "masks": tfrewind.get_masks(self.model),
                       "slots": {v.name: v.numpy() for v in self.model.optimizer.variables}}

  def on_train_batch_end(self, batch, logs=None):
    self.lrs.append(float(self.model.optimizer.learning_rate.numpy()))


def recording(model, steps):
  """Makes the model's train step write the LR of each update into a variable, by step: the
  LR as the compiled step used it, also with steps_per_execution > 1."""
  trace = tf.Variable(tf.fill([steps], -1.0), trainable=False)
  step_fn = model.train_step

  def train_step(data):
    logs = step_fn(data)
    optimizer = model.optimizer
    trace.scatter_nd_update([[optimizer.iterations - 1]],
                            [tf.cast(optimizer.learning_rate, tf.float32)])
    return logs

  model.train_step = train_step
  return trace


@contextlib.contextmanager
def mock_cifar(num_examples=64):
  """tfds' mock data: the real tfrewind.data.load path (builder, as_dataset, decoding) on
  generated images. tfds' mock replaces the download; the reachability probe that guards the
  download (tfrewind.data.can_download) is part of it, so it is replaced alike."""
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  from unittest import mock  # pylint: disable=g-import-not-at-top
  from tfrewind import data  # pylint: disable=g-import-not-at-top
  with tfds.testing.mock_data(num_examples=num_examples), mock.patch.object(
      data, "can_download", lambda *args, **kwargs: True):
    yield
