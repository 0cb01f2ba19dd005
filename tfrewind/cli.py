"""The `tfrewind` command: run, sweep, stability, models, report, bench, export.

  tfrewind run --flagfile=flags/quickstart.flags
  tfrewind run --flagfile=flags/resnet20_one_shot.flags --seeds=1,2,3
  tfrewind sweep --flagfile=flags/wrn16_8_iterative.flags --seeds=1,2 --print > jobs.txt
  tfrewind stability --flagfile=flags/quickstart.flags --rewind_steps=0,30,100it \
      --densities=1.0,0.1 --out=runs/stability
  tfrewind models
  tfrewind report --root=runs --out=report
  tfrewind bench
  tfrewind export --run=runs/prune_... --out=exported

Every hyper-parameter flag is generated from a field of tfrewind.hparams.HParams
(its help text is the field's). The list flags --methods, --densities, --seeds
and --retrains make a grid; a singular flag given explicitly (--method,
--density, --seed, --retrain) overrides its list.
"""

import dataclasses
import os
import shlex
import sys
import typing
from typing import List, Optional

from absl import flags, logging

from tfrewind import hparams as hp_lib
from tfrewind import platform
from tfrewind import store
from tfrewind import sweep
from tfrewind import stopping
from tfrewind.errors import (DataError, DiskFull, RunFailed, Stopped, UsageError, disk_full,
                             is_disk_full)

FLAGS = flags.FLAGS


def _validate(name: str, check) -> None:
  """Registers `check(value) -> problem or None` as the flag's absl validator (run at parsing,
  so a bad value is one line before anything starts)."""
  def checker(value):
    problem = check(value)
    if problem:
      raise flags.ValidationError(problem)
    return True
  flags.register_validator(name, checker)


def _define_hparam_flags():
  """One flag per HParams field, validated by the field's own declaration
  (hparams.check_field: bounds, emptiness, step counts)."""
  for field in dataclasses.fields(hp_lib.HParams):
    kind = field.type
    if typing.get_origin(kind) is typing.Union:
      kind = [a for a in typing.get_args(kind) if a is not type(None)][0]
    default, help_text = field.default, field.metadata["help"]
    numeric = (kind in (int, float) or field.name in hp_lib.STEP_FIELDS)
    if numeric and not any(k in field.metadata for k in hp_lib.BOUNDS):
      raise TypeError(f"HParams.{field.name} is a count, step or number without declared "
                      f"bounds: give its field min=, above=, max= or below=")
    if numeric:
      help_text += f" [{hp_lib.bounds_text(field.metadata)}]"
    if kind is bool:
      flags.DEFINE_boolean(field.name, default, help_text)
    elif kind is int:
      flags.DEFINE_integer(field.name, default, help_text)
    elif kind is float:
      flags.DEFINE_float(field.name, default, help_text)
    elif typing.get_origin(kind) is tuple:
      flags.DEFINE_list(field.name, list(default), help_text)
    else:
      flags.DEFINE_string(field.name, default, help_text)
    _validate(field.name, lambda v, name=field.name: hp_lib.check_field(name, v))


def _number(define, name, default, help_text, **bounds):
  """An integer or float flag; its bounds are required, so that no count can forget them."""
  if not bounds:
    raise TypeError(f"--{name}: declare its bounds (min=, above=, max=, below=)")
  define(name, default, f"{help_text} [{hp_lib.bounds_text(bounds)}]")
  _validate(name, lambda v: f"must be {hp_lib.bounds_text(bounds)}" if (
      v is not None and hp_lib.out_of_bounds(v, bounds)) else None)


def _string(name, default, help_text):
  """A string flag that cannot be empty (an unset variable in --root=$DIR)."""
  flags.DEFINE_string(name, default, help_text)
  _validate(name, lambda v: "empty: give a value, or leave the flag out" if (
      v is not None and not v.strip()) else None)


