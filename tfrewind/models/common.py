"""Layer factories shared by the networks: one place for init, BatchNorm and L2."""

import dataclasses

import tensorflow as tf

import tf_keras as keras


@dataclasses.dataclass(frozen=True)
class Options:
  """Per-network settings that a user may override through build_model(**overrides).

  initializer: Keras initializer name for conv and dense kernels (the papers'
    reproduction uses "he_uniform"; Renda's code a fan-in variance scaling,
    "variance_scaling").
  bn_momentum, bn_epsilon: BatchNormalization decay and epsilon.
  l2: L2 coefficient on conv and dense kernels (kernel_regularizer); 0 for none.
  """
  initializer: str = "he_uniform"
  bn_momentum: float = 0.997
  bn_epsilon: float = 1e-5
  l2: float = 1e-4

  def _reg(self):
    return keras.regularizers.L2(self.l2) if self.l2 else None

  def conv(self, filters, kernel_size, strides=1, name=None):
    return keras.layers.Conv2D(filters, kernel_size, strides, padding="same", use_bias=False,
                               kernel_initializer=self.initializer,
                               kernel_regularizer=self._reg(), name=name)

  def dense(self, units, name=None):
    return keras.layers.Dense(units, kernel_initializer=self.initializer,
                              kernel_regularizer=self._reg(), name=name)

  def bn(self, name=None):
    return keras.layers.BatchNormalization(momentum=self.bn_momentum, epsilon=self.bn_epsilon,
                                           name=name)


def pad_shortcut(x, filters, stride, name):
  """He et al.'s option-A shortcut: subsample, then zero-pad the new channels."""
  extra = filters - x.shape[-1]

  def fn(t):
    t = t[:, ::stride, ::stride, :]
    return tf.pad(t, [[0, 0], [0, 0], [0, 0], [extra // 2, extra - extra // 2]])

  return keras.layers.Lambda(fn, name=name)(x)
