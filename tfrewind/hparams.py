"""Hyper-parameters: one frozen dataclass, one source of truth for every setting.

Each field carries its help text and the part of the experiment it belongs to
("data", "model", "train" make the dense network; "prune" and "retrain" a
branch off it; "run" changes how, not what, is computed). Command-line flags
are generated from the fields (tfrewind/cli.py); flag files only override.

Step counts take units: "8000it" (iterations), "4ep" (epochs of
`epoch_steps` iterations), or a bare integer (iterations).
"""

import dataclasses
import hashlib
import json
import math
import re
from typing import Any, Dict, List, Optional, Tuple

from tfrewind import names
from tfrewind import plan as plan_lib
from tfrewind import protocols
from tfrewind import registries
from tfrewind.steps import (BOUNDS, bounds_text, expand_densities, out_of_bounds,  # noqa: F401
                            parse_steps, STEPS_RE)
from tfrewind.pruning import masks as masks_lib
from tfrewind.errors import ConfigError

DENSE_GROUPS = ("data", "model", "train")
BRANCH_GROUPS = ("prune", "retrain")


def _f(default, group, help_text, **kw):
  return dataclasses.field(default=default, metadata={"group": group, "help": help_text, **kw})


@dataclasses.dataclass(frozen=True)
class HParams:
  """One run: a dense network, or one retraining branch (one method, one density/schedule)."""
  # data
  dataset: str = _f("cifar10", "data", "cifar10, cifar100, digits (scikit-learn's 8x8 digits, "
                     "offline) or synthetic (offline, in memory)")
  data_dir: Optional[str] = _f(None, "run", "tensorflow-datasets folder (default "
                               "$TFDS_DATA_DIR or ~/tensorflow_datasets)")
  download: bool = _f(True, "run", "let tfds download CIFAR when it is not in --data_dir")
  validation: bool = _f(False, "data", "hold out Renda's fixed 2,000 test images for validation")
  synthetic_size: int = _f(5000, "data", "training images of the synthetic dataset", min=1)
  batch_size: int = _f(128, "data", "global batch size", min=1)
  image_size: Optional[int] = _f(None, "data", "imagenet2012: side of the square crops (224)",
                                 min=8)
  # model
  model: str = _f("resnet20", "model", names.MODEL_HELP)
  width: Optional[int] = _f(None, "model", "first-stage width of a ResNet (CIFAR 16, ImageNet 64)",
                            min=1)
  bn_momentum: Optional[float] = _f(None, "model", "BatchNorm decay (network default)", min=0,
                                   below=1)
  bn_epsilon: Optional[float] = _f(None, "model", "BatchNorm epsilon (network default)",
                                  above=0)
  weight_decay: Optional[float] = _f(None, "model", "L2 on kernels (network default)", min=0)
  initializer: Optional[str] = _f(None, "model", "kernel initializer (he_uniform)")
  shortcut: Optional[str] = _f(None, "model", "CIFAR ResNet shortcut: projection (where the "
                               "shape changes), projection_all (also in stage 1, TF's official "
                               "ResNet) or pad")
  # dense training
  train_steps: str = _f("72000it", "train", "N: length of the dense training cycle", min=1)
  epoch_steps: Optional[str] = _f(None, "train", "iterations per epoch, for units, evaluation "
                                  "and checkpoints (default: one pass over the data)", min=1)
  lr: float = _f(0.1, "train", "initial learning rate", above=0)
  lr_boundaries: Tuple[str, ...] = _f(("36000it", "54000it"), "train",
                                      "steps at which the LR is multiplied by lr_factor (empty: a "
                                      "constant LR)", min=1, empty="a constant LR")
  lr_factor: float = _f(0.1, "train", "LR decay factor at each boundary", above=0)
  lr_warmup: float = _f(0.0, "train", "epochs of linear LR warm-up from 0, an epoch being "
                        "exactly training images / batch (the original's ImageNet code: 5)", min=0)
  momentum: float = _f(0.9, "train", "SGD momentum", min=0, below=1)
  nesterov: bool = _f(True, "train", "Nesterov momentum (Mikler) or heavy ball (Renda)")
  seed: int = _f(1, "train", "seed of initialisation, data order and augmentation", min=0)
  mixed_precision: bool = _f(False, "train", "train in mixed_float16 (masks stay float32)")
  protocol: str = _f("text", "train", "; ".join(f"{p.name}: {p.help}"
                                                for p in protocols.PROTOCOLS.values()))
  # pruning
  schedule: str = _f("one_shot", "prune", registries.help_text(registries.SCHEDULES))
  density: float = _f(0.2, "prune", "one_shot: fraction of prunable weights kept", above=0,
                       max=1)
  rate: float = _f(0.8, "prune", "iterative: fraction of the remaining weights kept per round",
                    above=0, below=1)
  rounds: int = _f(1, "prune", "iterative: rounds (densities rate**1 .. rate**rounds)", min=1)
  scope: str = _f("global", "prune", "global (one threshold) or layerwise")
  structure: str = _f("unstructured", "prune", registries.help_text(registries.STRUCTURES))
  channel_count: str = _f("weights", "prune", "channel: what a density counts, kernel weights "
                          "(the reproduction's axis) or channels")
  classifier: str = _f("fixed", "prune", "channel: the classifier keeps its units (fixed) or "
                       "loses input rows like channels (rows, the reproduction's rule)")
  level: int = _f(1, "prune", "structured_a/b: Li et al.'s ratios compound level times "
                  "(1-(1-r)^level of each listed conv's filters; the released trials: 1..5)", min=1)
  criterion: str = _f("magnitude", "prune", registries.help_text(registries.CRITERIA))
  n_m: str = _f("2:4", "prune", "n_m: keep N of every M consecutive input weights",
                pattern=r"\d+:\d+", example="N:M, e.g. 2:4")
  target: str = _f("weights", "prune", "what --density counts: weights (prunable kernel "
                   "weights) or macs (the fraction of a forward pass's MACs kept, tfrewind.flops)",
                   choices=masks_lib.TARGETS)
  criterion_batches: int = _f(1, "prune", "snip/grasp: training batches they score, the first "
                              "of the seed's dense data order", min=1)
  synflow_rounds: int = _f(100, "prune", "synflow: prunes towards the density, exponentially "
                           "spaced", min=1)
  mask_from: Optional[str] = _f(None, "prune", "the dense-trunk step whose network the criterion "
                                "scores, 0 the initialisation (default: the end of dense "
                                "training)", min=0)
  control: Optional[str] = _f(None, "prune", registries.help_text(registries.CONTROLS))
  keep_dense: Optional[str] = _f(None, "prune", "regular expression on layer names whose kernels "
                                 "are never pruned, e.g. 'stem_conv|logits'; the density counts "
                                 "the other kernels")
  gradual_begin: str = _f("0it", "prune", "gradual: the first prune's step", min=0)
  gradual_end: Optional[str] = _f(None, "prune", "gradual: the step where the density reaches "
                                  "--density (default: the first LR boundary, else the end)",
                                  min=1)
  gradual_every: str = _f("100it", "prune", "gradual: steps between prunes (TF-MOT's frequency)",
                          min=1)
  gradual_power: float = _f(3.0, "prune", "gradual: the polynomial's exponent p", above=0)
  # retraining
  method: str = _f("lr_rewind", "retrain", "; ".join(
      f"{m.name}: {m.help}" for m in plan_lib.METHODS.values()))
  rewind_step: str = _f("8000it", "retrain", "K: weight rewinding restores step K", min=0)
  finetune_lr: float = _f(0.001, "retrain", "constant LR of fine-tuning", above=0)
  warmup: float = _f(0.1, "retrain", "slr/clr: linear warm-up from lr_min to lr_max, a "
                     "fraction of the round's T steps (W = round(warmup * T))", min=0, max=1)
  retrain: Optional[str] = _f(None, "retrain", "T: retraining budget per round (method default)",
                             min=1)
  weights_from: Optional[str] = _f(None, "retrain", "custom: restore weights of this step "
                                   "(unset: keep trained weights)", min=0)
  lr_from: Optional[str] = _f(None, "retrain", "custom: replay the LR from this step "
                              "(unset: constant finetune_lr)", min=0)
  data_order: int = _f(0, "retrain", "retraining data order and augmentation: 0 the run's own, "
                       "k > 0 another (tfrewind stability's copy B)", min=0)
  reset_momentum: bool = _f(True, "retrain", "fresh optimizer state at every prune (Mikler)")
  restore_optimizer: bool = _f(True, "retrain", "weight rewinding restores step K's momentum "
                               "(Renda; irrelevant with reset_momentum)")

  # ------------------------------------------------------------------ derived values
  def steps_per_epoch(self, data_steps: Optional[int] = None) -> int:
    """Iterations per epoch: epoch_steps, else one pass over the training set."""
    if self.epoch_steps is not None:
      return parse_steps(self.epoch_steps, None, "epoch_steps")
    if data_steps is not None:
      return data_steps
    return max(train_size(self) // self.batch_size, 1)

  def to_steps(self, name: str) -> Optional[int]:
    value = getattr(self, name)
    return None if value is None else parse_steps(value, self.steps_per_epoch(), name)

  @property
  def cycle_steps(self) -> int:
    return self.to_steps("train_steps")

  @property
  def boundaries(self) -> List[int]:
    return [parse_steps(b, self.steps_per_epoch(), "lr_boundaries") for b in self.lr_boundaries]

  @property
  def by_level(self) -> bool:
    """Pruned by --level (structured_a/b: Li et al.'s ratios), not to a density: the
    structure's registry entry says so."""
    entry = registries.STRUCTURES.get(self.structure)
    return bool(entry and entry.by_level)

  @property
  def densities(self) -> Tuple[float, ...]:
    """The density after each round, by the schedule's registry entry (or the structure's,
    when its rule sets the density: N:M)."""
    entry = registries.STRUCTURES.get(self.structure)
    if entry is not None and entry.density is not None:
      return (entry.density(self),)
    return registries.schedule(self.schedule).densities(self)

  def plan(self) -> plan_lib.Retrain:
    return plan_lib.retrain_plan(self.method, self.cycle_steps, self.to_steps("rewind_step"),
                                 self.to_steps("retrain"), self.to_steps("weights_from"),
                                 self.to_steps("lr_from"), self.warmup, self.protocol)

  def model_overrides(self) -> Dict[str, Any]:
    """build_model overrides: the protocol's network (a CIFAR ResNet), then explicit flags."""
    fields = {"width": "width", "bn_momentum": "bn_momentum", "bn_epsilon": "bn_epsilon",
              "weight_decay": "l2", "initializer": "initializer", "shortcut": "shortcut"}
    found = names.match_model(self.model)
    out = dict(protocols.get(self.protocol).model_options(found[0])
               if found and self.protocol in protocols.PROTOCOLS else {})
    out.update({arg: getattr(self, f) for f, arg in fields.items() if getattr(self, f) is not None})
    return out

  # ------------------------------------------------------------------ identity
  def canonical(self, groups) -> Dict[str, Any]:
    """Non-default values of the given groups, step counts resolved to iterations."""
    out = {}
    for f in dataclasses.fields(self):
      if f.metadata["group"] not in groups:
        continue
      value = getattr(self, f.name)
      if f.name in STEP_FIELDS:
        value = None if value is None else (
            [parse_steps(v, self.steps_per_epoch(), f.name) for v in value]
            if isinstance(value, tuple) else parse_steps(value, self.steps_per_epoch(), f.name))
      default = f.default
      if f.name in STEP_FIELDS and default is not None:
        default = ([parse_steps(v, self.steps_per_epoch(), f.name) for v in default]
                   if isinstance(default, tuple) else
                   parse_steps(default, self.steps_per_epoch(), f.name))
      if value != default:
        out[f.name] = list(value) if isinstance(value, tuple) else value
    return out

  def to_json(self) -> Dict[str, Any]:
    return {f.name: (list(v) if isinstance(v, tuple) else v)
            for f in dataclasses.fields(self) for v in [getattr(self, f.name)]}

  @classmethod
  def from_json(cls, d: Dict[str, Any]) -> "HParams":
    """The HParams of a stored hparams.json; a key this version does not know is an error."""
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(d) - known)
    if unknown:
      raise ConfigError(f"hparams with unknown key(s) {unknown}: written by another version of "
                       f"tfrewind; use that version, or a new --root")
    return cls(**{k: (tuple(v) if isinstance(v, list) else v) for k, v in d.items()})

  # ------------------------------------------------------------------ validation
  def validate(self) -> "HParams":
    """Raises ValueError with one clear sentence for any inconsistent setting."""
    for f in dataclasses.fields(self):  # types and declared bounds (batch_size >= 1, ...)
      problem = check_field(f.name, getattr(self, f.name))
      if problem:
        raise ConfigError(f"--{f.name}={_shown(getattr(self, f.name))}: {problem}")
    if self.dataset not in names.DATASETS:
      raise ConfigError(f"unknown --dataset={self.dataset!r}: choose one of "
                       f"{', '.join(names.DATASETS)}")
    if self.image_size is not None and not names.DATASETS[self.dataset].streamed:
      raise ConfigError(f"--image_size sets ImageNet's crops; {self.dataset}'s images are "
                        f"{names.DATASETS[self.dataset].image_shape[0]} pixels: leave it out")
    if self.validation and names.DATASETS[self.dataset].streamed:
      raise ConfigError(f"--validation holds out 2,000 CIFAR test images; {self.dataset} "
                        f"evaluates on ILSVRC's 50,000 validation images: leave it out")
    if names.match_model(self.model) is None:
      raise ConfigError(f"unknown --model={self.model!r}: use {names.MODEL_HELP}")
    if self.shortcut is not None and self.shortcut not in names.SHORTCUTS:
      raise ConfigError(f"unknown --shortcut={self.shortcut!r}: use {' or '.join(names.SHORTCUTS)}")
    if not self.lr > 0 or not self.finetune_lr > 0 or math.isinf(self.lr):
      raise ConfigError(f"learning rates must be positive, got --lr={self.lr} "
                       f"--finetune_lr={self.finetune_lr}")
    protocols.get(self.protocol)
    self.steps_per_epoch()
    n = self.cycle_steps
    if n < 1:
      raise ConfigError(f"--train_steps must be positive, got {self.train_steps}")
    if any(not 0 < b < n for b in self.boundaries):
      raise ConfigError(f"--lr_boundaries {list(self.lr_boundaries)} must lie inside the "
                       f"cycle (0, {n})")
    for name, table in (("schedule", registries.SCHEDULES), ("structure", registries.STRUCTURES),
                        ("criterion", registries.CRITERIA)):
      if getattr(self, name) not in table:
        raise ConfigError(f"unknown --{name}={getattr(self, name)!r}: use {' or '.join(table)}")
    masks_lib.check_density(self.density)
    for name, allowed in (("scope", masks_lib.SCOPES), ("channel_count", masks_lib.COUNTS),
                          ("classifier", masks_lib.CLASSIFIERS)):
      if getattr(self, name) not in allowed:
        raise ConfigError(f"unknown --{name}={getattr(self, name)!r}: use {' or '.join(allowed)}")
    if self.control is not None:
      registries.control(self.control)
    if self.target == "macs" and (self.by_level or registries.structure(self.structure).density):
      raise ConfigError(f"--target=macs sets a density: --structure={self.structure} sets its own")
    if registries.criterion(self.criterion).keep:
      masks_lib.check_own_keep(self.criterion, self.scope, self.structure)
    structure_check = registries.structure(self.structure).check
    if structure_check is not None:
      structure_check(self)
    if self.keep_dense is not None:
      masks_lib.keep_dense_pattern(self.keep_dense)
    check = registries.schedule(self.schedule).check
    if check is not None:
      check(self)
    if self.by_level:
      nets = masks_lib.filter_networks(self.structure)
      if self.model not in nets:
        raise ConfigError(f"--structure={self.structure} (Li et al. 2017) is defined for "
                         f"{' and '.join(nets)}, not --model={self.model}: use --structure=channel")
      if self.schedule != "one_shot":
        raise ConfigError(f"--structure={self.structure} prunes once, at --level: use "
                         "--schedule=one_shot (the original's levels compound the ratios)")
    k = self.to_steps("rewind_step")
    if registries.schedule(self.schedule).from_scratch:
      return self  # no retraining method: its settings are not read
    if not 0 <= k < n:
      raise ConfigError(f"--rewind_step={self.rewind_step} ({k} iterations) is not inside the "
                       f"dense cycle of {n} iterations: rewind to a step before the end")
    m = self.to_steps("mask_from")
    if m is not None and not 0 <= m <= n:
      raise ConfigError(f"--mask_from={self.mask_from} ({m} iterations) is not a step of the "
                        f"dense cycle of {n} iterations: 0 is the initialisation, {n} its end")
    self.plan()  # unknown method, bad budget or custom steps
    return self


