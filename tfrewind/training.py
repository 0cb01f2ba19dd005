"""Training one phase of a run: build the network, fit it from its last good state, measure it.

Plain functions under the Runner (tfrewind.experiment), which decides what to
run and holds the locks. A phase resumes from its newest readable epoch
checkpoint; the input pipeline is positioned at the resumed step, so with
--deterministic a resumed phase ends bitwise equal to an uninterrupted one.
Checkpoints never hold non-finite weights, so a diverged run, rerun once its
cause is fixed, resumes from its last finite state.
"""

import contextlib
import dataclasses
import logging as py_logging
import math
import os
import shutil
import sys
import tempfile
import time
from typing import Callable, Optional, Sequence

import numpy as np
import tensorflow as tf
from absl import logging

import tf_keras as keras
from tfrewind import callbacks as callbacks_lib
from tfrewind import checkpoints
from tfrewind import data as data_lib
from tfrewind import hparams as hp_lib
from tfrewind import lr as lr_lib
from tfrewind import measure as measure_lib
from tfrewind import names
from tfrewind import platform
from tfrewind import protocols
from tfrewind import registries
from tfrewind import rewind
from tfrewind import snapshots
from tfrewind import stopping
from tfrewind import store
from tfrewind.errors import ConfigError, RunFailed, disk_full, is_disk_full
from tfrewind.models import registry
from tfrewind.pruning import sparsity


@dataclasses.dataclass
class Env:
  """How runs execute (never part of a run's identity)."""
  root: str = "runs"
  strategy: Optional[tf.distribute.Strategy] = None
  jit_compile: bool = False
  steps_per_execution: int = 1
  deterministic: bool = False
  verbose: int = 1
  # Dense steps to snapshot for weight restoring (all the grid needs, so one dense run serves all).
  snapshot_steps: Sequence[int] = ()
  # Multi-worker training: every worker trains in lockstep, only the chief (None) writes to
  # the root; worker i writes its copies under <root>/.worker<i> (tfrewind.platform).
  worker: Optional[int] = None


@dataclasses.dataclass(frozen=True)
class Phase:
  """One fit of a run: optimizer steps start..end, from `initial` (a checkpoint) or scratch."""
  kind: str  # "dense" or "prune"
  round: int  # 0 for dense
  start: int
  end: int
  initial: Optional[str] = None
  callbacks: Sequence[keras.callbacks.Callback] = ()
  # The round whose initialisation and data order the phase uses (default: its own); a
  # gradual run, which prunes while it trains from scratch, uses the dense trunk's (0).
  stream: Optional[int] = None
  # The tap record of a shorter budget written by a longer run (tfrewind.prefixes): `initial`
  # is then that run's state at this phase's end, and the phase only writes its results.
  shared: Optional[dict] = None


# DataFn(round, first step of the phase's stream) -> Bundle: the Runner caches decoded arrays.
DataFn = Callable[[hp_lib.HParams, int, int], data_lib.Bundle]


def lr_schedule(hp: hp_lib.HParams) -> lr_lib.StepDecay:
  """The dense run's LR schedule."""
  return lr_lib.StepDecay(hp.lr, hp.boundaries, hp.lr_factor,
                          protocols.get(hp.protocol).old_lr_at_boundary, hp.lr_warmup,
                          hp_lib.train_size(hp) / hp.batch_size)


def build(hp: hp_lib.HParams, strategy=None, jit_compile: bool = False,
          steps_per_execution: int = 1):
  """The compiled prunable model of `hp`, with a built optimizer (so restores are immediate)."""
  strategy = strategy or tf.distribute.get_strategy()
  keras.mixed_precision.set_global_policy("mixed_float16" if hp.mixed_precision else "float32")
  with strategy.scope():
    model = sparsity.prunable(registry.build_model(
        hp.model, num_classes=names.num_classes(hp.dataset),
        input_shape=names.image_shape(hp.dataset, hp.image_size),
        **hp.model_overrides()), structure=hp.structure)
    optimizer = keras.optimizers.SGD(lr_schedule(hp), momentum=hp.momentum, nesterov=hp.nesterov)
    model.compile(optimizer, keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  metrics=["accuracy"], jit_compile=jit_compile,
                  steps_per_execution=steps_per_execution)
    getattr(model.optimizer, "inner_optimizer", model.optimizer).build(
        model.trainable_variables)
    # The loss and metric containers too: Keras builds them (their variables) inside the first
    # train step, which makes tf.function trace that step twice (seconds for a ResNet-50).
    logits = tf.zeros((1,) + tuple(model.output_shape[1:]))
    model.compiled_loss.build(logits)
    model.compiled_metrics.build(logits, tf.zeros((1,), tf.int64))
  return model


