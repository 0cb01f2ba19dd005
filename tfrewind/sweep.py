"""A sweep: every run that a set of flags asks for, and what can be checked before training.

  runs = sweep.grid(base, methods=["finetune", "lr_rewind"], densities=[0.8, 0.64], seeds=[1, 2])
  sweep.check(runs)                  # every setting, every density of every network
  steps = sweep.snapshot_steps(runs) # the dense steps the grid restores

`grid` and `snapshot_steps` are pure; `check` builds each network once (TensorFlow)
to prove that every density keeps a weight under its scope and structure.
"""

import dataclasses
from typing import List, Optional, Sequence

from tfrewind import hparams as hp_lib
from tfrewind import names
from tfrewind import plan
from tfrewind import prefixes
from tfrewind import registries
from tfrewind import store
from tfrewind.pruning import masks
from tfrewind.errors import ConfigError


def grid(base: hp_lib.HParams, methods: Sequence[str], densities: Sequence[float],
         seeds: Sequence[int], retrains: Sequence[Optional[str]] = (None,),
         random_controls: Sequence[str] = (), levels: Sequence[int] = (1,),
         controls: Sequence[str] = (), at_init: Sequence[str] = (),
         train_budgets: Sequence[str] = ()) -> List[hp_lib.HParams]:
  """Every run of a sweep: methods x densities (one-shot) x budgets x seeds.

  random_controls: methods also run with criterion "random" (the same counts, a
  random mask), after the method's own runs.
  levels: structured_a/b take their points from levels instead of densities.
  controls: every run also once per control (tfrewind.registries.CONTROLS), after it.
  at_init: criteria also run as pruning at initialisation, per density and seed: scored on the
    initial network (--mask_from=0it), which then trains for the whole cycle
    (--method=weight_rewind --rewind_step=0it).
  train_budgets: --train_steps values, each stretching the dense LR schedule with it (its
    boundaries, and a gradual run's end, scale by the budget's ratio): a gradual run's total
    budgets. Empty: the base's own.
  """
  bases = [stretched(base, b) for b in train_budgets] or [base]
  out = []
  for base in bases:
    out += _grid(base, methods, densities, seeds, retrains, random_controls, levels, controls,
                 at_init)
  return out


def stretched(base: hp_lib.HParams, budget: str) -> hp_lib.HParams:
  """`base` trained for `budget` iterations, its LR boundaries (and gradual end) scaled."""
  old, new = base.cycle_steps, hp_lib.parse_steps(budget, base.steps_per_epoch(), "train_budgets")
  scale = lambda steps: f"{int(round(steps * new / old))}it"  # noqa: E731
  return dataclasses.replace(
      base, train_steps=f"{new}it", lr_boundaries=tuple(scale(b) for b in base.boundaries),
      gradual_end=None if base.gradual_end is None else scale(base.to_steps("gradual_end")))


def _grid(base, methods, densities, seeds, retrains, random_controls, levels, controls,
          at_init):
  if base.by_level:
    points = [dict(level=level) for level in levels]
  elif registries.structure(base.structure).density is not None:  # N:M sets its own
    points = [{}]
  elif registries.schedule(base.schedule).point == "density":
    points = [dict(density=density) for density in densities]
  else:
    points = [{}]
  out = []
  for seed in seeds:
    for method in methods:
      extra = ["random"] if method in random_controls and base.criterion != "random" else []
      # A method that ignores the budget (reinit) runs once, not once per budget.
      known = plan.METHODS.get(method)  # an unknown name fails in validate, with the list
      budgets = [None] if known and "retrain" not in known.reads else retrains
      for criterion in [base.criterion] + extra:
        for retrain in budgets:
          for point in points:
            run = dataclasses.replace(
                base, seed=seed, method=method, criterion=criterion,
                retrain=retrain if retrain is not None else base.retrain, **point)
            out.append(run)
            out += [dataclasses.replace(run, control=c) for c in controls
                    if criterion == base.criterion]
    for criterion in at_init:
      for point in points:
        out.append(dataclasses.replace(base, seed=seed, method="weight_rewind",
                                       criterion=criterion, mask_from="0it", rewind_step="0it",
                                       retrain=None, **point))
  return out


def unique(runs: Sequence[hp_lib.HParams]) -> List[hp_lib.HParams]:
  """Validated runs, those named twice (a gradual run ignores the method) once, in order."""
  seen, out = set(), []
  for hp in runs:
    key = (hp_lib.run_key(hp, len(hp.densities)), hp.seed)
    if key not in seen:
      seen.add(key)
      out.append(hp)
  return out


def snapshot_steps(runs: Sequence[hp_lib.HParams]) -> List[int]:
  """Dense steps whose state some run of the grid restores."""
  steps = {p.weights_from for hp in runs if not registries.schedule(hp.schedule).from_scratch
           for p in [hp.plan()] if p.weights_from is not None}
  # --mask_from's network too, where it is not the end of dense training
  steps |= {hp.to_steps("mask_from") for hp in runs if hp.mask_from is not None
            and hp.to_steps("mask_from") < hp.cycle_steps}
  return sorted(steps)


