"""The experiment: a dense trunk, then one retraining branch per method and density.

Phases are idempotent: each first checks for its result.json, so rerunning a
command does no training for finished runs, a dense network is trained once for
every branch that starts from it, and iterative round r starts from round r-1.
A phase killed mid-way resumes from its last epoch checkpoint; the input
pipeline is positioned at the resumed step, so with --deterministic a resumed
run ends bitwise equal to an uninterrupted one.

Example:
  >>> runner = Runner(root="runs")
  >>> runner.branch(HParams(model="resnet20", method="lr_rewind", density=0.107))
"""

import contextlib
import dataclasses
import math
import os
import shutil
import tempfile
import time
from typing import Dict, List, Optional, Sequence

import numpy as np
import tensorflow as tf
from absl import logging
from tensorflow_model_optimization.python.core.sparsity.keras import pruning_callbacks

import tf_keras as keras
from tfrewind import data as data_lib
from tfrewind import macs as flops_lib
from tfrewind import hparams as hp_lib
from tfrewind import lr as lr_lib
from tfrewind import rewind
from tfrewind.pruning import slim as slim_lib
from tfrewind import store
from tfrewind.models import registry
from tfrewind.pruning import schedules
from tfrewind.pruning import sparsity


class RunFailed(RuntimeError):
  """Training diverged (NaN/Inf loss); the run folder holds failed.json."""


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
  # the root; worker i writes its copies under <root>/.worker<i>, where its restarts find them.
  worker: Optional[int] = None


class StopAtStep(keras.callbacks.Callback):
  """Ends fit() when optimizer.iterations reaches `step` (a phase's last step)."""

  def __init__(self, step):
    super().__init__()
    self.step = step

  def on_train_batch_end(self, batch, logs=None):
    if int(self.model.optimizer.iterations.numpy()) >= self.step:
      self.model.stop_training = True


class EpochBackup(keras.callbacks.Callback):
  """Checkpoints model and optimizer at every epoch end (keeps the last two).

  Our own rather than keras' BackupAndRestore because the runner must know the
  resumed step before fit() starts, to position the input pipeline there.
  """

  def __init__(self, manager):
    super().__init__()
    self.manager = manager

  def on_epoch_end(self, epoch, logs=None):
    self.manager.save(checkpoint_number=int(self.model.optimizer.iterations.numpy()))


class Ledger(keras.callbacks.Callback):
  """Appends one line per fit() session to trained.jsonl: which steps this process trained."""

  def __init__(self, path, phase):
    super().__init__()
    self.path, self.phase = path, phase

  def on_train_begin(self, logs=None):
    self._start = int(self.model.optimizer.iterations.numpy())
    self._t0 = time.time()

  def on_train_end(self, logs=None):
    end = int(self.model.optimizer.iterations.numpy())
    store.append_line(self.path, {"phase": self.phase, "start": self._start, "end": end,
                                  "steps": end - self._start, "pid": os.getpid(),
                                  "seconds": round(time.time() - self._t0, 3)})


def write_hparams_summary(log_dir: str, hp: hp_lib.HParams, kind: str, round_: int) -> None:
  """Records the run in TensorBoard's HParams plugin so methods and densities compare."""
  from tensorboard.plugins.hparams import api as hp_api  # pylint: disable=g-import-not-at-top
  values = {"kind": kind, "model": hp.model, "dataset": hp.dataset, "seed": hp.seed}
  if kind == "prune":
    values.update(method=hp.method, schedule=hp.schedule, round=round_,
                  density=hp.densities[min(round_, len(hp.densities)) - 1],
                  structure=hp.structure)
  with tf.summary.create_file_writer(os.path.join(log_dir, "hparams")).as_default():
    hp_api.hparams(values)


def write_final_scalars(log_dir: str, result: Dict) -> None:
  with tf.summary.create_file_writer(os.path.join(log_dir, "hparams")).as_default():
    for key in ("test_accuracy", "val_accuracy", "density"):
      if result.get(key) is not None:
        tf.summary.scalar(key, result[key], step=result["steps"])