def _fresh_model(hp: hp_lib.HParams, round_: int, env: Env):
  """The seeded network a phase starts from: the same initial weights in every process."""
  keras.utils.set_random_seed(hp.seed * 1000 + round_)
  if env.deterministic:
    tf.config.experimental.enable_op_determinism()
  keras.backend.clear_session()
  return build(hp, env.strategy, env.jit_compile, env.steps_per_execution)


def _state(hp, paths, stream: int, env: Env):
  """The phase's fresh network, its checkpoint and the manager of its epoch checkpoints."""
  model = _fresh_model(hp, stream, env)
  checkpoint = tf.train.Checkpoint(model=model, optimizer=model.optimizer)
  return model, checkpoint, tf.train.CheckpointManager(checkpoint, paths.backup, max_to_keep=2)


def train_phase(hp: hp_lib.HParams, paths: store.RunPaths, phase: Phase, env: Env,
                data: DataFn, dense_run: str) -> None:
  """Trains `phase` into `paths` (resuming what is there) and writes its result."""
  stopping.check(run=paths.dir)
  try:
    os.makedirs(paths.dir, exist_ok=True)
    with _log_file(paths):
      _train_phase(hp, paths, phase, env, data, dense_run)
  except (OSError, tf.errors.OpError) as e:
    if is_disk_full(e):
      try:  # a half-written checkpoint or temporary file holds space the rerun needs
        store.remove_leftovers(paths)
      except OSError:
        pass
      raise disk_full(e, paths.dir) from None
    raise


