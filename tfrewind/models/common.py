"""Layer factories shared by the networks: one place for init, BatchNorm and L2."""

import dataclasses
from typing import Optional

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
  decay_all: also on BatchNorm gamma/beta and the classifier's bias (Renda's code decays
    every trainable variable: 2e-4 * tf.nn.l2_loss = Keras L2(1e-4) on each).
  classifier_stddev: the classifier's kernel from N(0, stddev) instead of `initializer`
    (Renda's code: 0.01).
  decay_bias: L2 on the classifier's bias too (the original's ImageNet code decays every
    trainable variable but BatchNorm's: 1e-4 * tf.nn.l2_loss = Keras L2(5e-5)).
  fixed_padding: a strided conv pads (k - 1) // 2 before and k // 2 after, explicitly, and
    convolves VALID, as TF's official ResNet (Renda's code) does; Keras' "same" pads a
    stride-2 3x3 conv of an even input only after, so its grid is one pixel off.
  """
  initializer: str = "he_uniform"
  bn_momentum: float = 0.997
  bn_epsilon: float = 1e-5
  l2: float = 1e-4
  decay_all: bool = False
  classifier_stddev: Optional[float] = None
  fixed_padding: bool = False
  decay_bias: bool = False

  def _reg(self):
    return keras.regularizers.L2(self.l2) if self.l2 else None

  def _other_reg(self):
    return self._reg() if self.decay_all else None

  def conv(self, filters, kernel_size, strides=1, name=None):
    explicit = self.fixed_padding and strides > 1 and kernel_size > 1
    layer = keras.layers.Conv2D(filters, kernel_size, strides,
                                padding="valid" if explicit else "same", use_bias=False,
                                kernel_initializer=self.initializer,
                                kernel_regularizer=self._reg(), name=name)
    if not explicit:
      return layer
    total = kernel_size - 1
    pad = keras.layers.ZeroPadding2D(((total // 2, total - total // 2),) * 2,
                                     name=f"{name}_pad" if name else None)
    return lambda x: layer(pad(x))

  def dense(self, units, name=None):
    init = (keras.initializers.RandomNormal(stddev=self.classifier_stddev)
            if self.classifier_stddev else self.initializer)
    return keras.layers.Dense(units, kernel_initializer=init, kernel_regularizer=self._reg(),
                              bias_regularizer=self._reg() if self.decay_all or self.decay_bias
                              else None, name=name)

  def bn(self, name=None, gamma_initializer="ones"):
    return keras.layers.BatchNormalization(momentum=self.bn_momentum, epsilon=self.bn_epsilon,
                                           gamma_initializer=gamma_initializer,
                                           gamma_regularizer=self._other_reg(),
                                           beta_regularizer=self._other_reg(), name=name)

  def bn_zero(self, name=None):
    """A BatchNorm whose gamma starts at 0 (a residual block's last: TF's init_zero)."""
    return self.bn(name, gamma_initializer="zeros")


def pad_shortcut(x, filters, stride, name):
  """He et al.'s option-A shortcut: subsample, then zero-pad the new channels."""
  extra = filters - x.shape[-1]

  def fn(t):
    t = t[:, ::stride, ::stride, :]
    return tf.pad(t, [[0, 0], [0, 0], [0, 0], [extra // 2, extra - extra // 2]])

  return keras.layers.Lambda(fn, name=name)(x)
