"""The Keras callbacks of a run's fit(): stop at a step or on a signal, checkpoint each finite
epoch end, keep the ledger of trained steps, and the HParams records of TensorBoard."""

import os
import time
from typing import Dict

import numpy as np
import tensorflow as tf
from absl import logging
from tensorflow_model_optimization.python.core.sparsity.keras import pruning_callbacks

import tf_keras as keras
from tfrewind import hparams as hp_lib
from tfrewind import rewind
from tfrewind import stopping
from tfrewind import store


class StopOnSignal(keras.callbacks.Callback):
  """Ends fit() after the step in progress once SIGTERM/SIGINT asked to stop
  (tfrewind.stopping); Keras then ends the epoch, and EpochBackup checkpoints that step."""

  def __init__(self):
    super().__init__()
    self._supports_tf_logs = True  # reads no log: Keras need not convert them for it

  def on_train_batch_end(self, batch, logs=None):
    if stopping.requested() is not None:
      self.model.stop_training = True


class StopAtStep(rewind.StepCallback):
  """Ends fit() when optimizer.iterations reaches `step` (a phase's last step); it counts the
  step on the host (one device read per epoch, not per batch)."""

  def __init__(self, step):
    super().__init__()
    self.step = step
    self._supports_tf_logs = True

  def on_train_batch_end(self, batch, logs=None):
    if self._step(batch) + 1 >= self.step:
      self.model.stop_training = True


def all_finite(model) -> bool:
  """Every weight finite; TF-MOT's `threshold` variables aside, which hold NaN when a prune has
  no magnitude threshold (random, SynFlow, a control: tfrewind.pruning.sparsity)."""
  return bool(tf.reduce_all([tf.reduce_all(tf.math.is_finite(v)) for v in model.weights
                             if v.dtype.is_floating and
                             not v.name.split("/")[-1].startswith("threshold")]).numpy())


class EpochBackup(keras.callbacks.Callback):
  """Checkpoints model and optimizer at every epoch end (keeps the last two), if finite.

  Our own rather than keras' BackupAndRestore because the runner must know the
  resumed step before fit() starts, to position the input pipeline there.
  tf_keras calls on_epoch_end after TerminateOnNaN has stopped training, so a
  non-finite state would reach the checkpoint: it is skipped instead.
  """

  def __init__(self, manager):
    super().__init__()
    self.manager = manager

  def on_epoch_end(self, epoch, logs=None):
    loss = (logs or {}).get("loss")
    if (loss is not None and not np.isfinite(loss)) or not all_finite(self.model):
      logging.warning("epoch %d ended with a non-finite loss or weights: not checkpointed", epoch)
      return
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


class MaskSummaries(pruning_callbacks.PruningSummaries):
  """TF-MOT's per-layer sparsity and threshold scalars, the threshold only where a prune set
  a real one (tfrewind.pruning.sparsity.record_thresholds): never TF-MOT's unused zeros.

  Nothing happens at a batch end. Keras' TensorBoard hook there writes the train graph after
  the first batch (tens of ms, what made Keras warn that `on_train_batch_end` is slow compared
  to the batch time on the quickstart) and, with update_freq="epoch", then calls
  tf.summary.scalar once per metric with no writer in scope: about 1 ms a metric on 2 cores
  for nothing written. The graph is written at the first epoch end instead.
  """

  def on_train_batch_end(self, batch, logs=None):
    pass

  def on_epoch_end(self, epoch, logs=None):
    if self._should_write_train_graph:
      self._write_keras_model_train_graph()
      self._should_write_train_graph = False
    super().on_epoch_end(epoch, logs)

  def _log_pruning_metrics(self, logs, prefix, step):
    logs = {k: v for k, v in logs.items()
            if not k.endswith("/threshold") or (np.isfinite(v) and v > 0)}
    super()._log_pruning_metrics(logs, prefix, step)
