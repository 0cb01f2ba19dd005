"""PruneSpec: how to prune, as one frozen value, validated once when it is made.

`tfrewind.prune(model, density, spec)`, `RewindCallback(..., prune=spec)` and the runner take
it; plain keywords stay accepted by both for convenience. TF-free.
"""

import dataclasses
from typing import Any, Dict, Optional

from tfrewind import registries
from tfrewind.errors import ConfigError
from tfrewind.pruning import masks as masks_lib


@dataclasses.dataclass(frozen=True)
class PruneSpec:
  """Everything a prune needs besides the model and the density.

  scope: "global" (one threshold over every kernel) or "layerwise".
  structure: a name of tfrewind.registries.STRUCTURES ("unstructured", "channel",
    "structured_a", "structured_b", or a user's).
  criterion: a name of tfrewind.registries.CRITERIA ("magnitude", "random", or a user's).
  count: channel structure: what a density counts, "weights" or "channels".
  classifier: channel structure: "fixed" (the output layer keeps its units) or "rows".
  level: structured_a/b: Li et al.'s ratios compound `level` times.
  seed: seed of random criteria and of controls.
  keep_dense: a regular expression on layer names: their kernels are never pruned.
  control: a name of tfrewind.registries.CONTROLS (shuffle_masks, ...), or None.
  n_m: structure n_m: keep N of every M, "N:M".
  target: what a density counts: "weights", or "macs" (tfrewind.pruning.target).
  """
  scope: str = "global"
  structure: str = "unstructured"
  criterion: str = "magnitude"
  count: str = "weights"
  classifier: str = "fixed"
  level: int = 1
  seed: int = 0
  keep_dense: Optional[str] = None
  control: Optional[str] = None
  n_m: str = "2:4"
  target: str = "weights"

  def __post_init__(self):
    if self.scope not in masks_lib.SCOPES:
      raise ConfigError(f"scope must be one of {masks_lib.SCOPES}, got {self.scope!r}")
    registries.structure(self.structure)
    registries.criterion(self.criterion)
    if self.count not in masks_lib.COUNTS:
      raise ConfigError(f"count must be one of {masks_lib.COUNTS}, got {self.count!r}")
    if self.classifier not in masks_lib.CLASSIFIERS:
      raise ConfigError(f"classifier must be one of {masks_lib.CLASSIFIERS}, got "
                        f"{self.classifier!r}")
    if int(self.level) != self.level or self.level < 1:
      raise ConfigError(f"level must be a positive integer, got {self.level!r}")
    if self.keep_dense is not None:
      masks_lib.keep_dense_pattern(self.keep_dense)
    if self.control is not None:
      registries.control(self.control)
    masks_lib.parse_n_m(self.n_m)
    if self.target not in masks_lib.TARGETS:
      raise ConfigError(f"target must be one of {masks_lib.TARGETS}, got {self.target!r}")

  @classmethod
  def from_hparams(cls, hp) -> "PruneSpec":
    """The spec of a run's settings (tfrewind.hparams.HParams)."""
    return cls(scope=hp.scope, structure=hp.structure, criterion=hp.criterion,
               count=hp.channel_count, classifier=hp.classifier, level=hp.level, seed=hp.seed,
               keep_dense=hp.keep_dense, control=hp.control, n_m=hp.n_m, target=hp.target)

  def kwargs(self) -> Dict[str, Any]:
    return dataclasses.asdict(self)
