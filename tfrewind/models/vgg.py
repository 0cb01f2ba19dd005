"""VGG with BatchNorm for CIFAR and no hidden fully connected layers (Renda's dense baseline)."""

import tf_keras as keras

from tfrewind.models import common
from tfrewind.errors import ConfigError

CONFIGS = {
    11: [64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512],
    13: [64, 64, "M", 128, 128, "M", 256, 256, "M", 512, 512, "M", 512, 512],
    16: [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512],
    19: [64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512, 512, 512, "M",
         512, 512, 512, 512],
}


def vgg(depth: int, num_classes: int = 10, input_shape=(32, 32, 3), **options) -> keras.Model:
  """Conv3x3-BN-ReLU stacks with max pooling, global average pool, one Dense (as open_lth)."""
  if depth not in CONFIGS:
    raise ConfigError(f"VGG depth must be one of {sorted(CONFIGS)}, got {depth}")
  o = common.Options(**options)
  inputs = keras.Input(input_shape)
  x, conv, pool = inputs, 0, 0
  for item in CONFIGS[depth]:
    if item == "M":
      pool += 1
      x = keras.layers.MaxPooling2D(2, name=f"pool{pool}")(x)
    else:
      conv += 1
      x = o.conv(item, 3, name=f"conv{conv}")(x)
      x = keras.layers.ReLU(name=f"relu{conv}")(o.bn(f"bn{conv}")(x))
  x = keras.layers.GlobalAveragePooling2D(name="pool")(x)
  outputs = o.dense(num_classes, name="logits")(x)
  return keras.Model(inputs, outputs, name=f"vgg{depth}")