def _list(name, default, help_text, item=None, empty=None):
  """A list flag. `empty`: why an empty list means something (documented in the help), else an
  empty value (--seeds=$SEEDS, unset) is an error. `item(text) -> problem` checks each element."""
  flags.DEFINE_list(name, default, help_text + (f" (empty: {empty})" if empty else ""))

  def check(value):
    if value is None:
      return None
    if not value and not empty:
      return "empty: give at least one value, or leave the flag out"
    for v in value:
      if not v:
        return f"an empty element in {','.join(value)!r}"
      problem = item(v) if item else None
      if problem:
        return f"{v!r}: {problem}"
    return None
  _validate(name, check)


def _integer_item(**bounds):
  def check(text):
    try:
      number = int(text)
    except ValueError:
      return "not an integer"
    return f"must be {hp_lib.bounds_text(bounds)}" if hp_lib.out_of_bounds(number, bounds) else None
  return check


def _steps_item(text):
  """A step count of a CLI list (>= 0: a dense step; `epN` needs the run's epoch, resolved later)."""
  return hp_lib.check_item("rewind_step", text)


def _method_item(text):
  from tfrewind import plan  # pylint: disable=g-import-not-at-top
  return None if text in plan.METHODS else f"not a method: use {', '.join(plan.METHODS)}"


def _model_item(text):
  from tfrewind import names  # pylint: disable=g-import-not-at-top
  return None if names.match_model(text) else f"not a network: use {names.MODEL_HELP}"


_define_hparam_flags()
_list("methods", None, "grid: retraining methods (overrides --method)", item=_method_item)
_string("densities", None, "grid: one-shot densities, e.g. 0.8^1..20 or 0.5,0.2")
_list("levels", None, "grid: structured_a/b levels, e.g. 1,2,3,4,5 (the released trials' five "
      "points; overrides --level)", item=_integer_item(min=1))
_list("seeds", None, "grid: seeds (overrides --seed)", item=_integer_item(min=0))
_list("retrains", None, "grid: retraining budgets, e.g. 10ep,40ep (Renda)",
      item=lambda t: hp_lib.check_item("retrain", t))
_list("random_controls", [], "grid: methods also run with --criterion=random (the same counts, "
      "a random mask), e.g. clr", item=_method_item, empty="no random controls")
_number(flags.DEFINE_float, "step", None, "iterative: fraction of the remaining weights removed "
        "per round (sets --rate to 1 - step)", above=0, below=1)
_string("root", "runs", "folder of run folders")
_list("snapshot_steps", [], "dense steps (iterations) to snapshot while training a dense run, "
      "besides those of this command's grid; sweep --print passes the whole grid's to every "
      "line, so no line has to replay the dense trunk", item=_steps_item,
      empty="only the grid's own")
flags.DEFINE_enum("distribution", "auto", list(platform.DISTRIBUTIONS),
                  "auto: MirroredStrategy over all local GPUs when there are several")
flags.DEFINE_boolean("jit_compile", False, "compile train steps with XLA")
_number(flags.DEFINE_integer, "steps_per_execution", 1, "train steps per compiled call", min=1)
flags.DEFINE_boolean("deterministic", False, "op determinism: resumed runs match bitwise")
flags.DEFINE_boolean("print", False, "sweep: print one command per run instead of running")
_number(flags.DEFINE_integer, "verbose", 1, "0: a line per run; 1: also Keras progress bars on "
        "a terminal (never in a log file); 2: everything, TensorFlow's own log lines included "
        "(each run folder's log.txt always has them)", min=0, max=2)
_string("out", "report", "report/export: output folder")
flags.DEFINE_boolean("reference_only", False, "report: draw only the published curves")
flags.DEFINE_enum("metric", "final", ["final", "best"], "report: final test accuracy, or the "
                  "best epoch-end test accuracy (the reproduction's reported ACC)")
_string("run", None, "export: a finished run folder")
_list("rewind_steps", ["0it", "500it", "2000it", "8000it"],
      "stability: rewind steps K to test (units as other step counts)", item=_steps_item)
