"""One table per axis of an experiment: pruning structures, criteria and schedules.

Retraining methods have theirs in tfrewind.plan (METHODS). Each entry declares its
name and help (the flags' help lists them), the settings it reads (run identity drops
the others), and what the report calls it. Run-folder names, progress lines, the sweep
grid, `sweep --print`, validation and the report read these tables, nothing else, so a
new structure, criterion or schedule is one entry; `tfrewind.register_structure`,
`register_criterion` and `register_method` add one from a user's module
(`tfrewind run --import=my_module ...`). Pure Python and NumPy: no TensorFlow.
"""

import dataclasses
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np

from tfrewind.errors import ConfigError


@dataclasses.dataclass(frozen=True)
class Structure:
  """What a prune removes.

  reads: the HParams "prune" settings it reads besides density, scope and criterion
    (the others do not enter its run folders' names).
  counts: what its --density counts (recorded in hparams.json); "" when pruned by level.
  by_level: pruned by --level (a fixed per-layer rule), not to a --density.
  silences_channels: removes whole output channels, so the BatchNorm after a pruned
    conv follows its mask (tfrewind.prunable(..., structure=...) builds ChannelNorms).
  masks: for a user's structure, `fn(weights, density, masks, scope, seed) -> masks`
    (NumPy kernels in, 0/1 float32 masks of the same shapes out, a subset of `masks`);
    the built-in ones are computed by tfrewind.pruning.masks.
  """
  name: str
  help: str
  label: str
  reads: Tuple[str, ...] = ()
  counts: str = "kernel weights"
  by_level: bool = False
  silences_channels: bool = False
  masks: Optional[Callable[..., List[np.ndarray]]] = None


@dataclasses.dataclass(frozen=True)
class Criterion:
  """How weights are scored; the structure's rule keeps the highest scores.

  score: `fn(weights, rng) -> scores`, one array of the kernel's shape per kernel (a
    channel scores the mean of its weights' scores); `rng` a seeded NumPy Generator.
  item_score: optional `fn(kernel, item_axis, rng) -> per-item scores` for channel
    structures (random draws one number per channel, not per weight).
  control: a control (random masks of the same counts): the report draws it apart.
  needs: what the criterion needs besides the kernels; "weights" alone for now
    (gradient criteria will declare training batches).
  """
  name: str
  help: str
  label: str
  score: Callable[[Sequence[np.ndarray], np.random.Generator], List[np.ndarray]]
  item_score: Optional[Callable[[np.ndarray, int, np.random.Generator], np.ndarray]] = None
  control: bool = False
  needs: Tuple[str, ...] = ("weights",)


@dataclasses.dataclass(frozen=True)
class Schedule:
  """When and how far a run prunes.

  densities: `fn(hp) -> the density after each round` (tfrewind.hparams.HParams).
  reads: the settings that make those densities (a run's identity keeps them).
  point: the setting that a sweep's --densities list varies (None: the rounds are the points).
  tag: in run-folder names: "os"; with `numbered`, "it" + the round.
  """
  name: str
  help: str
  label: str
  tag: str
  reads: Tuple[str, ...]
  densities: Callable[..., Tuple[float, ...]]
  point: Optional[str] = None
  numbered: bool = False


STRUCTURES: Dict[str, Structure] = {}
CRITERIA: Dict[str, Criterion] = {}
SCHEDULES: Dict[str, Schedule] = {}
# Modules imported with --import, in order: hparams.json records them.
IMPORTED: List[str] = []


def _add(table: Dict, entry, kind: str, replace: bool):
  if not entry.name or not entry.name.replace("_", "").isalnum():
    raise ConfigError(f"a {kind} name is letters, digits and '_' (it names run folders), got "
                      f"{entry.name!r}")
  if entry.name in table and not replace:
    raise ConfigError(f"{kind} {entry.name!r} is registered already: choose another name, or "
                      f"pass replace=True")
  table[entry.name] = entry
  return entry