def _train_phase(hp, paths, phase, env, data, dense_run):
  t0 = time.time()
  store.remove_leftovers(paths)
  if not os.path.exists(paths.hparams):
    # Derived values too, so that the report reads JSON and never imports training code.
    store.write_json(paths.hparams, {
        "kind": phase.kind, "round": phase.round, "hparams": hp.to_json(),
        # structured_a/b prune by per-layer ratios: their density is what the prune leaves.
        "density_target": (None if hp.by_level else hp.densities[phase.round - 1])
                          if phase.kind == "prune" else 1.0,
        "density_counts": registries.structure(hp.structure).counts,
        "dense_run": dense_run, "steps": phase.end - phase.start,
        # Optimizer steps from initialisation: dense plus every round's, or a gradual run's.
        "total_steps": phase.end,
        "epoch_steps": hp.steps_per_epoch(),
        # The user modules (--import) whose methods, criteria or structures this run may use.
        "imports": list(registries.IMPORTED)})
  logging.info("%s run %s", phase.kind, paths.dir)
  stream = phase.round if phase.stream is None else phase.stream
  model, checkpoint, manager = _state(hp, paths, stream, env)
  final = checkpoints.restore_final(checkpoint, paths, model, phase.end)
  if final:
    # Trained, but its result was lost (a kill between the two writes, or a corrupt file).
    finish(hp, paths, model, checkpoint, data(hp, stream, 0), phase.kind, t0, phase.shared)
    return
  if final is None:  # read in part, with restores pending from it: built again
    model, checkpoint, manager = _state(hp, paths, stream, env)
  backup = checkpoints.restore_backup(checkpoint, manager)
  while backup is None:  # likewise, then the checkpoint before it (or the phase's start)
    model, checkpoint, manager = _state(hp, paths, stream, env)
    backup = checkpoints.restore_backup(checkpoint, manager)
  if not backup and phase.initial is not None:
    try:
      checkpoints.read(checkpoint, phase.initial)
    except checkpoints.CheckpointError as e:
      raise checkpoints.Unreadable(e) from None
  step = int(model.optimizer.iterations.numpy())
  if step < phase.start and (phase.kind != "dense" or step != 0):
    raise RuntimeError(f"{paths.dir}: starts at step {step}, expected {phase.start}")
  bundle = data(hp, stream, step - phase.start)
  steps_per_epoch = hp.steps_per_epoch(bundle.steps_per_epoch)
  callbacks_lib.write_hparams_summary(paths.tensorboard, hp, phase.kind, phase.round)
  callbacks = [*phase.callbacks, callbacks_lib.StopAtStep(phase.end), callbacks_lib.StopOnSignal(),
               keras.callbacks.TerminateOnNaN(), callbacks_lib.EpochBackup(manager),
               callbacks_lib.Ledger(paths.ledger, phase.kind),
               keras.callbacks.CSVLogger(paths.metrics, append=True),
               callbacks_lib.MaskSummaries(paths.tensorboard, update_freq="epoch",
                                           profile_batch=0)]
  # Keras' bars only on a terminal: in a Slurm log they are thousands of lines.
  bars = int(env.verbose >= 1 and sys.stdout.isatty())
  if bars or env.verbose >= 2:
    label = (f"dense {hp.model} seed {hp.seed}" if phase.kind == "dense" else
             f"{hp.method} round {phase.round} density {hp.densities[phase.round - 1]:.4g}")
    print(f"== {label} | steps {step}..{phase.end} | {paths.dir}", flush=True)
  eval_data = bundle.validation if bundle.validation is not None else bundle.test
  epochs = math.ceil((phase.end - phase.start) / steps_per_epoch)
  epoch, into = divmod(step - phase.start, steps_per_epoch)
  if phase.shared is not None and step == phase.end:
    _shared_rows(paths, phase, model, eval_data, epoch, into)
  losses = []
  if into and step < phase.end:
    # Stopped by a signal inside epoch `epoch`: finish that epoch first, so that every later
    # epoch ends (evaluates, checkpoints) at the step where an uninterrupted run's does.
    losses += model.fit(bundle.train, epochs=epoch + 1, initial_epoch=epoch,
                        steps_per_epoch=steps_per_epoch - into, validation_data=eval_data,
                        callbacks=callbacks, verbose=bars).history.get("loss", [])
    epoch += 1
    bundle = data(hp, stream, epoch * steps_per_epoch)
  if _iterations(model) < phase.end and stopping.requested() is None and all(
      np.isfinite(losses)) and epoch < epochs:
    losses += model.fit(bundle.train, epochs=epochs, initial_epoch=epoch,
                        steps_per_epoch=steps_per_epoch, validation_data=eval_data,
                        callbacks=callbacks, verbose=bars).history.get("loss", [])
  reached = _iterations(model)
  if any(not np.isfinite(l) for l in losses) or (reached < phase.end and
                                                 stopping.requested() is None):
    store.write_json(paths.failed, {"reason": "loss became NaN or Inf", "step": reached,
                                    "phase": phase.kind,
                                    "resume_from": checkpoints.newest_step(manager)})
    raise RunFailed(f"{paths.dir}: loss became NaN or Inf near step {reached}; see "
                    f"{paths.failed} (a rerun resumes from the last finite checkpoint)")
  if reached < phase.end:
    if checkpoints.newest_step(manager) != reached:  # the epoch end did not save it (non-finite)
      logging.warning("stopped at step %d without a checkpoint of it: a rerun resumes from "
                      "step %s", reached, checkpoints.newest_step(manager))
    raise stopping.stopped(reached, phase.end, paths.dir)
  finish(hp, paths, model, checkpoint, bundle, phase.kind, t0, phase.shared)


def _shared_rows(paths, phase, model, eval_data, epoch, into):
  """metrics.csv of a budget that a longer run trained through: that run's rows of the epochs
  before this phase's last step, then, if the budget ends inside an epoch, the row that a run
  alone writes there (the epoch's running training metrics from the tap, an evaluation, and
  what the phase's callbacks add, with Keras' own CSVLogger)."""
  from tfrewind import prefixes  # pylint: disable=g-import-not-at-top
  source = os.path.join(os.path.dirname(paths.dir), phase.shared["shared_from"])
  prefixes.copy_rows(store.RunPaths(source).metrics, paths.metrics, epoch)
  if into:
    logs = dict(phase.shared["logs"])
    logs.update({f"val_{k}": v for k, v in model.evaluate(eval_data, verbose=0,
                                                          return_dict=True).items()})
    csv = keras.callbacks.CSVLogger(paths.metrics, append=True)
    for callback in [*phase.callbacks, csv]:
      callback.set_model(model)
    csv.on_train_begin()
    for callback in [*phase.callbacks, csv]:
      callback.on_epoch_end(epoch, logs)
    csv.on_train_end()
  store.append_line(paths.ledger, {"phase": "shared", "from": phase.shared["shared_from"],
                                   "start": phase.end, "end": phase.end, "steps": 0,
                                   "pid": os.getpid()})