_number(flags.DEFINE_integer, "alphas", 30, "stability: evenly spaced points of the path from 0 "
        "to 1", min=11)
flags.DEFINE_enum("bn", "reestimate", ["reestimate", "interpolate"], "stability: BatchNorm "
                  "statistics along the path: re-estimated on --bn_batches training batches, or "
                  "interpolated like the weights")
_number(flags.DEFINE_integer, "bn_batches", 20, "stability: training batches (not augmented) "
        "for re-estimating BatchNorm statistics", min=1)
_number(flags.DEFINE_float, "stable_below", 2.0, "stability: a barrier below this many points is "
        "stable (Frankle et al.)", above=0)
_list("bench_models", ["resnet20", "resnet56", "wrn16_8"], "bench: networks", item=_model_item)
_list("bench_inference", ["resnet20", "resnet56"], "bench: networks timed in inference, "
      "channel-pruned, masked against slim", item=_model_item, empty="no inference timing")
flags.DEFINE_boolean("bench_quickstart", True, "bench: also time one quickstart cycle "
                     "(needs a checkout's flags/)")
_number(flags.DEFINE_integer, "bench_repeats", 4, "bench: interleaved repeats (even: ABBA order)",
        min=1)
_number(flags.DEFINE_integer, "bench_steps", 6, "bench: timed steps per repeat, at least (small "
        "networks get ~2 s worth)", min=1)
_number(flags.DEFINE_integer, "bench_batch", 128, "bench: batch size (the papers' 128; WRN-16-8 "
        "on a CPU uses at most 32 to stay within minutes)", min=1)


# ---------------------------------------------------------------------------- grid
def base_hparams() -> hp_lib.HParams:
  values = {}
  for field in dataclasses.fields(hp_lib.HParams):
    value = FLAGS[field.name].value
    values[field.name] = tuple(value) if isinstance(value, list) else value
  if FLAGS["step"].present or FLAGS.step is not None:
    if not 0 < FLAGS.step < 1:
      raise UsageError(f"--step must be in (0, 1), got {FLAGS.step}")
    values["rate"] = 1.0 - FLAGS.step
  return hp_lib.HParams(**values)


def _pick(single: str, plural: str, convert):
  if FLAGS[single].present or not FLAGS[plural].value:
    return [FLAGS[single].value]
  return [convert(v) for v in FLAGS[plural].value]


def _int(name):
  def convert(v):
    try:
      return int(v)
    except ValueError:
      raise UsageError(f"--{name}: {v!r} is not an integer") from None
  return convert


def _densities() -> List[float]:
  if FLAGS["density"].present or not FLAGS.densities:
    return [FLAGS.density]
  return hp_lib.expand_densities(FLAGS.densities)


def make_grid(check_networks: bool = True) -> List[hp_lib.HParams]:
  """Every run that the flags ask for, validated (ValueError on the first bad one).

  check_networks: also build each network to check every density (TensorFlow);
  `sweep --print` leaves that to each printed line, which checks before training.
  """
  base = base_hparams()
  methods = _pick("method", "methods", str)
  seeds = _pick("seed", "seeds", _int("seeds"))
  retrains = _pick("retrain", "retrains", str)
  densities = _densities()
  levels = _pick("level", "levels", _int("levels"))
  unknown = sorted(set(FLAGS.random_controls) - set(methods))
  if unknown:
    raise UsageError(f"--random_controls={','.join(unknown)} names no method of the grid "
                     f"({','.join(methods)})")
  runs = sweep.grid(base, methods, densities, seeds, retrains, FLAGS.random_controls, levels)
  sweep.validate(runs)
  if check_networks:
    sweep.check_densities(runs)
  return runs


def _snapshot_steps(runs) -> List[int]:
  extra = [hp_lib.parse_steps(v, runs[0].steps_per_epoch(), "snapshot_steps")
           for v in FLAGS.snapshot_steps] if runs else []
  return sorted(set(sweep.snapshot_steps(runs)) | set(extra))


