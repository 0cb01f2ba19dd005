"""The commands of `tfrewind`: run, sweep, stability, models, report, bench, export.

Each is a check (TF-free: every flag, the grid, the paths; a bad value fails in a second,
before TensorFlow starts) and an execution, given what the check prepared (COMMAND_TABLE).
"""

import dataclasses
import os
import shlex
from typing import List

from absl import flags, logging

from tfrewind import flagdefs
from tfrewind import hparams as hp_lib
from tfrewind import platform
from tfrewind import registries
from tfrewind import stopping
from tfrewind import store
from tfrewind import sweep
from tfrewind.errors import UsageError

FLAGS = flags.FLAGS
COMMAND_FLAGS = flagdefs.COMMAND_FLAGS


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
  seeds = _pick("seed", "seeds", int)  # the flag's validator checked each
  retrains = _pick("retrain", "retrains", str)
  densities = _densities()
  levels = _pick("level", "levels", int)
  unknown = sorted(set(FLAGS.random_controls) - set(methods))
  if unknown:
    raise UsageError(f"--random_controls={','.join(unknown)} names no method of the grid "
                     f"({','.join(methods)})")
  if registries.STRUCTURES.get(base.structure) and registries.structure(
      base.structure).density is not None and FLAGS["density"].present:
    raise UsageError(f"--structure={base.structure} sets the density itself "
                     f"({registries.structure(base.structure).counts}): leave --density out")
  runs = sweep.grid(base, methods, densities, seeds, retrains, FLAGS.random_controls, levels,
                    FLAGS.controls, FLAGS.at_init, FLAGS.train_budgets)
  sweep.validate(runs)
  runs = sweep.unique(runs)
  if check_networks:
    sweep.check_densities(runs)
  return runs


def _snapshot_steps(runs) -> List[int]:
  extra = [hp_lib.parse_steps(v, runs[0].steps_per_epoch(), "snapshot_steps")
           for v in FLAGS.snapshot_steps] if runs else []
  return sorted(set(sweep.snapshot_steps(runs)) | set(extra))


# ---------------------------------------------------------------------------- commands
def _runner(strategy, snapshot_steps):
  """The Runner of --root with the execution flags (never part of a run's identity)."""
  from tfrewind import experiment  # pylint: disable=g-import-not-at-top
  return experiment.Runner(experiment.Env(
      root=FLAGS.root, strategy=strategy, jit_compile=FLAGS.jit_compile,
      steps_per_execution=FLAGS.steps_per_execution, deterministic=FLAGS.deterministic,
      verbose=FLAGS.verbose, snapshot_steps=snapshot_steps,
      worker=platform.worker_index(strategy)))


def _devices():
  """The devices of this process (in the first progress line and every result.json);
  --require_gpu turns none into an error."""
  found = platform.devices()
  if FLAGS.require_gpu:
    platform.require_gpu(found)
  return found


def check_run():
  _folder_root()
  return make_grid(check_networks=False)


def cmd_run(runs) -> int:
  from tfrewind import progress as progress_lib  # pylint: disable=g-import-not-at-top
  import time  # pylint: disable=g-import-not-at-top
  t0 = time.time()
  # First: collective ops must be configured before any TF op runs.
  strategy = platform.strategy(FLAGS.distribution)
  devices = _devices()
  runner = _runner(strategy, _snapshot_steps(runs))
  for hp in {(h.dataset, h.data_dir, h.synthetic_size): h for h in runs}.values():
    runner.arrays(hp)  # missing data fails here, in seconds, before any training
  sweep.check_densities(runs)
  logging.info("root %s: %d runs", os.path.abspath(FLAGS.root), len(runs))
  shared = runner.share(runs) if FLAGS.share_prefixes else 0
  if shared:
    print(f"{shared} of {len(runs)} runs are the first steps of a longer budget's run: each "
          f"is written by that run as it passes (shared prefixes)", flush=True)
  if FLAGS.stage == "dense":
    return _dense_stage(runner, runs, devices)
  progress = progress_lib.Progress(runs, devices=devices)
  for hp in runs:
    runner.run(hp, progress)
  _print_table(progress.rows)
  print(f"\nfinished {len(runs)} runs in {time.time() - t0:.0f} s; run folders in {FLAGS.root}/")
  print(f"  watch:   tensorboard --logdir {FLAGS.root}")
  print(f"  report:  tfrewind report --root={FLAGS.root} --out=report")
  return 0


