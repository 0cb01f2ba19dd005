"""Protocols: where a paper's text and its code differ, one named set of choices. No TensorFlow.

The published figures came from the code, so a flag file that reproduces a figure runs its
code's protocol; `text` (the default) is what the papers write. Read from Mikler's code
(github sjmikler/reproducing-comparing-rewinding-and-finetuning): `training/run.py` builds a
fresh optimizer for every experiment and Keras' PiecewiseConstantDecay reads
`optimizer.iterations`, which `fit(initial_epoch=...)` does not move; `training/datasets.py`
standardises CIFAR-10 and CIFAR-100 alike with CIFAR-10's constants. Read from the original's code
(github lottery-ticket/rewinding-iclr20-public, vision/): its LR is
`tf.train.piecewise_constant` (the old value at the boundary step); rewinding restores the
global step with the weights, as its text says; its CIFAR input (official/resnet/cifar10_main.py)
pads with zeros before the random crop and standardises each image alone. The README's table
lists what is not modelled.
"""

import dataclasses
from typing import Dict

from tfrewind.errors import ConfigError


@dataclasses.dataclass(frozen=True)
class Protocol:
  name: str
  help: str
  # Weight rewinding replays the LR schedule from step 0 (a fresh optimizer's counter) over
  # its N - K steps, instead of resuming it at K.
  rewind_lr_from_zero: bool = False
  # At step == boundary the old LR still applies (Keras' PiecewiseConstantDecay).
  old_lr_at_boundary: bool = False
  # Every CIFAR is standardised with CIFAR-10's per-channel mean and std.
  cifar10_statistics: bool = False
  # Each image standardised by its own mean and std (tf.image.per_image_standardization),
  # after a random crop of the zero-padded image (not reflection-padded).
  per_image_standardization: bool = False
  zero_padding: bool = False
  # CIFAR ResNets built as TF's official ResNet v1 (official/resnet/resnet_model.py): a 1x1
  # projection in the first block of every stage, explicit padding of strided convs, the
  # classifier from N(0, 0.01), L2 on every trainable variable (tfrewind.models.common.Options).
  tf_official_resnet: bool = False
  # ImageNet ResNets built as the original's TPU code (tpu-src/models/official/resnet/
  # resnet_model.py): the same, and each block's last BatchNorm gamma from 0, a fan-in variance
  # scaling init, L2 1e-4 * tf.nn.l2_loss on every trainable variable but BatchNorm's.
  tf_official_imagenet: bool = False

  def model_options(self, family: str = "cifar_resnet") -> Dict[str, object]:
    """build_model overrides of a network family (tfrewind.names) under this protocol."""
    if family == "cifar_resnet" and self.tf_official_resnet:
      return {"shortcut": "projection_all", "fixed_padding": True, "classifier_stddev": 0.01,
              "decay_all": True}
    if family == "imagenet_resnet" and self.tf_official_imagenet:
      return {"shortcut": "projection_all", "fixed_padding": True, "classifier_stddev": 0.01,
              "zero_init_residual": True, "initializer": "variance_scaling", "l2": 5e-5,
              "decay_bias": True}
    return {}


PROTOCOLS: Dict[str, Protocol] = {
    "text": Protocol("text", "what the papers' text says (Renda et al. 2020, Mikler 2021)"),
    "mikler_code": Protocol(
        "mikler_code", "what the reproduction's code ran, which made its figures",
        rewind_lr_from_zero=True, old_lr_at_boundary=True, cifar10_statistics=True),
    # tf.compat.v1.train.piecewise_constant, read in the original's resnet_run_loop.py.
    "renda_code": Protocol(
        "renda_code", "what the original study's code ran (the LR steps at a boundary one step "
        "late; each image standardised alone after a crop of the zero-padded image; TF's "
        "official ResNet v1)",
        old_lr_at_boundary=True, per_image_standardization=True, zero_padding=True,
        tf_official_resnet=True),
    # resnet_main.py's learning_rate_schedule: the new LR from the first step whose (float)
    # epoch reaches a boundary; its warm-up is --lr_warmup.
    "renda_tpu_code": Protocol(
        "renda_tpu_code", "what the original study's TPU ImageNet code ran (TF's official "
        "ResNet v1.5 with zero-initialised last BatchNorms; the LR from a boundary step on)",
        tf_official_imagenet=True),
}


def get(name: str) -> Protocol:
  if name not in PROTOCOLS:
    raise ConfigError(f"unknown --protocol={name!r}: use one of {', '.join(PROTOCOLS)}")
  return PROTOCOLS[name]