STEP_FIELDS = ("train_steps", "epoch_steps", "lr_boundaries", "rewind_step", "retrain",
               "weights_from", "lr_from", "mask_from", "gradual_begin", "gradual_end",
               "gradual_every")
def _shown(value) -> str:
  return ",".join(map(str, value)) if isinstance(value, (tuple, list)) else str(value)


def check_field(name: str, value) -> Optional[str]:
  """What is wrong with `value` for field `name` by its declaration alone (type, bounds,
  emptiness), or None. Every numeric and step field declares its bounds (tests check that),
  so a new setting cannot forget them; the generated flags run the same check at parsing."""
  field = _FIELDS[name]
  meta = field.metadata
  if value is None:
    return None
  if isinstance(value, (tuple, list)):
    if not value and not meta.get("empty"):
      return "empty: give at least one value, or leave the flag out"
    problems = [check_item(name, v) for v in value]
    return next((p for p in problems if p), None)
  return check_item(name, value)


def check_item(name: str, value) -> Optional[str]:
  meta = _FIELDS[name].metadata
  if isinstance(value, bool):
    return None
  if isinstance(value, str) and not value.strip():
    return "empty: give a value, or leave the flag out"
  if meta.get("choices") and value not in meta["choices"]:
    return f"use {' or '.join(meta['choices'])}"
  if meta.get("pattern") and not re.fullmatch(meta["pattern"], str(value)):
    return f"write it as {meta['example']}"
  if name in STEP_FIELDS:
    match = re.fullmatch(STEPS_RE, str(value))
    if not match:
      return "not a step count: write e.g. 8000it or 4ep"
    number = float(match.group(1))
  elif isinstance(value, (int, float)):
    number = value
  else:
    return None
  if out_of_bounds(number, meta):
    return f"must be {bounds_text(meta)}"
  return None
