"""Names of datasets and networks: what light commands need, without TensorFlow.

`tfrewind sweep --print`, `report` and flag validation read these tables; the
builders (tfrewind.data, tfrewind.models.registry) dispatch on the same names,
so a name is added in one place.
"""

import dataclasses
import re
from typing import Optional, Tuple

from tfrewind import registries


@dataclasses.dataclass(frozen=True)
class Dataset:
  num_classes: int
  train_size: Optional[int]  # None: set by a flag (synthetic)
  image_shape: Tuple[int, int, int] = (32, 32, 3)
  pad: int = 4  # reflection padding of the random crop
  flip: bool = True  # random horizontal flips
  streamed: bool = False  # read from disk every epoch (tfrewind.imagenet), not held in memory


DATASETS = {
    "cifar10": Dataset(num_classes=10, train_size=50000),
    "cifar100": Dataset(num_classes=100, train_size=50000),
    "synthetic": Dataset(num_classes=10, train_size=None),
    # scikit-learn's 8x8 handwritten digits (shipped inside the package, no download): a fixed
    # stratified 80/20 split; crops padded by 1 (4 of CIFAR's 32 pixels, scaled), no flips
    # (digits are not mirror-symmetric).
    "digits": Dataset(num_classes=10, train_size=1437, image_shape=(8, 8, 1), pad=1,
                      flip=False),
    # ILSVRC 2012 through tfds (its manual download); crops of --image_size (224), the original
    # study's TPU preprocessing (tfrewind.imagenet).
    "imagenet2012": Dataset(num_classes=1000, train_size=1281167, image_shape=(224, 224, 3),
                            pad=0, streamed=True),
}


def image_shape(dataset: str, image_size=None) -> Tuple[int, int, int]:
  """The network's input shape for `dataset`; --image_size sets a streamed set's crops."""
  shape = DATASETS[dataset].image_shape
  return (image_size, image_size, shape[2]) if image_size else shape

# (family, pattern): tfrewind.models.registry has one builder per family.
MODEL_FAMILIES = (
    ("imagenet_resnet", re.compile(r"resnet(18|34|50|101|152)")),
    ("cifar_resnet", re.compile(r"resnet(\d+)")),
    ("wrn", re.compile(r"wrn(\d+)_(\d+)")),
    ("vgg", re.compile(r"vgg(\d+)")),
)
MODEL_HELP = ("resnet<6n+2> (e.g. resnet20), wrn<depth>_<width> (wrn16_8), vgg11/13/16/19 or "
              "the ImageNet resnet18/34/50/101/152")


def match_model(name: str) -> Optional[Tuple[str, "re.Match"]]:
  """(family, match) of a network name, or None if no family has it."""
  for family, pattern in MODEL_FAMILIES:
    match = pattern.fullmatch(name)
    if match:
      return family, match
  return None


def num_classes(dataset: str) -> int:
  return DATASETS[dataset].num_classes

# CIFAR ResNet shortcuts (tfrewind.models.resnet): where the shape changes, everywhere, or zero-pad.
SHORTCUTS = ("projection", "projection_all", "pad")


def series(hp, total_steps=None) -> str:
  """What a run is called in progress lines and the report: its method, with the criterion,
  control and scoring step when not the defaults (lr_rewind_random, weight_rewind_snip_from0);
  a gradual run by its schedule and, given them, its total optimizer steps (gradual@600)."""
  if registries.schedule(hp.schedule).from_scratch:
    return hp.schedule + (f"@{total_steps}" if total_steps else "")
  return "_".join([hp.method] + ([hp.criterion] if hp.criterion != "magnitude" else [])
                  + ([hp.control] if hp.control else [])
                  + ([f"from{hp.to_steps('mask_from')}"] if hp.mask_from is not None else []))