class Runner:
  """Runs dense trunks and retraining branches in a run root, reusing finished work."""

  def __init__(self, env: Env):
    self.env = env
    self._arrays: Dict[tuple, data_lib.Arrays] = {}
    store.check_root(env.root)

  # ------------------------------------------------------------------ phases
  def _own(self, paths: store.RunPaths) -> store.RunPaths:
    """Where this process writes a run: the run itself (chief), or a worker's private copy."""
    if self.env.worker is None:
      return paths
    rel = os.path.relpath(paths.dir, self.env.root)
    return store.RunPaths(os.path.join(self.env.root, f".worker{self.env.worker}", rel))

  def _readable(self, paths: store.RunPaths) -> store.RunPaths:
    """The copy of a run to read: this worker's own if it trained it, else the chief's."""
    own = self._own(paths)
    return own if own.finished() else paths

  def _finished(self, paths: store.RunPaths) -> bool:
    """Finished by the chief or by this worker: a worker must not wait for the chief's
    result.json, which the chief may write a moment later than the worker finishes its copy
    (training again would desynchronise the collectives)."""
    return paths.finished() or (self.env.worker is not None and self._own(paths).finished())

  def _locked(self, paths):
    # Workers train in lockstep with the chief: a worker waiting on the chief's lock would
    # deadlock the collectives, so only the chief locks.
    return store.locked(paths) if self.env.worker is None else contextlib.nullcontext()

  def dense(self, hp: hp_lib.HParams) -> store.RunPaths:
    """Trains (or finds) the dense network of `hp`, with its rewind snapshots."""
    paths = store.dense_paths(self.env.root, hp)
    needed = sorted(set(self.env.snapshot_steps))
    for k in needed:
      if os.path.exists(paths.snapshot(k)) and not _readable_snapshot(paths.snapshot(k)):
        logging.warning("snapshot %s is corrupt: retraining dense run %s", paths.snapshot(k),
                        paths.dir)
        os.replace(paths.snapshot(k), paths.snapshot(k) + ".corrupt")
        if os.path.exists(paths.result):
          os.replace(paths.result, paths.result + ".stale")
          shutil.rmtree(paths.final, ignore_errors=True)
    if not self._finished(paths):
      with self._locked(paths):
        if not self._finished(paths):
          own = self._own(paths)
          self._train(hp, own, kind="dense", round_=0, start=0, end=hp.cycle_steps,
                      initial=None, phase_cb=[rewind.SnapshotCallback(k, own.snapshot(k))
                                              for k in needed])
    paths = self._readable(paths)
    missing = [k for k in needed if not os.path.exists(paths.snapshot(k))]
    if missing:
      raise ValueError(f"dense run {paths.dir} has no snapshot of step(s) {missing}: it was "
                       f"trained for other rewind steps; use another --root or delete that run")
    return paths

  def branch(self, hp: hp_lib.HParams, round_: Optional[int] = None) -> store.RunPaths:
    """Trains (or finds) retraining round `round_` (default: the last) of `hp`'s branch."""
    rounds = 1 if hp.schedule == "one_shot" else hp.rounds
    round_ = rounds if round_ is None else round_
    paths = store.branch_paths(self.env.root, hp, round_)
    if self._finished(paths):
      return self._readable(paths)
    previous = self.dense(hp) if round_ == 1 else self.branch(hp, round_ - 1)
    dense = self._readable(store.dense_paths(self.env.root, hp))
    plan = hp.plan()
    start = hp.cycle_steps + (round_ - 1) * plan.steps
    density = hp.densities[round_ - 1]
    snapshot = None if plan.weights_from is None else dense.snapshot(plan.weights_from)
    with self._locked(paths):
      if not self._finished(paths):
        callback = rewind.RewindCallback(
            method=hp.method, schedule=schedules.OneShot(density), cycle_steps=hp.cycle_steps,
            rewind_step=hp.to_steps("rewind_step"), finetune_lr=hp.finetune_lr,
            retrain_steps=hp.to_steps("retrain"), weights_from=hp.to_steps("weights_from"),
            lr_from=hp.to_steps("lr_from"), scope=hp.scope, structure=hp.structure,
            criterion=hp.criterion, seed=hp.seed, reset_momentum=hp.reset_momentum,
            restore_optimizer=hp.restore_optimizer, dense_trained=True, snapshot=snapshot,
            start_step=start, verbose=self.env.verbose)
        self._train(hp, self._own(paths), kind="prune", round_=round_, start=start,
                    end=start + plan.steps, initial=previous.final_ckpt, phase_cb=[callback])
    return self._readable(paths)

  # ------------------------------------------------------------------ machinery
  def arrays(self, hp: hp_lib.HParams) -> data_lib.Arrays:
    """The decoded dataset of `hp`, loaded once per process (DataError if unavailable)."""
    key = (hp.dataset, hp.data_dir, hp.synthetic_size)
    if key not in self._arrays:
      self._arrays[key] = data_lib.load(hp.dataset, hp.data_dir, hp.download, hp.synthetic_size)
    return self._arrays[key]

  def data(self, hp: hp_lib.HParams, round_: int, start_in_phase: int) -> data_lib.Bundle:
    # Each phase draws its own data order, so retraining does not replay dense batches.
    return data_lib.make(hp.dataset, hp.batch_size, seed=hp.seed * 1000 + round_,
                         validation=hp.validation, arrays=self.arrays(hp),
                         start_step=start_in_phase)

  def build(self, hp: hp_lib.HParams, num_classes: int):
    """The compiled prunable model with a built optimizer (so restores are immediate)."""
    strategy = self.env.strategy or tf.distribute.get_strategy()
    if hp.mixed_precision:
      keras.mixed_precision.set_global_policy("mixed_float16")
    else:
      keras.mixed_precision.set_global_policy("float32")
    with strategy.scope():
      model = sparsity.prunable(registry.build_model(
          hp.model, num_classes=num_classes, input_shape=(32, 32, 3), **hp.model_overrides()),
          structure=hp.structure)
      schedule = lr_lib.StepDecay(hp.lr, hp.boundaries, hp.lr_factor)
      optimizer = keras.optimizers.SGD(schedule, momentum=hp.momentum, nesterov=hp.nesterov)
      model.compile(optimizer, keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                    metrics=["accuracy"], jit_compile=self.env.jit_compile,
                    steps_per_execution=self.env.steps_per_execution)
      getattr(model.optimizer, "inner_optimizer", model.optimizer).build(
          model.trainable_variables)
    return model

  def _train(self, hp, paths, kind, round_, start, end, initial, phase_cb):
    t0 = time.time()
    os.makedirs(paths.dir, exist_ok=True)
    store.remove_leftovers(paths)
    if not os.path.exists(paths.hparams):
      # Derived values too, so that the report reads JSON and never imports training code.
      store.write_json(paths.hparams, {
          "kind": kind, "round": round_, "hparams": hp.to_json(),
          "density_target": hp.densities[round_ - 1] if kind == "prune" else 1.0,
          "dense_run": os.path.basename(store.dense_paths(self.env.root, hp).dir),
          "steps": end - start, "epoch_steps": hp.steps_per_epoch()})
    logging.info("%s run %s", kind, paths.dir)
    keras.utils.set_random_seed(hp.seed * 1000 + round_)
    if self.env.deterministic:
      tf.config.experimental.enable_op_determinism()
    keras.backend.clear_session()
    num_classes = 100 if hp.dataset == "cifar100" else 10
    model = self.build(hp, num_classes)
    checkpoint = tf.train.Checkpoint(model=model, optimizer=model.optimizer)
    manager = tf.train.CheckpointManager(checkpoint, paths.backup, max_to_keep=2)
    if self._restore_final(checkpoint, paths, model, end):
      # Trained, but its result was lost (a kill between the two writes, or a corrupt file).
      bundle = self.data(hp, round_, start_in_phase=0)
      self._finish(hp, paths, model, checkpoint, bundle, kind, t0)
      return
    if not self._restore_backup(checkpoint, manager):
      if initial is not None:
        try:
          checkpoint.read(initial).assert_existing_objects_matched()
        except (tf.errors.OpError, ValueError, AssertionError) as e:
          raise RuntimeError(f"cannot read {initial} ({type(e).__name__}): delete the result.json "
                             f"beside it to retrain that run") from None
    step = int(model.optimizer.iterations.numpy())
    if step < start:  # a dense run starting from scratch, or a bad initial checkpoint
      if kind != "dense" or step != 0:
        raise RuntimeError(f"{paths.dir}: starts at step {step}, expected {start}")
    bundle = self.data(hp, round_, start_in_phase=step - start)
    steps_per_epoch = hp.steps_per_epoch(bundle.steps_per_epoch)
    epochs = math.ceil((end - start) / steps_per_epoch)
    initial_epoch = (step - start) // steps_per_epoch
    eval_data = bundle.validation if bundle.validation is not None else bundle.test
    write_hparams_summary(paths.tensorboard, hp, kind, round_)
    callbacks = [*phase_cb, StopAtStep(end), keras.callbacks.TerminateOnNaN(),
                 EpochBackup(manager), Ledger(paths.ledger, kind),
                 keras.callbacks.CSVLogger(paths.metrics, append=True),
                 pruning_callbacks.PruningSummaries(paths.tensorboard, update_freq="epoch",
                                                   profile_batch=0)]
    label = (f"dense {hp.model} seed {hp.seed}" if kind == "dense" else
             f"{hp.method} round {round_} density {hp.densities[round_ - 1]:.4g}")
    if self.env.verbose:
      print(f"== {label} | steps {step}..{end} | {paths.dir}", flush=True)
    history = model.fit(bundle.train, epochs=epochs, initial_epoch=initial_epoch,
                        steps_per_epoch=steps_per_epoch, validation_data=eval_data,
                        callbacks=callbacks, verbose=self.env.verbose)
    losses = history.history.get("loss", [])
    if any(not np.isfinite(l) for l in losses) or int(model.optimizer.iterations.numpy()) < end:
      reached = int(model.optimizer.iterations.numpy())
      store.write_json(paths.failed, {"reason": "loss became NaN or Inf", "step": reached,
                                      "phase": kind})
      raise RunFailed(f"{paths.dir}: loss became NaN or Inf near step {reached}; see "
                      f"{paths.failed}")
    self._finish(hp, paths, model, checkpoint, bundle, kind, t0)

  def _restore_final(self, checkpoint, paths, model, end) -> bool:
    if not tf.io.gfile.exists(paths.final_ckpt + ".index"):
      return False
    try:
      checkpoint.read(paths.final_ckpt).assert_existing_objects_matched()
    except (tf.errors.OpError, ValueError, AssertionError) as e:
      logging.warning("final checkpoint %s is unreadable (%s): retraining", paths.final_ckpt,
                      type(e).__name__)
      return False
    return int(model.optimizer.iterations.numpy()) == end

  def _restore_backup(self, checkpoint, manager) -> bool:
    """Restores the newest readable epoch checkpoint; warns about and skips corrupt ones."""
    for path in reversed(manager.checkpoints):
      try:
        checkpoint.read(path).assert_existing_objects_matched()
        return True
      except (tf.errors.OpError, ValueError, AssertionError) as e:
        logging.warning("checkpoint %s is unreadable (%s): resuming from an earlier state",
                        path, type(e).__name__)
    return False

  def _finish(self, hp, paths, model, checkpoint, bundle, kind, t0):
    evaluation = model.evaluate(bundle.test, verbose=0, return_dict=True)
    result = {"test_accuracy": float(evaluation["accuracy"]),
              "test_loss": float(evaluation["loss"]),
              "density": float(sparsity.density(model)),
              "layer_densities": sparsity.layer_densities(model),
              "steps": int(model.optimizer.iterations.numpy()),
              "wall_time_s": round(time.time() - t0, 3), "kind": kind}
    macs = flops_lib.flops(model)
    stripped = sparsity.strip(model)
    result.update(dense_macs=macs["dense_macs"], pruned_macs=macs["pruned_macs"],
                  flops_speedup=macs["speedup"],
                  compression=1.0 / result["density"] if result["density"] else None,
                  **saved_size(stripped))
    if hp.structure == "channel":
      result["parameters"] = int(stripped.count_params())
      result["slim_parameters"] = int(slim_lib.slim(model).count_params())
    if bundle.validation is not None:
      result["val_accuracy"] = float(model.evaluate(bundle.validation, verbose=0,
                                                    return_dict=True)["accuracy"])
    tmp = tempfile.mkdtemp(prefix="final.tmp-", dir=paths.dir)
    checkpoint.write(os.path.join(tmp, "ckpt"))
    store.replace_dir(tmp, paths.final)
    write_final_scalars(paths.tensorboard, result)
    store.write_json(paths.result, result)  # last: the run is finished from here on
    store.append_line(paths.ledger, {"phase": "finished", "pid": os.getpid(),
                                     "steps": 0, "start": result["steps"], "end": result["steps"]})
    shutil.rmtree(paths.backup, ignore_errors=True)