# ---------------------------------------------------------------------------- commands
# Each command is a check (TF-free: every flag, the grid, the paths; a bad value fails in
# a second, before TensorFlow starts) and an execution, given what the check prepared.
def _runner(strategy, snapshot_steps):
  """The Runner of --root with the execution flags (never part of a run's identity)."""
  from tfrewind import experiment  # pylint: disable=g-import-not-at-top
  return experiment.Runner(experiment.Env(
      root=FLAGS.root, strategy=strategy, jit_compile=FLAGS.jit_compile,
      steps_per_execution=FLAGS.steps_per_execution, deterministic=FLAGS.deterministic,
      verbose=FLAGS.verbose, snapshot_steps=snapshot_steps,
      worker=platform.worker_index(strategy)))


def check_run(raw_args):
  del raw_args
  return make_grid(check_networks=False)


def cmd_run(runs) -> int:
  from tfrewind import progress as progress_lib  # pylint: disable=g-import-not-at-top
  import time  # pylint: disable=g-import-not-at-top
  t0 = time.time()
  # First: collective ops must be configured before any TF op runs.
  strategy = platform.strategy(FLAGS.distribution)
  sweep.check_densities(runs)
  runner = _runner(strategy, _snapshot_steps(runs))
  for hp in {(h.dataset, h.data_dir, h.synthetic_size): h for h in runs}.values():
    runner.arrays(hp)  # missing data fails here, before any training
  logging.info("root %s: %d runs", os.path.abspath(FLAGS.root), len(runs))
  progress = progress_lib.Progress(runs)
  for hp in runs:
    runner.run(hp, progress)
  _print_table(progress.rows)
  print(f"\nfinished {len(runs)} runs in {time.time() - t0:.0f} s; run folders in {FLAGS.root}/")
  print(f"  watch:   tensorboard --logdir {FLAGS.root}")
  print(f"  report:  tfrewind report --root={FLAGS.root} --out=report")
  return 0


def _print_table(rows):
  print(f"\n{'seed':>4}  {'method':<14} {'density':>8}  {'test acc':>8}  {'dense':>6}  {'change':>7}")
  for seed, method, density, acc, dense in rows:
    print(f"{seed:>4}  {method:<14} {density:>8.4f}  {acc:>8.4f}  {dense:>6.4f}  "
          f"{100 * (acc - dense):>+6.2f}pt")


_GRID_FLAGS = ("methods", "densities", "seeds", "retrains", "levels", "method", "density", "seed",
               "retrain", "level", "print", "snapshot_steps", "random_controls")


def check_sweep(raw_args):
  return check_run(raw_args), raw_args


def cmd_sweep(prepared) -> int:
  """Runs the grid in order, or with --print writes one `tfrewind run` line per run.

  Every line carries the whole grid's --snapshot_steps, so whichever line trains
  a dense run first saves every rewind point that the others restore.
  """
  runs, raw_args = prepared
  if not FLAGS.print:
    return cmd_run(runs)
  steps = _snapshot_steps(runs)
  keep = []
  for arg in raw_args:
    name = arg.lstrip("-").split("=")[0]
    if name.startswith("no") and name[2:] in _GRID_FLAGS:
      continue
    if name not in _GRID_FLAGS:
      keep.append(arg)
  seen = set()
  for hp in runs:
    args = ["tfrewind", "run", *keep, f"--method={hp.method}", f"--seed={hp.seed}"]
    if hp.by_level:
      args.append(f"--level={hp.level}")
    elif hp.schedule == "one_shot":
      args.append(f"--density={hp.density!r}")
    if hp.retrain is not None:
      args.append(f"--retrain={hp.retrain}")
    if FLAGS.random_controls:
      # The line runs one criterion, whatever its flag files' --random_controls say.
      args += [f"--criterion={hp.criterion}", "--random_controls="]
    if steps:
      args.append(f"--snapshot_steps={','.join(map(str, steps))}")
    line = " ".join(shlex.quote(a) for a in args)
    if line not in seen:
      seen.add(line)
      print(line)
  return 0