# The settings a grid flag changes besides the method, seed, density, level and budget.
_VARIED = ("criterion", "control", "mask_from", "rewind_step", "train_steps", "lr_boundaries",
           "gradual_end")


def lines(runs: Sequence[hp_lib.HParams], base: hp_lib.HParams, keep: Sequence[str],
          steps: Sequence[int], root: str, stage: Optional[str] = None,
          one_criterion: bool = False):
  """[(tfrewind arguments, label, run folders, dense run folder)] of the grid: a line per run
  (stage None), per dense network (stage "dense"), or per run with the budgets of a shared
  prefix (tfrewind.prefixes) on one line (stage "branches").

  keep: the command line's own flags (not the grid's); base: the runs' settings before the
  grid; one_criterion: each line names its criterion (the grid had --random_controls). Every
  line carries the whole grid's --snapshot_steps (`steps`), so whichever line trains a dense
  run first saves every rewind point that the others restore.
  """
  groups = {}
  if stage == "branches":
    for group in prefixes.groups(runs).values():
      groups.update({id(hp): group for hp in group})
  out, seen = [], set()
  for hp in runs:
    scratch = registries.schedule(hp.schedule).from_scratch  # no method to name
    dense = None if scratch else store.dense_paths(root, hp).dir
    if stage == "dense" and scratch:
      continue
    group = groups.get(id(hp), [hp])
    if hp is not group[-1] and stage == "branches":
      continue  # on the line of its group's largest budget
    args = ["tfrewind", "run", *keep, *([] if scratch else [f"--method={hp.method}"]),
            f"--seed={hp.seed}"]
    # What --controls, --at_init and --train_budgets set differently from the flags.
    for name in _VARIED:
      value = getattr(hp, name)
      if value != getattr(base, name):
        args.append(f"--{name}={','.join(value) if isinstance(value, tuple) else value}")
    if hp.by_level:
      args.append(f"--level={hp.level}")
    elif (registries.schedule(hp.schedule).point == "density"
          and registries.structure(hp.structure).density is None):
      args.append(f"--density={hp.density!r}")
    if len(group) > 1:
      args.append(f"--retrains={','.join(g.retrain for g in group)}")
    elif hp.retrain is not None:
      args.append(f"--retrain={hp.retrain}")
    if one_criterion:
      # The line runs one criterion, whatever its flag files' --random_controls say.
      args += [f"--criterion={hp.criterion}", "--random_controls="]
    if steps:
      args.append(f"--snapshot_steps={','.join(map(str, steps))}")
    point = f"level {hp.level}" if hp.by_level else f"density {hp.densities[-1]:.4g}"
    if stage == "dense":
      args.append("--stage=dense")
      key, label, folders = dense, f"dense {hp.model} seed {hp.seed}", [dense]
    else:
      key = " ".join(args)
      budgets = f" budgets {','.join(g.retrain for g in group)}" if len(group) > 1 else ""
      label = f"{names.series(hp)} {point} seed {hp.seed}{budgets}"
      folders = [store.branch_paths(root, g, r).dir for g in group
                 for r in range(1, len(g.densities) + 1)]
    if key not in seen:
      seen.add(key)
      out.append((args, label, folders, dense))
  return out


def validate(runs: Sequence[hp_lib.HParams]) -> None:
  """Every run's settings (ValueError naming the first bad one); no TensorFlow."""
  for hp in runs:
    hp.validate()


def check_densities(runs: Sequence[hp_lib.HParams]) -> None:
  """Raises ValueError unless every density of every run keeps a weight of its network.

  Computes the masks of the smallest density of each (network, scope,
  structure, criterion, ...) on the freshly built network, exactly as the prune
  will: a layerwise or channel density that empties a kernel fails here, not
  after hours of dense training. Each network is built once (with the channel
  structure's BatchNorms when some run needs them: unstructured masks ignore them).
  """
  import tf_keras as keras  # pylint: disable=g-import-not-at-top
  from tfrewind.models import registry  # pylint: disable=g-import-not-at-top
  from tfrewind.pruning import sparsity  # pylint: disable=g-import-not-at-top
  smallest = {}
  for hp in runs:
    network = (hp.model, tuple(sorted(hp.model_overrides().items())), hp.dataset,
               hp.image_size)
    # A criterion that scores the network keeps the same counts as magnitude does.
    criterion = "magnitude" if registries.criterion(hp.criterion).scores_model else hp.criterion
    key = (hp.scope, hp.structure, criterion, hp.channel_count, hp.classifier, hp.keep_dense,
           hp.n_m)
    # structured_a/b: the highest level prunes most
    point = -hp.level if hp.by_level else min(hp.densities)
    points = smallest.setdefault(network, {})
    points[key] = min(points.get(key, 1.0), point)
  for (model, overrides, dataset, image_size), points in smallest.items():
    channels = any(sparsity.silences_channels(key[1]) for key in points)
    try:
      net = sparsity.prunable(registry.build_model(
          model, num_classes=names.num_classes(dataset),
          input_shape=names.image_shape(dataset, image_size), **dict(overrides)),
          structure="channel" if channels else "unstructured")
    except ValueError as e:
      raise ConfigError(f"--model={model}: {e}") from None
    try:
      for (scope, structure, criterion, count, classifier, keep_dense, n_m), point in points.items():
        by_level = registries.structure(structure).by_level
        density, level = (1.0, -point) if by_level else (point, 1)
        try:
          sparsity.new_masks(net, density, scope=scope, structure=structure,
                             criterion=criterion, count=count, classifier=classifier,
                             level=level, keep_dense=keep_dense, n_m=n_m)
        except masks.NothingKept as e:
          raise ConfigError(f"density {density:.3g} keeps no weight of {model} with "
                           f"--scope={scope} --structure={structure} ({e})") from None
        except ValueError as e:
          raise ConfigError(f"--model={model} --scope={scope} --structure={structure}: "
                           f"{e}") from None
    finally:
      keras.backend.clear_session()


