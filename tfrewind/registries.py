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
import importlib
from typing import Callable, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np

from tfrewind.errors import ConfigError
from tfrewind.pruning import controls


@dataclasses.dataclass(frozen=True)
class Structure:
  """What a prune removes.

  reads: the HParams "prune" settings it reads besides density, scope and criterion
    (the others do not enter its run folders' names).
  counts: what its --density counts (recorded in hparams.json); "" when pruned by level.
  by_level: pruned by --level (a fixed per-layer rule), not to a --density.
  silences_channels: removes whole output channels, so the BatchNorm after a pruned
    conv follows its mask (tfrewind.prunable(..., structure=...) builds ChannelNorms).
  groups: prunes coupled channel groups (tfrewind.pruning.groups), each channel scored by
    its members' mean score: "raw" as it is, "mean" divided by the mean of its group's
    channels (Torch-Pruning's normalizer="mean": every group loses a like share).
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
  groups: Optional[str] = None
  masks: Optional[Callable[..., List[np.ndarray]]] = None
  # `fn(hp)` raising ConfigError for settings it cannot prune with (before any training).
  check: Optional[Callable[..., None]] = None
  # Its own rule sets the density (`fn(hp) -> density`, N:M's N/M): --density is not read.
  density: Optional[Callable[..., float]] = None


@dataclasses.dataclass(frozen=True)
class Criterion:
  """How weights are scored; the structure's rule keeps the highest scores.

  score: with needs ("weights",): `fn(weights, rng) -> scores`, one array of the kernel's
    shape per kernel (a channel scores the mean of its weights' scores); `rng` a seeded NumPy
    Generator. A criterion that needs "model" scores the network itself:
    `fn(model, context) -> scores` (tfrewind.pruning.saliency.Context: the training batches,
    the rng, the density and the PruneSpec); it may be given as "module:function", imported
    on first use, so that this table stays free of TensorFlow.
  item_score: optional `fn(kernel, item_axis, rng) -> per-item scores` for channel
    structures (random draws one number per channel, not per weight).
  control: a control (random masks of the same counts): the report draws it apart.
  needs: "weights" (the kernels alone), or "model" and, for gradient criteria, "batches"
    (--criterion_batches training batches in the seed's data order).
  reads: the HParams settings the scores depend on (a run's identity keeps them).
  per_density: the scores hold for one density only (SynFlow prunes iteratively towards it):
    they are cached per density, not once per network and step.
  """
  name: str
  help: str
  label: str
  score: Union[str, Callable[..., List[np.ndarray]]]
  item_score: Optional[Callable[[np.ndarray, int, np.random.Generator], np.ndarray]] = None
  control: bool = False
  needs: Tuple[str, ...] = ("weights",)
  reads: Tuple[str, ...] = ()
  per_density: bool = False
  colour: str = ""  # of its series in the report (default: the method's, or grey for a control)
  # fetch: how it draws its data from the training stream, `fn(batches, model) -> [(x, y)]`
  #   (default: the first --criterion_batches batches); "module:function" as for score.
  fetch: Union[str, Callable[..., list], None] = None
  # keep: its own keep rule, `fn(scores, density) -> masks` over the kernels not kept dense,
  #   in place of the structure's (only with one global unstructured prune).
  keep: Union[str, Callable[..., List[np.ndarray]], None] = None

  @property
  def scores_model(self) -> bool:
    return "model" in self.needs

  def score_fn(self) -> Callable[..., List[np.ndarray]]:
    return _resolved(self.score)

  def fetch_fn(self) -> Optional[Callable[..., list]]:
    return None if self.fetch is None else _resolved(self.fetch)

  def keep_fn(self) -> Optional[Callable[..., List[np.ndarray]]]:
    return None if self.keep is None else _resolved(self.keep)


def _resolved(fn):
  """A callable, or "module:function" imported on first use (keeps this table TF-free)."""
  if isinstance(fn, str):
    module, _, name = fn.partition(":")
    return getattr(importlib.import_module(module), name)
  return fn


@dataclasses.dataclass(frozen=True)
class Control:
  """A control applied after the prune, in each pruned kernel, per-layer counts unchanged (the
  reproduction's apply_pruning_masks): `apply(kernel, mask, rng) -> (kernel, mask)`, NumPy."""
  name: str
  help: str
  label: str
  apply: Callable[[np.ndarray, np.ndarray, np.random.Generator], Tuple[np.ndarray, np.ndarray]]
  colour: str = "dimgrey"


@dataclasses.dataclass(frozen=True)
class Schedule:
  """When and how far a run prunes.

  densities: `fn(hp) -> the density after each round` (tfrewind.hparams.HParams).
  reads: the settings that make those densities (a run's identity keeps them).
  point: the setting that a sweep's --densities list varies (None: the rounds are the points).
  tag: in run-folder names: "os"; with `numbered`, "it" + the round.
  from_scratch: the run prunes while it trains from initialisation (gradual): no dense
    network, no retraining method (its identity drops the method's settings).
  check: `fn(hp) -> None`, raising ConfigError for settings this schedule cannot run.
  """
  name: str
  help: str
  label: str
  tag: str
  reads: Tuple[str, ...]
  densities: Callable[..., Tuple[float, ...]]
  point: Optional[str] = None
  numbered: bool = False
  from_scratch: bool = False
  check: Optional[Callable[..., None]] = None
  figure: Optional[str] = None  # the schedule whose report figure draws its runs


# What a criterion may need (Criterion.needs).
NEEDS = ("weights", "model", "batches")
STRUCTURES: Dict[str, Structure] = {}
CRITERIA: Dict[str, Criterion] = {}
SCHEDULES: Dict[str, Schedule] = {}
CONTROLS: Dict[str, Control] = {}
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


def register_criterion(name: str, score: Union[str, Callable], help: str = "",  # pylint: disable=redefined-builtin
                       label: Optional[str] = None, needs: Sequence[str] = ("weights",),
                       control: bool = False, reads: Sequence[str] = (),
                       per_density: bool = False, replace: bool = False) -> Criterion:
  """Adds a criterion: `score(weights, rng)` -> same-shaped scores (higher is kept); with
  needs=("model", "batches"), `score(model, context)` (see Criterion).

  Example:
    >>> tfrewind.register_criterion("squared", lambda ws, rng: [w.astype(np.float64) ** 2
    ...                                                          for w in ws])
  """
  unknown = sorted(set(needs) - set(NEEDS))
  if unknown or not needs or ("batches" in needs and "model" not in needs):
    raise ConfigError(f"criterion {name!r} needs {', '.join(needs) or 'nothing'}: a criterion "
                      f"needs 'weights' (the kernels), or 'model' and optionally 'batches'")
  return _add(CRITERIA, Criterion(name, help or name, label or name, score, None, control,
                                  tuple(needs), tuple(reads), per_density), "criterion",
              replace)


def register_control(name: str, apply: Callable, help: str = "",  # pylint: disable=redefined-builtin
                     label: Optional[str] = None, replace: bool = False) -> Control:
  """Adds a control: `apply(kernel, mask, rng) -> (kernel, mask)`, per pruned kernel."""
  return _add(CONTROLS, Control(name, help or name, label or name, apply), "control", replace)


def structure(name: str) -> Structure:
  if name not in STRUCTURES:
    raise ConfigError(f"unknown structure {name!r}: use {' or '.join(STRUCTURES)}")
  return STRUCTURES[name]


def criterion(name: str) -> Criterion:
  if name not in CRITERIA:
    raise ConfigError(f"unknown criterion {name!r}: use {' or '.join(CRITERIA)}")
  return CRITERIA[name]


def control(name: str) -> Control:
  if name not in CONTROLS:
    raise ConfigError(f"unknown control {name!r}: use {' or '.join(CONTROLS)}")
  return CONTROLS[name]


def schedule(name: str) -> Schedule:
  if name not in SCHEDULES:
    raise ConfigError(f"unknown schedule {name!r}: use {' or '.join(SCHEDULES)}")
  return SCHEDULES[name]


def parse_n_m(text: str) -> Tuple[int, int]:
  """'2:4' -> (2, 4): keep N of every M (ConfigError unless 0 < N < M)."""
  try:
    n, m = (int(p) for p in str(text).split(":"))
  except ValueError:
    raise ConfigError(f"--n_m={text!r} is not N:M: write e.g. 2:4") from None
  if not 0 < n < m:
    raise ConfigError(f"--n_m={text!r}: keep N of every M with 0 < N < M, e.g. 2:4")
  return n, m


def _n_over_m(text: str) -> float:
  n, m = parse_n_m(text)
  return n / m


def _check_n_m(hp) -> None:
  parse_n_m(hp.n_m)
  if hp.schedule != "one_shot":
    raise ConfigError("--structure=n_m prunes once, to N of every M: use --schedule=one_shot")


def check_group_scope(structure: str, scope: str) -> None:
  """Coupled channel groups are pruned under one global threshold: ConfigError otherwise."""
  if scope != "global":
    raise ConfigError(f"--structure={structure} prunes under one global threshold: use "
                      "--scope=global")


def _check_groups(hp) -> None:
  check_group_scope(hp.structure, hp.scope)


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
              reads=("level",), counts="", by_level=True, silences_channels=True),
    # Torch-Pruning's dependency groups, from the graph (tfrewind.pruning.groups).
    Structure("channel_group", "coupled channel groups: a residual stage's channel goes from "
              "every writer and reader at once (and its BatchNorms), so that slim removes it; "
              "groups scored by the mean |w| of their members, one global threshold",
              "channel group", counts="kernel weights in whole coupled channels",
              silences_channels=True, groups="raw", check=_check_groups),
    Structure("channel_group_mean", "channel_group with each channel's score divided by its "
              "group's mean (Torch-Pruning's normalizer='mean'): every stage keeps a like share, "
              "where the raw scores of He-initialised deep stages empty them first",
              "channel group (normalised)", counts="kernel weights in whole coupled channels",
              silences_channels=True, groups="mean", check=_check_groups),
    # TF-MOT's sparsity_m_by_n layout (tfrewind.pruning.masks.n_m_masks): sparse tensor cores.
    Structure("n_m", "--n_m=N:M: in every M consecutive weights along a kernel's input "
              "channels keep the N largest (2:4, sparse tensor cores); density N/M, a kernel "
              "whose input size M does not divide stays dense", "N:M", reads=("n_m",),
              counts="N of every M consecutive input weights",
              density=lambda hp: _n_over_m(hp.n_m), check=_check_n_m)):
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


def gradual_steps(hp) -> Tuple[int, int, int]:
  """(begin, end, every) of a gradual run in iterations; the end defaults to the first LR
  boundary (Zhu & Gupta prune while the LR is high), else the end of training."""
  n = hp.cycle_steps
  end = hp.to_steps("gradual_end")
  if end is None:
    end = hp.boundaries[0] if hp.boundaries else n
  return hp.to_steps("gradual_begin"), end, hp.to_steps("gradual_every")


def _check_gradual(hp) -> None:
  begin, end, every = gradual_steps(hp)
  if not begin < end <= hp.cycle_steps:
    raise ConfigError(f"--gradual_begin={hp.gradual_begin} and --gradual_end="
                      f"{hp.gradual_end or end} must satisfy begin < end <= --train_steps "
                      f"({hp.cycle_steps} iterations)")
  if (end - begin) % every:
    raise ConfigError(f"--gradual_every={hp.gradual_every} does not divide the pruning span "
                      f"{begin}..{end}: the last prune would be at step "
                      f"{begin + (end - begin) // every * every}, short of --density (TF-MOT "
                      f"prunes at begin + k * every only); choose a divisor of {end - begin}")
  if hp.by_level:
    raise ConfigError(f"--structure={hp.structure} prunes by level, once: use --schedule=one_shot")
  if criterion(hp.criterion).scores_model or hp.mask_from is not None:
    raise ConfigError(f"--schedule=gradual prunes by the current weights at each step: it takes "
                      f"a weight criterion (magnitude, random), not --criterion={hp.criterion}"
                      + (" or --mask_from" if hp.mask_from is not None else ""))
  if hp.control is not None:
    raise ConfigError("--control shuffles a one-shot or iterative prune: leave it out with "
                      "--schedule=gradual")


# Zhu & Gupta (2017): s_t = s_f + (s_i - s_f)(1 - (t - t0) / (t_end - t0))^p, pruned every
# --gradual_every steps, as TF-MOT's PolynomialDecay (tfrewind.gradual evaluates that itself).
SCHEDULES["gradual"] = Schedule(
    "gradual", "Zhu & Gupta's gradual magnitude pruning while training from scratch: the "
    "density falls from 1 to --density between --gradual_begin and --gradual_end, a prune every "
    "--gradual_every steps (power --gradual_power); no dense network, no retraining method",
    "gradual (GMP)", "gmp", reads=("density", "gradual_begin", "gradual_end", "gradual_every",
                                   "gradual_power"),
    densities=lambda hp: (hp.density,), point="density", from_scratch=True, check=_check_gradual,
    figure="one_shot")

# Gradient and data-free criteria (tfrewind.pruning.saliency computes them on the network).
CRITERIA["snip"] = Criterion(
    "snip", "SNIP (Lee et al. 2019), the reproduction's snip_saliences: |w * sum of gradients| "
    "over --criterion_batches training batches", "SNIP", "tfrewind.pruning.saliency:snip",
    needs=("model", "batches"), reads=("criterion_batches",), colour="tab:cyan")
CRITERIA["grasp"] = Criterion(
    "grasp", "GraSP (Wang et al. 2020): keeps the lowest -w * (H g) over --criterion_batches "
    "batches (logits / 200, as its code)", "GraSP", "tfrewind.pruning.saliency:grasp",
    needs=("model", "batches"), reads=("criterion_batches",), colour="tab:olive")
CRITERIA["grasp_code"] = Criterion(
    "grasp_code", "GraSP as its released code (alecwangcq/GraSP, pruner/GraSP.py): BatchNorm in "
    "training mode, every Dense kernel re-drawn (xavier_normal) for scoring, 10 training samples "
    "per class in two halves, and its keep rule (int() of the count to remove, scores <= the "
    "threshold kept); needs one global unstructured prune", "GraSP (code)",
    "tfrewind.pruning.saliency:grasp_code", needs=("model", "batches"), colour="olive",
    fetch="tfrewind.pruning.saliency:grasp_code_samples",
    keep="tfrewind.pruning.masks:grasp_code_keep")
CRITERIA["synflow"] = Criterion(
    "synflow", "SynFlow (Tanaka et al. 2020): data-free, --synflow_rounds prunes on |w| with an "
    "all-ones input, densities falling exponentially to the target", "SynFlow",
    "tfrewind.pruning.saliency:synflow", needs=("model",), reads=("synflow_rounds",),
    per_density=True, colour="tab:purple")


# The reproduction's controls (its pruning/tools.py), each in one pruned kernel.
for _entry in (
    Control("shuffle_masks", "control: each pruned kernel's mask permuted, weights kept",
            "shuffled masks", controls.shuffle_masks, "dimgrey"),
    Control("shuffle_weights", "control: each kernel's kept weights permuted among its kept "
            "positions", "shuffled weights", controls.shuffle_weights, "darkgrey"),
    Control("shuffle_layers", "control: each kernel's weights and mask permuted together",
            "shuffled layers", controls.shuffle_layers, "lightslategrey")):
  CONTROLS[_entry.name] = _entry