def register_structure(name: str, masks: Callable[..., List[np.ndarray]], help: str = "",  # pylint: disable=redefined-builtin
                       label: Optional[str] = None, reads: Sequence[str] = (),
                       counts: str = "kernel weights", silences_channels: bool = False,
                       replace: bool = False) -> Structure:
  """Adds a structure whose masks `masks(weights, density, masks, scope, seed)` computes.

  Example:
    >>> def halves(weights, density, masks, scope, seed):  # keep the first half of each kernel
    ...   return [np.concatenate([np.ones(w.size // 2), np.zeros(w.size - w.size // 2)])
    ...           .reshape(w.shape).astype(np.float32) * m for w, m in zip(weights, masks)]
    >>> tfrewind.register_structure("halves", halves, help="the first half of each kernel")
  """
  return _add(STRUCTURES, Structure(name, help or name, label or name, tuple(reads), counts,
                                    silences_channels=silences_channels, masks=masks),
              "structure", replace)


def register_criterion(name: str, score: Callable, help: str = "",  # pylint: disable=redefined-builtin
                       label: Optional[str] = None, needs: Sequence[str] = ("weights",),
                       control: bool = False, replace: bool = False) -> Criterion:
  """Adds a criterion: `score(weights, rng)` -> same-shaped scores (higher is kept).

  Example:
    >>> tfrewind.register_criterion("squared", lambda ws, rng: [w.astype(np.float64) ** 2
    ...                                                          for w in ws])
  """
  unknown = sorted(set(needs) - {"weights"})
  if unknown:
    raise ConfigError(f"criterion {name!r} needs {', '.join(unknown)}: tfrewind gives a "
                      f"criterion the kernels ('weights') only")
  return _add(CRITERIA, Criterion(name, help or name, label or name, score, None, control,
                                  tuple(needs)), "criterion", replace)


def structure(name: str) -> Structure:
  if name not in STRUCTURES:
    raise ConfigError(f"unknown structure {name!r}: use {' or '.join(STRUCTURES)}")
  return STRUCTURES[name]


def criterion(name: str) -> Criterion:
  if name not in CRITERIA:
    raise ConfigError(f"unknown criterion {name!r}: use {' or '.join(CRITERIA)}")
  return CRITERIA[name]


def schedule(name: str) -> Schedule:
  if name not in SCHEDULES:
    raise ConfigError(f"unknown schedule {name!r}: use {' or '.join(SCHEDULES)}")
  return SCHEDULES[name]


def help_text(table: Dict) -> str:
  return "; ".join(f"{e.name}: {e.help}" for e in table.values())


# ---------------------------------------------------------------------------- built-ins
for _entry in (
    Structure("unstructured", "single weights", "unstructured"),
    Structure("channel", "whole output channels by mean score, one global threshold "
              "(Mikler)", "channel", reads=("channel_count", "classifier"),
              counts="kernel weights in whole channels (--channel_count=channels: channels)",
              silences_channels=True),
    # Li et al. (2017) L1 filter pruning, settings A and B, with the original study's layer
    # lists and ratios (tfrewind.pruning.masks.filter_masks, FILTER_SETTINGS).
    Structure("structured_a", "Li et al. 2017 L1 filter pruning, setting A, as Renda et al. "
              "ran it (ResNet-56/110, one-shot, --level)", "Structured-A", reads=("level",),
              counts="", by_level=True, silences_channels=True),
    Structure("structured_b", "Li et al.'s setting B, likewise", "Structured-B",
              reads=("level",), counts="", by_level=True, silences_channels=True)):
  STRUCTURES[_entry.name] = _entry

CRITERIA["magnitude"] = Criterion(
    "magnitude", "|w| (a channel: the mean |w| of its weights)", "magnitude",
    lambda weights, rng: [np.abs(np.asarray(w, np.float64)) for w in weights])
CRITERIA["random"] = Criterion(
    "random", "control: uniformly random scores, the same counts", "random",
    lambda weights, rng: [rng.random(np.shape(w)) for w in weights],
    item_score=lambda w, axis, rng: rng.random(w.shape[axis]), control=True)

SCHEDULES["one_shot"] = Schedule("one_shot", "prune once to --density", "one-shot", "os",
                                 reads=("density",), densities=lambda hp: (hp.density,),
                                 point="density")
# A round's run is named by its number, so --rounds (how many follow) is not read by one.
SCHEDULES["iterative"] = Schedule("iterative", "--rounds rounds, each keeping --rate of the "
                                  "remaining weights", "iterative", "it", reads=("rate",),
                                  densities=lambda hp: tuple(hp.rate ** k
                                                             for k in range(1, hp.rounds + 1)),
                                  numbered=True)
