"""Wide ResNets (Zagoruyko & Komodakis 2016): pre-activation blocks, widths 16k, 32k, 64k."""

import tf_keras as keras

from tfrewind.models import common
from tfrewind.errors import ConfigError


def wide_resnet(depth: int, width: int, num_classes: int = 10, input_shape=(32, 32, 3),
                **options) -> keras.Model:
  """WRN-depth-width: 3 groups of (depth - 4) / 6 pre-activation blocks, no dropout.

  A 1x1 projection shortcut, applied to the block's pre-activated input as in
  the authors' code, wherever width or stride changes. Defaults follow Mikler's
  WRN-16-8: BatchNorm decay 0.9, epsilon 1e-3, L2 2e-4, He-uniform init.
  """
  if (depth - 4) % 6 or depth < 10:
    raise ConfigError(f"WRN depth must be 6n+4 with n >= 1, got {depth}")
  if width < 1:
    raise ConfigError(f"WRN width must be >= 1, got {width}")
  o = common.Options(**{"bn_momentum": 0.9, "bn_epsilon": 1e-3, "l2": 2e-4, **options})
  n = (depth - 4) // 6
  inputs = keras.Input(input_shape)
  x = o.conv(16, 3, name="stem_conv")(inputs)
  for group, filters in enumerate([16 * width, 32 * width, 64 * width]):
    for block in range(n):
      stride = 2 if group > 0 and block == 0 else 1
      name = f"group{group + 1}_block{block + 1}"
      pre = keras.layers.ReLU(name=f"{name}_relu1")(o.bn(f"{name}_bn1")(x))
      y = o.conv(filters, 3, stride, name=f"{name}_conv1")(pre)
      y = keras.layers.ReLU(name=f"{name}_relu2")(o.bn(f"{name}_bn2")(y))
      y = o.conv(filters, 3, name=f"{name}_conv2")(y)
      if stride != 1 or x.shape[-1] != filters:
        x = o.conv(filters, 1, stride, name=f"{name}_shortcut")(pre)
      x = keras.layers.Add(name=f"{name}_add")([x, y])
  x = keras.layers.ReLU(name="final_relu")(o.bn("final_bn")(x))
  x = keras.layers.GlobalAveragePooling2D(name="pool")(x)
  outputs = o.dense(num_classes, name="logits")(x)
  return keras.Model(inputs, outputs, name=f"wrn{depth}_{width}")