_FIELDS = {f.name: f for f in dataclasses.fields(HParams)}


def train_size(hp) -> int:
  """Training images of `hp`'s dataset (--synthetic_size for the synthetic set)."""
  size = names.DATASETS[hp.dataset].train_size if hp.dataset in names.DATASETS else None
  return hp.synthetic_size if size is None else size


def identity(hp: HParams, round_: int = 0) -> Dict[str, Any]:
  """What names a run: round 0 is the dense network, round r >= 1 a retraining round.

  Only values that change what is computed enter: non-default settings of the
  run's groups, less those its schedule or its method (tfrewind.plan.METHODS
  `reads`) does not read, so e.g. --rewind_step does not split fine-tuning runs.
  """
  dense = hp.canonical(DENSE_GROUPS)
  if round_ == 0:
    return dense
  branch = hp.canonical(BRANCH_GROUPS)
  # The prune settings that the schedule and the structure read (tfrewind.registries); a
  # round's identity has its number, so --rounds (how many there are) never enters.
  schedule = registries.schedule(hp.schedule)
  # mask_from, control and keep_dense are unset by default: they enter only when set.
  prune_reads = ({"schedule", "scope", "structure", "criterion", "mask_from", "control",
                  "keep_dense", "target"} | set(schedule.reads)
                 | set(registries.structure(hp.structure).reads)
                 | set(registries.criterion(hp.criterion).reads))
  if hp.by_level or registries.structure(hp.structure).density is not None:
    prune_reads.discard("density")
  unused = tuple(f.name for f in dataclasses.fields(hp)
                 if f.metadata["group"] == "prune" and f.name not in prune_reads)
  reads = set(plan_lib.METHODS[hp.method].reads) | {"method", "reset_momentum", "data_order"}
  if schedule.from_scratch:  # pruned while training from scratch: no retraining method
    reads = set()
  if hp.reset_momentum:  # a fresh optimizer state at the prune: nothing of step K's is kept
    reads.discard("restore_optimizer")
  unused += tuple(f.name for f in dataclasses.fields(hp)
                  if f.metadata["group"] == "retrain" and f.name not in reads)
  for name in unused:
    branch.pop(name, None)
  if hp.schedule == "iterative":
    branch["rate"] = hp.rate
  if hp.structure == "channel":
    # Channel densities counted channels before they counted weights: never reuse such a run.
    branch["channel_count"] = hp.channel_count
  return {"dense": run_key(hp, 0), "round": round_, **branch}


def run_key(hp: HParams, round_: int = 0) -> str:
  """The hash in a run folder's name (tests/test_identity.py pins some: change it knowingly)."""
  return hashlib.sha256(json.dumps(identity(hp, round_), sort_keys=True).encode()).hexdigest()[:10]