def saved_size(stripped) -> Dict[str, int]:
  """Bytes of a stripped model's saved weights (stripped_bytes), raw and gzipped.

  Pruned weights are zeros, so gzip shows what the sparsity is worth on disk.
  """
  import gzip  # pylint: disable=g-import-not-at-top
  with tempfile.TemporaryDirectory() as tmp:
    path = os.path.join(tmp, "weights.h5")
    stripped.save_weights(path)
    with open(path, "rb") as f:
      raw = f.read()
  return {"stripped_bytes": len(raw), "stripped_gzip_bytes": len(gzip.compress(raw, 6))}


def _readable_snapshot(path) -> bool:
  try:
    rewind.Snapshot.load(path)
    return True
  except Exception:  # pylint: disable=broad-except  (zip, npz and IO errors alike)
    return False


def grid(base: hp_lib.HParams, methods: Sequence[str], densities: Sequence[float],
         seeds: Sequence[int], retrains: Sequence[Optional[str]] = (None,)) -> List[hp_lib.HParams]:
  """Every run of a sweep: methods x densities (one-shot) x budgets x seeds."""
  out = []
  for seed in seeds:
    for method in methods:
      for retrain in retrains:
        for density in (densities if base.schedule == "one_shot" else [base.density]):
          out.append(dataclasses.replace(base, seed=seed, method=method, density=density,
                                         retrain=retrain if retrain is not None else base.retrain))
  return out


def snapshot_steps(runs: Sequence[hp_lib.HParams]) -> List[int]:
  """Dense steps whose state some run of the grid restores."""
  return sorted({p.weights_from for p in (hp.plan() for hp in runs) if p.weights_from is not None})