def _dense_stage(runner, runs, devices) -> int:
  """--stage=dense: the grid's dense networks only (the first Slurm array of a sweep)."""
  dense = {}
  for hp in runs:
    if not registries.schedule(hp.schedule).from_scratch:
      dense.setdefault(store.dense_paths(FLAGS.root, hp).dir, hp)
  for i, hp in enumerate(dense.values(), start=1):
    paths = runner.dense(hp)
    result = store.read_json(paths.result)
    on = f" on {', '.join(devices)}" if i == 1 and devices else ""
    print(f"[{i}/{len(dense)}] dense {hp.model} seed {hp.seed}: test "
          f"{result['test_accuracy']:.4f}{on}: {paths.dir}", flush=True)
  return 0


def _print_table(rows):
  width = max([14] + [len(r[1]) for r in rows])
  print(f"\n{'seed':>4}  {'method':<{width}} {'density':>8}  {'test acc':>8}  {'dense':>6}  "
        f"{'change':>7}")
  for seed, method, density, acc, dense in rows:
    print(f"{seed:>4}  {method:<{width}} {density:>8.4f}  {acc:>8.4f}  " + (
        f"{dense:>6.4f}  {100 * (acc - dense):>+6.2f}pt" if dense is not None else
        f"{'-':>6}  {'-':>7}"))


_GRID_FLAGS = ("methods", "densities", "seeds", "retrains", "levels", "method", "density", "seed",
               "retrain", "level", "print", "plan", "its", "snapshot_steps", "random_controls",
               "controls", "at_init", "train_budgets", "launch", "gpus", "per_gpu", "workers",
               "stage")


def check_sweep():
  return check_run()


def cmd_sweep(runs) -> int:
  """Runs the grid in order; with --print writes one `tfrewind run` line per run (--stage=dense:
  per dense network; --stage=branches: the budgets of a shared prefix on one line); with
  --launch=local runs those lines as processes on this machine's GPUs (tfrewind.launch)."""
  if FLAGS.plan:
    print("\n".join(sweep.cost_lines(sweep.cost(runs), FLAGS.its)))
    return 0
  if FLAGS.launch == "local":
    from tfrewind import launch  # pylint: disable=g-import-not-at-top
    slots = launch.slots(FLAGS.gpus, FLAGS.per_gpu, FLAGS.workers)
    tasks = [launch.Task(args[1:], label, folders, dense, os.path.join(folders[-1], "launch.log"))
             for args, label, folders, dense in sweep_lines(runs, FLAGS.stage or "branches")]
    return launch.execute(tasks, slots)
  if not FLAGS.print:
    return cmd_run(runs)
  for args, *_ in sweep_lines(runs, FLAGS.stage):
    print(" ".join(shlex.quote(a) for a in args))
  return 0


def sweep_lines(runs, stage=None):
  """sweep.lines of the grid, with the flags that the command line set."""
  # From the parsed flags, not argv: `--methods finetune,lr_rewind` (a space, as absl allows)
  # must not leave a stray argument behind, and a line must not depend on where its flag
  # files are.
  keep = [FLAGS[name].serialize() for name in COMMAND_FLAGS["run"]
          if FLAGS[name].present and name not in _GRID_FLAGS]
  return sweep.lines(runs, base_hparams(), keep, _snapshot_steps(runs), FLAGS.root, stage,
                     bool(FLAGS.random_controls))


def cmd_models(_) -> int:
  from tfrewind import names  # pylint: disable=g-import-not-at-top
  from tfrewind.models import registry  # pylint: disable=g-import-not-at-top
  import tf_keras as keras  # pylint: disable=g-import-not-at-top
  print(f"{'model':<10} {'input':>9} {'trainable':>12} {'prunable':>12} {'kernels':>8}")
  for name in registry.PRESETS:
    imagenet = names.match_model(name)[0] == "imagenet_resnet"
    model = registry.build_model(name, num_classes=1000 if imagenet else 10)
    c = registry.counts(model)
    shape = "224x224" if imagenet else "32x32"
    print(f"{name:<10} {shape:>9} {c['trainable']:>12,} {c['prunable']:>12,} "
          f"{c['prunable_layers']:>8}")
    keras.backend.clear_session()
  return 0


