"""Every flag of the `tfrewind` command, each validated when it is parsed by a rule declared with
it: HParams fields carry their bounds (tfrewind.hparams.check_field), a count or number flag
cannot be defined without bounds, a list or string flag rejects an empty value unless its
definition says what empty means. COMMAND_FLAGS: the flags each command reads.

Every hyper-parameter flag is generated from a field of tfrewind.hparams.HParams
(its help text is the field's). The list flags --methods, --densities, --seeds
and --retrains make a grid; a singular flag given explicitly (--method,
--density, --seed, --retrain) overrides its list.
"""

import dataclasses
import re
import typing

from absl import flags

from tfrewind import hparams as hp_lib
from tfrewind import platform


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


def _control_item(text):
  from tfrewind import registries  # pylint: disable=g-import-not-at-top
  return None if text in registries.CONTROLS else (
      f"not a control: use {', '.join(registries.CONTROLS)}")


def _criterion_item(text):
  from tfrewind import registries  # pylint: disable=g-import-not-at-top
  return None if text in registries.CRITERIA else (
      f"not a criterion: use {', '.join(registries.CRITERIA)}")


def _model_item(text):
  from tfrewind import names  # pylint: disable=g-import-not-at-top
  return None if names.match_model(text) else f"not a network: use {names.MODEL_HELP}"


_define_hparam_flags()
_list("import", [], "Python modules imported before anything else, whose tfrewind.register_method / "
      "register_criterion / register_structure entries then work like the built-in ones "
      "(a module in the current folder is found); recorded in each run's hparams.json",
      empty="none")
_list("methods", None, "grid: retraining methods (overrides --method)", item=_method_item)
_string("densities", None, "grid: one-shot densities, e.g. 0.8^1..20 or 0.5,0.2")
_list("levels", None, "grid: structured_a/b levels, e.g. 1,2,3,4,5 (the released trials' five "
      "points; overrides --level)", item=_integer_item(min=1))
_list("seeds", None, "grid: seeds (overrides --seed)", item=_integer_item(min=0))
_list("retrains", None, "grid: retraining budgets, e.g. 10ep,40ep (Renda)",
      item=lambda t: hp_lib.check_item("retrain", t))
_list("random_controls", [], "grid: methods also run with --criterion=random (the same counts, "
      "a random mask), e.g. clr", item=_method_item, empty="no random controls")
_list("controls", [], "grid: every run also once with each control (shuffle_masks, "
      "shuffle_weights, shuffle_layers: the reproduction's), e.g. "
      "--flagfile=flags/common/shuffle_controls.flags", item=_control_item, empty="no controls")
_list("at_init", [], "grid: criteria also run as pruning at initialisation (--mask_from=0it "
      "--method=weight_rewind --rewind_step=0it), e.g. snip,grasp,synflow,random",
      item=_criterion_item, empty="none")
_list("train_budgets", [], "grid: --train_steps values, each stretching the LR schedule with it "
      "(boundaries and --gradual_end scale): a gradual run's total budgets, e.g. 36ep,72ep",
      item=lambda t: hp_lib.check_item("train_steps", t), empty="--train_steps alone")
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
flags.DEFINE_boolean("require_gpu", False, "fail at once, in one line, when TensorFlow sees no GPU "
                     "(instead of training on the CPU)")
_number(flags.DEFINE_integer, "steps_per_execution", 1, "train steps per compiled call", min=1)
flags.DEFINE_boolean("deterministic", False, "op determinism: resumed runs match bitwise")
flags.DEFINE_boolean("share_prefixes", True, "train each group of fine-tuning budgets once, "
                     "to the largest, writing the smaller budgets' run folders as it passes "
                     "them (the same results as separate runs)")
flags.DEFINE_boolean("print", False, "sweep: print one command per run instead of running")
flags.DEFINE_enum("stage", None, ["dense", "branches"], "run: only the dense networks of the "
                  "grid (dense), or everything (branches, the default); sweep --print: a line "
                  "per dense network, or per branch with the budgets of a shared prefix on "
                  "one line (two Slurm arrays, the second --dependency=afterok on the first)")