def cmd_models(_) -> int:
  from tfrewind.models import registry  # pylint: disable=g-import-not-at-top
  import tf_keras as keras  # pylint: disable=g-import-not-at-top
  print(f"{'model':<10} {'input':>9} {'trainable':>12} {'prunable':>12} {'kernels':>8}")
  for name in registry.PRESETS:
    imagenet = name == "resnet50"
    model = registry.build_model(name, num_classes=1000 if imagenet else 10)
    c = registry.counts(model)
    shape = "224x224" if imagenet else "32x32"
    print(f"{name:<10} {shape:>9} {c['trainable']:>12,} {c['prunable']:>12,} "
          f"{c['prunable_layers']:>8}")
    keras.backend.clear_session()
  return 0


def _existing_root(command: str) -> None:
  """report/stability read runs of --root: a missing one is a typo, never an empty study."""
  root = FLAGS.root
  if not os.path.exists(root):
    raise UsageError(f"--root={root} does not exist: check the path" + (
        f" (a new study: mkdir {root} first, or leave --root out to use runs/)"
        if command == "stability" else f" (tfrewind run --root={root} makes it)"))
  if not os.path.isdir(root):
    raise UsageError(f"--root={root} is a file, not a folder of run folders")


def check_report(_):
  if not FLAGS.reference_only:
    _existing_root("report")


def cmd_report(_) -> int:
  from tfrewind.report import cli as report_cli  # pylint: disable=g-import-not-at-top
  return report_cli.main(FLAGS.root, FLAGS.out, FLAGS.reference_only, FLAGS.metric)


def check_bench(_):
  from tfrewind import names  # pylint: disable=g-import-not-at-top
  if FLAGS.dataset not in names.DATASETS:
    raise UsageError(f"unknown --dataset={FLAGS.dataset!r}: choose one of "
                     f"{', '.join(names.DATASETS)}")


def cmd_bench(_) -> int:
  from tfrewind import bench  # pylint: disable=g-import-not-at-top
  # Synthetic unless --dataset is given: the bench must run offline by default.
  dataset = FLAGS.dataset if FLAGS["dataset"].present else "synthetic"
  return bench.main(models=FLAGS.bench_models, repeats=FLAGS.bench_repeats,
                    steps=FLAGS.bench_steps, batch=FLAGS.bench_batch, dataset=dataset,
                    inference=FLAGS.bench_inference, quickstart=FLAGS.bench_quickstart)


def check_stability(_):
  if FLAGS["root"].present:  # the default runs/ is made, as by tfrewind run
    _existing_root("stability")
  base = base_hparams()
  seeds = _pick("seed", "seeds", int)
  densities = _densities()
  steps = sorted({hp_lib.parse_steps(k, base.steps_per_epoch(), "rewind_steps")
                  for k in FLAGS.rewind_steps})
  runs = [c for seed in seeds for d in densities for k in steps
          for c in sweep.copies(dataclasses.replace(base, seed=seed), d, k)]
  sweep.validate(runs)
  return base, seeds, densities, steps, runs


def cmd_stability(prepared) -> int:
  from tfrewind import stability  # pylint: disable=g-import-not-at-top
  base, seeds, densities, steps, runs = prepared
  strategy = platform.strategy(FLAGS.distribution)
  sweep.check_densities(runs)
  runner = _runner(strategy, steps)
  runner.arrays(base)  # missing data fails here, before any training
  table, barriers = stability.analyse(runner, base, densities, steps, seeds, FLAGS.alphas,
                                      FLAGS.bn, FLAGS.bn_batches, FLAGS.stable_below)
  print(stability.write(FLAGS.out, table, barriers))
  print(f"wrote stability.csv, barriers.csv, summary.md and figures to {FLAGS.out}/")
  return 0


