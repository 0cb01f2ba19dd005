"""ResNets: v1 for CIFAR (He et al. 2016, depth 6n+2) and v1.5 for ImageNet (18 ... 152).

Weight decay is a Keras `kernel_regularizer=L2(l2)` on every conv and dense
kernel, i.e. `l2 * sum(w**2)` added once to the loss through `model.losses`
(Mikler's choice; Renda's `l2 * tf.nn.l2_loss` on all weights is half of that
per weight and also decays BatchNorm and biases).
"""

import tf_keras as keras
from tfrewind import names

from tfrewind.models import common
from tfrewind.errors import ConfigError


def cifar_resnet(depth: int, num_classes: int = 10, input_shape=(32, 32, 3),
                 width: int = 16, shortcut: str = "projection", **options) -> keras.Model:
  """ResNet v1 for CIFAR: 3 stages of n basic blocks, widths w, 2w, 4w.

  Args:
    depth: 6n + 2 (20, 56, 110, ...).
    num_classes: size of the final Dense.
    input_shape: HWC.
    width: channels of the first stage (16 in the papers).
    shortcut: "projection" (1x1 conv + BatchNorm, stride 2, where the shape
      changes: the papers' choice), "projection_all" (also in the first block of
      the first stage, as TF's official ResNet and so Renda's code) or "pad" (He
      et al.'s option A: subsample and zero-pad channels, nothing to prune).
    **options: see common.Options (initializer, bn_momentum, bn_epsilon, l2).
  """
  if (depth - 2) % 6 or depth < 8:
    raise ConfigError(f"CIFAR ResNet depth must be 6n+2 with n >= 1, got {depth}")
  if shortcut not in names.SHORTCUTS:
    raise ConfigError(f"shortcut must be 'projection', 'projection_all' or 'pad', got "
                     f"{shortcut!r}")
  o = common.Options(**{"bn_momentum": 0.997, "bn_epsilon": 1e-5, "l2": 1e-4, **options})
  n = (depth - 2) // 6
  inputs = keras.Input(input_shape)
  x = o.conv(width, 3, name="stem_conv")(inputs)
  x = keras.layers.ReLU(name="stem_relu")(o.bn("stem_bn")(x))
  for stage, filters in enumerate([width, 2 * width, 4 * width]):
    for block in range(n):
      stride = 2 if stage > 0 and block == 0 else 1
      name = f"stage{stage + 1}_block{block + 1}"
      y = o.conv(filters, 3, stride, name=f"{name}_conv1")(x)
      y = keras.layers.ReLU(name=f"{name}_relu1")(o.bn(f"{name}_bn1")(y))
      y = o.conv(filters, 3, name=f"{name}_conv2")(y)
      y = o.bn(f"{name}_bn2")(y)
      if stride != 1 or x.shape[-1] != filters or (shortcut == "projection_all" and block == 0):
        if shortcut != "pad":
          x = o.bn(f"{name}_shortcut_bn")(o.conv(filters, 1, stride, name=f"{name}_shortcut")(x))
        else:
          x = common.pad_shortcut(x, filters, stride, name=f"{name}_shortcut")
      x = keras.layers.ReLU(name=f"{name}_relu2")(keras.layers.Add(name=f"{name}_add")([x, y]))
  x = keras.layers.GlobalAveragePooling2D(name="pool")(x)
  outputs = o.dense(num_classes, name="logits")(x)
  return keras.Model(inputs, outputs, name=f"resnet{depth}")


# ImageNet ResNets (He et al. 2016): (block, blocks per stage).
IMAGENET_DEPTHS = {18: ("basic", (2, 2, 2, 2)), 34: ("basic", (3, 4, 6, 3)),
                   50: ("bottleneck", (3, 4, 6, 3)), 101: ("bottleneck", (3, 4, 23, 3)),
                   152: ("bottleneck", (3, 8, 36, 3))}