flags.DEFINE_enum("launch", None, ["local"], "sweep: run the lines as processes on this "
                  "machine (tfrewind.launch): a slot per GPU (--gpus, --per_gpu) or per CPU "
                  "worker (--gpus=none --workers)")
flags.DEFINE_string("gpus", None, "sweep --launch=local: GPU indices (0,1), or none for the "
                    "CPU (default: every GPU that CUDA_VISIBLE_DEVICES or nvidia-smi names)")
_validate("gpus", lambda v: None if v is None or v == "none" or re.fullmatch(
    r"\d+(,\d+)*", v) else f"{v!r} is neither GPU indices (0,1) nor none")
_number(flags.DEFINE_integer, "per_gpu", 1, "sweep --launch=local: lines at a time on each GPU "
        "(memory growth on when above 1)", min=1)
_number(flags.DEFINE_integer, "workers", None, "sweep --launch=local --gpus=none: lines at a "
        "time on the CPU", min=1)
flags.DEFINE_boolean("plan", False, "sweep: print what the sweep costs (optimizer steps, dense "
                     "and retraining, what shared prefixes would save, GPU hours) and stop")
_number(flags.DEFINE_float, "its", None, "sweep --plan: training iterations per second for the "
        "GPU hours (default: the reproduction's RTX 3080 speed of each network)", above=0)
_number(flags.DEFINE_integer, "verbose", 1, "0: a line per run; 1: also Keras progress bars on "
        "a terminal (never in a log file); 2: everything, TensorFlow's own log lines included "
        "(each run folder's log.txt always has them)", min=0, max=2)
_string("out", "report", "report/export: output folder (doctor: default doctor/)")
flags.DEFINE_boolean("reference_only", False, "report: draw only the published curves")
flags.DEFINE_enum("metric", "final", ["final", "best"], "report: final test accuracy, or the "
                  "best epoch-end test accuracy (the reproduction's reported ACC)")
_string("run", None, "export: a finished run folder")
_number(flags.DEFINE_integer, "latency_runs", 50, "export: TFLite invocations timed per model "
        "and thread count, after 5 of warm-up (0: no latency)", min=0)
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


# The flags each command reads (every command parses every flag, so that one flag file serves
# run, sweep and stability; tests/test_flags.py walks each command's own).
_HPARAMS = tuple(f.name for f in dataclasses.fields(hp_lib.HParams))
_EXECUTION = ("root", "distribution", "jit_compile", "steps_per_execution", "deterministic",
              "verbose", "import", "require_gpu", "share_prefixes")
COMMAND_FLAGS = {
    "run": _HPARAMS + _EXECUTION + ("methods", "densities", "levels", "seeds", "retrains",
                                    "random_controls", "step", "snapshot_steps", "controls",
                                    "at_init", "train_budgets", "stage"),
    # Its copies are weight-rewinding runs at (density, K): method, schedule, K, budget and
    # data order are set by the analysis.
    "stability": tuple(n for n in _HPARAMS if n not in (
        "method", "schedule", "rate", "rounds", "rewind_step", "retrain", "weights_from",
        "lr_from", "data_order", "gradual_begin", "gradual_end", "gradual_every",
        "gradual_power")) + _EXECUTION + (
            "densities", "seeds", "rewind_steps", "alphas", "bn", "bn_batches", "stable_below",
            "out"),
    "models": (),
    "report": ("root", "out", "reference_only", "metric", "import"),
    "bench": ("dataset", "bench_models", "bench_inference", "bench_quickstart", "bench_repeats",
              "bench_steps", "bench_batch", "import"),
    "export": ("run", "out", "latency_runs", "import"),
    "doctor": ("out",),
}
COMMAND_FLAGS["sweep"] = COMMAND_FLAGS["run"] + ("print", "plan", "its", "launch", "gpus",
                                                 "per_gpu", "workers")