def check_export(_):
  if not FLAGS.run:
    raise UsageError("export needs --run=RUN_FOLDER (a finished run) and --out=FOLDER")
  store.finished_run(FLAGS.run)


def cmd_export(_) -> int:
  from tfrewind import export  # pylint: disable=g-import-not-at-top
  info = export.export(FLAGS.run, FLAGS.out)
  print(f"exported {info['model']} ({info['structure']}, density {info['density']:.4g}, test "
        f"accuracy {info['test_accuracy']:.4f}) to {FLAGS.out}: {info['parameters']:,} -> "
        f"{info['slim_parameters']:,} parameters, {info['dense_macs']:,} -> "
        f"{info['slim_dense_macs']:,} MACs dense; saved_model/, model.tflite, export.json")
  return 0


# The flags each command reads (every command parses every flag, so that one flag file serves
# run, sweep and stability; tests/test_flags.py walks each command's own).
_HPARAMS = tuple(f.name for f in dataclasses.fields(hp_lib.HParams))
_EXECUTION = ("root", "distribution", "jit_compile", "steps_per_execution", "deterministic",
              "verbose")
COMMAND_FLAGS = {
    "run": _HPARAMS + _EXECUTION + ("methods", "densities", "levels", "seeds", "retrains",
                                    "random_controls", "step", "snapshot_steps"),
    # Its copies are weight-rewinding runs at (density, K): method, schedule, K, budget and
    # data order are set by the analysis.
    "stability": tuple(n for n in _HPARAMS if n not in (
        "method", "schedule", "rate", "rounds", "rewind_step", "retrain", "weights_from",
        "lr_from", "data_order")) + _EXECUTION + (
            "densities", "seeds", "rewind_steps", "alphas", "bn", "bn_batches", "stable_below",
            "out"),
    "models": (),
    "report": ("root", "out", "reference_only", "metric"),
    "bench": ("dataset", "bench_models", "bench_inference", "bench_quickstart", "bench_repeats",
              "bench_steps", "bench_batch"),
    "export": ("run", "out"),
}
COMMAND_FLAGS["sweep"] = COMMAND_FLAGS["run"] + ("print",)

# command -> (check, execute, needs TensorFlow, trains)
_NONE = lambda raw_args: None  # noqa: E731
COMMAND_TABLE = {
    "run": (check_run, cmd_run, True, True),
    "sweep": (check_sweep, cmd_sweep, None, None),  # TensorFlow and training unless --print
    "stability": (check_stability, cmd_stability, True, True),
    "models": (_NONE, cmd_models, True, False),
    "report": (check_report, cmd_report, False, False),
    "bench": (check_bench, cmd_bench, True, False),
    "export": (check_export, cmd_export, True, False),
}
COMMANDS = tuple(COMMAND_TABLE)


def main(command: str, raw_args: List[str]) -> int:
  """Runs `command` with the already parsed FLAGS (raw_args: as typed, for sweep --print)."""
  if command not in COMMAND_TABLE:
    raise UsageError(f"unknown command {command!r}")
  check, execute, uses_tf, trains = COMMAND_TABLE[command]
  prepared = check(raw_args)
  if uses_tf is None:
    uses_tf = trains = not FLAGS.print
  if uses_tf:
    platform.start_tensorflow(FLAGS.verbose)
  if not trains:
    return execute(prepared)
  stopping.install()
  try:
    return execute(prepared)
  finally:
    stopping.uninstall()