@contextlib.contextmanager
def _log_file(paths: store.RunPaths):
  """Every log record (INFO and up) of the phase, also in the run folder's log.txt."""
  handler = py_logging.FileHandler(paths.log, encoding="utf-8")
  handler.setLevel(py_logging.INFO)
  handler.setFormatter(logging.PythonFormatter())
  root = py_logging.getLogger()
  root.addHandler(handler)
  try:
    yield
  finally:
    root.removeHandler(handler)
    handler.close()


def _iterations(model) -> int:
  return int(model.optimizer.iterations.numpy())


def replay_dense(hp: hp_lib.HParams, paths: store.RunPaths, steps: Sequence[int], env: Env,
                 data: DataFn) -> None:
  """Retrains the dense trunk from its initialisation to max(steps), saving a snapshot at each.

  The same seed builds the same initial weights and the input stream is a pure
  function of the seed, so the replay follows the dense run's trajectory
  (bitwise under --deterministic). Only the snapshots are written, and a ledger
  line with phase "replay".
  """
  model = _fresh_model(hp, 0, env)
  # SnapshotCallback fires before a batch: the batch after the last step reaches it.
  stop = max(steps) + 1
  bundle = data(hp, 0, 0)
  steps_per_epoch = hp.steps_per_epoch(bundle.steps_per_epoch)
  callbacks = [rewind.SnapshotCallback(k, paths.snapshot(k)) for k in steps]
  callbacks += [callbacks_lib.StopAtStep(stop), callbacks_lib.Ledger(paths.ledger, "replay")]
  model.fit(bundle.train, epochs=math.ceil(stop / steps_per_epoch),
            steps_per_epoch=steps_per_epoch, callbacks=callbacks, verbose=0)


def network_at(hp: hp_lib.HParams, paths: store.RunPaths, snapshot: Optional[str],
               env: Env):
  """The dense run's network (weights and BatchNorm statistics) at a snapshot's step, or
  at its end (snapshot None: its final checkpoint)."""
  if snapshot is None:
    return load_final(hp, paths, env)
  model = _fresh_model(hp, 0, env)
  snapshots.rewind_weights(model, snapshots.Snapshot.load(snapshot), optimizer=False)
  return model


def load_final(hp: hp_lib.HParams, paths: store.RunPaths, env: Optional[Env] = None):
  """The compiled model of a finished run, restored from its final checkpoint (ValueError
  naming the file if it cannot be read)."""
  env = env or Env()
  model = build(hp, env.strategy, env.jit_compile, env.steps_per_execution)
  checkpoint = tf.train.Checkpoint(model=model, optimizer=model.optimizer)
  try:
    checkpoints.read(checkpoint, paths.final_ckpt)
  except checkpoints.CheckpointError as e:
    raise checkpoints.Unreadable(e) from None
  return model


def finish(hp, paths, model, checkpoint, bundle, kind, t0, shared=None) -> None:
  """Writes the final checkpoint, then result.json (the run is finished from there on).

  shared: the tap record when a longer budget's run trained this one (tfrewind.prefixes)."""
  result = measure_lib.measure(hp, model, bundle, pruned=kind == "prune")
  result.update(wall_time_s=round(time.time() - t0, 3), kind=kind,
                devices=platform.devices(), **measure_lib.epoch_evaluations(hp, paths))
  if shared is not None:
    result["shared_from"] = {"run": shared["shared_from"], "step": shared["step"]}
  tmp = tempfile.mkdtemp(prefix="final.tmp-", dir=paths.dir)
  checkpoint.write(os.path.join(tmp, "ckpt"))
  store.replace_dir(tmp, paths.final)
  callbacks_lib.write_final_scalars(paths.tensorboard, result)
  store.write_json(paths.result, result)  # last: the run is finished from here on
  if os.path.exists(paths.failed):  # a success replaces the failure record
    os.replace(paths.failed, paths.failed + ".resolved")
  store.append_line(paths.ledger, {"phase": "finished", "pid": os.getpid(),
                                   "steps": 0, "start": result["steps"], "end": result["steps"]})
  shutil.rmtree(paths.backup, ignore_errors=True)