def imagenet_resnet(depth: int, num_classes: int = 1000, input_shape=(224, 224, 3),
                    width: int = 64, shortcut: str = "projection",
                    zero_init_residual: bool = False, **options) -> keras.Model:
  """ResNet v1.5 for ImageNet as TF's official model (and so the original study's TPU code,
  official/resnet/resnet_model.py): a 7x7 stride-2 stem, a 3x3 max pool, four stages of basic
  (18, 34) or bottleneck (50, ...) blocks, the stride on a bottleneck's 3x3 conv.

  Args:
    depth: 18, 34, 50, 101 or 152.
    width: channels of the stem and the first stage (64; the stages have w, 2w, 4w, 8w).
    shortcut: "projection" (a 1x1 conv + BatchNorm where the shape changes) or
      "projection_all" (in the first block of every stage, as the official model: ResNet-34
      then has one in stage 1 too).
    zero_init_residual: each block's last BatchNorm starts with gamma 0 (the official
      model's init_zero), so every block starts as its shortcut.
    **options: see common.Options.
  """
  if depth not in IMAGENET_DEPTHS:
    raise ConfigError(f"ImageNet ResNet depth must be one of {sorted(IMAGENET_DEPTHS)}, got "
                      f"{depth}")
  if shortcut not in ("projection", "projection_all"):
    raise ConfigError(f"an ImageNet ResNet's shortcut is 'projection' or 'projection_all', got "
                      f"{shortcut!r}")
  kind, blocks = IMAGENET_DEPTHS[depth]
  o = common.Options(**{"bn_momentum": 0.9, "bn_epsilon": 1e-5, "l2": 1e-4, **options})
  last_bn = o.bn_zero if zero_init_residual else o.bn
  inputs = keras.Input(input_shape)
  x = o.conv(width, 7, 2, name="stem_conv")(inputs)
  x = keras.layers.ReLU(name="stem_relu")(o.bn("stem_bn")(x))
  x = keras.layers.MaxPooling2D(3, 2, padding="same", name="stem_pool")(x)
  expansion = 4 if kind == "bottleneck" else 1
  for stage, (count, filters) in enumerate(zip(blocks, [width, 2 * width, 4 * width,
                                                        8 * width])):
    for block in range(count):
      stride = 2 if stage > 0 and block == 0 else 1
      name = f"stage{stage + 1}_block{block + 1}"
      if kind == "bottleneck":
        y = keras.layers.ReLU()(o.bn(f"{name}_bn1")(o.conv(filters, 1, name=f"{name}_conv1")(x)))
        y = keras.layers.ReLU()(o.bn(f"{name}_bn2")(o.conv(filters, 3, stride,
                                                          name=f"{name}_conv2")(y)))
        y = last_bn(f"{name}_bn3")(o.conv(4 * filters, 1, name=f"{name}_conv3")(y))
      else:
        y = keras.layers.ReLU()(o.bn(f"{name}_bn1")(o.conv(filters, 3, stride,
                                                          name=f"{name}_conv1")(x)))
        y = last_bn(f"{name}_bn2")(o.conv(filters, 3, name=f"{name}_conv2")(y))
      if block == 0 and (shortcut == "projection_all" or stride != 1
                         or x.shape[-1] != expansion * filters):
        x = o.bn(f"{name}_shortcut_bn")(o.conv(expansion * filters, 1, stride,
                                               name=f"{name}_shortcut")(x))
      x = keras.layers.ReLU(name=f"{name}_out")(keras.layers.Add(name=f"{name}_add")([x, y]))
  x = keras.layers.GlobalAveragePooling2D(name="pool")(x)
  outputs = o.dense(num_classes, name="logits")(x)
  return keras.Model(inputs, outputs, name=f"resnet{depth}")


def resnet50(num_classes: int = 1000, input_shape=(224, 224, 3), **options) -> keras.Model:
  """ResNet-50 (bottleneck blocks 3-4-6-3, stride on the 3x3 conv as in TF's official model)."""
  return imagenet_resnet(50, num_classes, input_shape, **options)