def _existing_root() -> None:
  """report reads the runs of --root: a missing one is a typo, never an empty study."""
  root = FLAGS.root
  if not os.path.exists(root):
    raise UsageError(f"--root={root} does not exist: check the path (tfrewind run --root={root} "
                     f"makes it)")
  _folder_root()


def _folder_root() -> None:
  """Every command that trains (run, sweep, stability) makes its --root as it writes the first
  run folder, the same way; only a root that is a file is refused before any training."""
  if os.path.exists(FLAGS.root) and not os.path.isdir(FLAGS.root):
    raise UsageError(f"--root={FLAGS.root} is a file, not a folder of run folders")


def check_report():
  if not FLAGS.reference_only:
    _existing_root()


def cmd_report(_) -> int:
  from tfrewind.report import cli as report_cli  # pylint: disable=g-import-not-at-top
  return report_cli.main(FLAGS.root, FLAGS.out, FLAGS.reference_only, FLAGS.metric)


def check_bench():
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


def check_stability():
  _folder_root()
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
  _devices()
  sweep.check_densities(runs)
  runner = _runner(strategy, steps)
  runner.arrays(base)  # missing data fails here, before any training
  table, barriers = stability.analyse(runner, base, densities, steps, seeds, FLAGS.alphas,
                                      FLAGS.bn, FLAGS.bn_batches, FLAGS.stable_below)
  print(stability.write(FLAGS.out, table, barriers))
  print(f"wrote stability.csv, barriers.csv, summary.md and figures to {FLAGS.out}/")
  return 0


def check_export():
  if not FLAGS.run:
    raise UsageError("export needs --run=RUN_FOLDER (a finished run) and --out=FOLDER")
  store.finished_run(FLAGS.run)


def cmd_export(_) -> int:
  from tfrewind import export  # pylint: disable=g-import-not-at-top
  info = export.export(FLAGS.run, FLAGS.out, FLAGS.latency_runs)
  print(f"exported {info['model']} ({info['structure']}, density {info['density']:.4g}, test "
        f"accuracy {info['test_accuracy']:.4f}) to {FLAGS.out}: {info['parameters']:,} -> "
        f"{info['slim_parameters']:,} parameters, {info['dense_macs']:,} -> "
        f"{info['slim_dense_macs']:,} MACs dense; saved_model/, model.tflite, export.json")
  if "tflite_latency_ms" in info:
    lat = info["tflite_latency_ms"]
    print("TFLite latency of one image, ms (1 thread / all {}): ".format(
        info["tflite_threads"]["all"]) + ", ".join(
            f"{k} {v['1']:.3f} / {v['all']:.3f}" for k, v in lat.items()))
  return 0


def cmd_doctor(_) -> int:
  from tfrewind import doctor  # pylint: disable=g-import-not-at-top
  return doctor.run(FLAGS.out if FLAGS["out"].present else "doctor")


# command -> (check, execute, needs TensorFlow, trains)
_NONE = lambda: None  # noqa: E731
COMMAND_TABLE = {
    "run": (check_run, cmd_run, True, True),
    "sweep": (check_sweep, cmd_sweep, None, None),  # TensorFlow and training unless --print
    "stability": (check_stability, cmd_stability, True, True),
    "models": (_NONE, cmd_models, True, False),
    "report": (check_report, cmd_report, False, False),
    "bench": (check_bench, cmd_bench, True, False),
    "export": (check_export, cmd_export, True, False),
    "doctor": (_NONE, cmd_doctor, True, False),
}
COMMANDS = tuple(COMMAND_TABLE)


def main(command: str) -> int:
  """Runs `command` with the already parsed FLAGS."""
  if command not in COMMAND_TABLE:
    raise UsageError(f"unknown command {command!r}")
  check, execute, uses_tf, trains = COMMAND_TABLE[command]
  prepared = check()
  if uses_tf is None:  # the executor's processes start TensorFlow, never the sweep itself
    uses_tf = trains = not (FLAGS.print or FLAGS.plan or FLAGS.launch)
  if uses_tf:
    platform.start_tensorflow(FLAGS.verbose)
  if not trains:
    return execute(prepared)
  stopping.install()
  try:
    return execute(prepared)
  finally:
    stopping.uninstall()