def expand_flagfiles(args: List[str], _stack=()) -> List[str]:
  """Inlines --flagfile=PATH arguments, recursively.

  Unlike absl's own --flagfile, a path inside a flag file is relative to that
  file, so `tfrewind run --flagfile=/anywhere/flags/x.flags` works from any
  folder. Lines are flags (--name=value); '#' and '//' start comments.
  """
  out = []
  for arg in args:
    if not arg.startswith("--flagfile="):
      out.append(arg)
      continue
    path = arg.split("=", 1)[1]
    if not os.path.isfile(path):
      raise UsageError(f"flag file {path} does not exist: check the path "
                       f"(the paper flag files are in flags/)")
    real = os.path.realpath(path)
    if real in _stack:
      raise UsageError(f"flag file {path} includes itself")
    lines = []
    with open(path, encoding="utf-8") as f:
      for number, line in enumerate(f, start=1):
        line = line.strip()
        if not line or line.startswith("#") or line.startswith("//"):
          continue
        if not line.startswith("--"):
          raise UsageError(f"{path}:{number}: {line!r} is not a flag: write --name=value")
        if line.startswith("--flagfile="):
          inner = line.split("=", 1)[1]
          line = "--flagfile=" + os.path.join(os.path.dirname(path), inner)
        lines.append(line)
    out += expand_flagfiles(lines, _stack + (real,))
  return out


def _fail(message: str, status: int = 2):
  print(f"tfrewind: error: {message}", file=sys.stderr)
  sys.exit(status)


def run_main(argv: Optional[List[str]] = None) -> None:
  """Console entry point: `tfrewind COMMAND [--flags]`."""
  argv = list(sys.argv if argv is None else argv)
  helps = {"-h", "--help", "--helpshort", "--helpfull"} & set(argv[1:])
  if helps:
    print(__doc__)
    # --helpfull adds absl's own flags (logging, ...); the others list tfrewind's.
    print(FLAGS.get_help() if "--helpfull" in helps else FLAGS.module_help(sys.modules[__name__]))
    sys.exit(0)
  if len(argv) < 2 or argv[1] not in COMMANDS:
    got = argv[1] if len(argv) > 1 else "nothing"
    _fail(f"expected a command ({', '.join(COMMANDS)}), got {got}: e.g. "
          f"tfrewind run --flagfile=flags/quickstart.flags")
  command = argv[1]
  try:
    rest = [argv[0]] + expand_flagfiles(argv[2:])
    parsed = FLAGS(rest)
  except UsageError as e:
    _fail(str(e))
  except flags.Error as e:
    _fail(f"{e}; see tfrewind {command} --helpfull")
  if len(parsed) > 1:
    _fail(f"unexpected argument {parsed[1]!r}: flags are written --name=value")
  # INFO reaches the run folders' log.txt; the console shows warnings and errors, unless
  # --verbose=2 (TF's own INFO lines, e.g. its saver's timings, are chatter there).
  logging.set_verbosity(logging.INFO)
  logging.use_absl_handler()
  import logging as py_logging  # pylint: disable=g-import-not-at-top
  logging.get_absl_handler().setLevel(py_logging.INFO if FLAGS.verbose >= 2 else
                                      py_logging.WARNING)
  # TF's own Python logger may hold a handler of its own on the stderr of its import time.
  py_logging.getLogger("tensorflow").setLevel(py_logging.INFO if FLAGS.verbose >= 2 else
                                               py_logging.WARNING)
  sys.exit(_guarded_main(command, argv[2:]))


def _guarded_main(command, raw_args):
  try:
    return main(command, raw_args)
  except Stopped as e:
    print(f"tfrewind: {e}", file=sys.stderr)
    return 128 + e.signum
  except (UsageError, DataError) as e:
    _fail(str(e))
  except RunFailed as e:
    _fail(str(e), status=3)
  except DiskFull as e:
    _fail(e.strerror, status=1)
  except ValueError as e:
    _fail(str(e))
  except Exception as e:  # pylint: disable=broad-except
    if is_disk_full(e):  # TensorFlow's own writers (checkpoints, summaries) outside a run
      _fail(disk_full(e).strerror, status=1)
    if isinstance(e, OSError):
      _fail(f"{e.strerror or e}: {getattr(e, 'filename', '') or ''} (is the root unwritable?)",
            status=4)
    raise