def copies(hp: hp_lib.HParams, density: float, step: int):
  """tfrewind stability's (A, B): the weight-rewinding run of (density, step) and its twin
  of another data order."""
  a = dataclasses.replace(hp, method="weight_rewind", schedule="one_shot", density=density,
                          rewind_step=f"{step}it", retrain=None, data_order=0)
  return a, dataclasses.replace(a, data_order=1)


# Training speed of one RTX 3080 with TF 2.4 (Mikler 2021): the default of `sweep --plan`.
PUBLISHED_ITS = {"resnet20": 59.0, "resnet56": 28.6, "resnet110": 15.9, "wrn16_8": 17.4}


def cost(runs: Sequence[hp_lib.HParams]) -> dict:
  """Optimizer steps of a sweep, each dense run and retraining round counted once.

  Returns {"dense", "retrain", "total", "shareable", "runs", "by_model"}: "shareable"
  is what training only the largest budget of each group of runs that differ by budget
  alone saves (tfrewind.prefixes). by_model: {model: [total, shareable]}.
  """
  dense, rounds = {}, {}
  for hp in runs:
    if registries.schedule(hp.schedule).from_scratch:  # one run from scratch, no dense trunk
      rounds[hp_lib.run_key(hp, 1)] = (hp.model, hp.cycle_steps, None)
      continue
    dense[hp_lib.run_key(hp, 0)] = (hp.model, hp.cycle_steps)
    retrain = hp.plan()
    for r in range(1, len(hp.densities) + 1):
      group = prefixes.group_key(hp) if r == 1 else None
      rounds[hp_lib.run_key(hp, r)] = (hp.model, retrain.steps, group)
  by_model = {}
  for model, steps in dense.values():
    by_model.setdefault(model, [0, 0])[0] += steps
  groups = {}
  for model, steps, group in rounds.values():
    by_model.setdefault(model, [0, 0])[0] += steps
    if group is not None:
      groups.setdefault(group, (model, []))[1].append(steps)
  shareable = 0
  for model, steps in groups.values():
    saved = sum(steps) - max(steps)
    by_model[model][1] += saved
    shareable += saved
  dense_steps = sum(s for _, s in dense.values())
  retrain_steps = sum(s for _, s, _ in rounds.values())
  return {"dense": dense_steps, "retrain": retrain_steps, "total": dense_steps + retrain_steps,
          "shareable": shareable, "runs": len(dense) + len(rounds), "by_model": by_model}


def cost_lines(c: dict, its: Optional[float] = None) -> List[str]:
  """What `sweep --plan` prints for cost(runs): steps, and GPU hours at `its` it/s (default:
  the reproduction's RTX 3080 speed of each network, where it is known)."""
  total, shared = c["total"], c["total"] - c["shareable"]
  lines = [f"{c['runs']} runs: {c['dense']:,} dense + {c['retrain']:,} retraining = "
           f"{total:,} optimizer steps",
           f"shared prefixes (constant-LR budgets trained once, to the largest): "
           f"{c['shareable']:,} steps saved -> {shared:,} ({total / shared:.3f}x fewer; "
           f"tfrewind sweep, --launch=local and --print --stage=branches share them)"]
  for model, (steps, saved) in sorted(c["by_model"].items()):
    speed = its or PUBLISHED_ITS.get(model)
    if speed:
      source = "--its" if its else "Mikler's RTX 3080, TF 2.4"
      lines.append(f"  {model}: {steps / speed / 3600:,.1f} GPU hours at {speed:g} it/s "
                   f"({source}); {(steps - saved) / speed / 3600:,.1f} with shared prefixes")
    else:
      lines.append(f"  {model}: {steps:,} steps; pass --its=ITERATIONS_PER_SECOND for hours")
  return lines
