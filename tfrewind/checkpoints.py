"""Reading a run's checkpoints: one function, one error type.

Epoch checkpoints (backup/, by tf.train.CheckpointManager) and the final one (final/ckpt)
hold model and optimizer; a corrupt or mismatched one raises CheckpointError, and the
callers decide: resume from an earlier one, retrain, or tell the user what to delete.
"""

import os
from typing import Optional

import tensorflow as tf

from tfrewind import store
from tfrewind.errors import ConfigError


class CheckpointError(ValueError):
  """A checkpoint that cannot be read into the model (corrupt, truncated, another network)."""

  def __init__(self, path: str, cause: str):
    super().__init__(f"cannot read {path} ({cause})")
    self.path, self.cause = path, cause


class Unreadable(ConfigError):
  """Another run's checkpoint that a phase starts from (a finished run's final/, a longer
  budget's tap in shared/) cannot be read. The Runner sets its folder aside and retrains what
  it held (tfrewind.experiment.Runner.branch); anywhere else it is one line."""

  def __init__(self, error: CheckpointError):
    super().__init__(f"{error}: delete the result.json beside it to retrain that run")
    self.folder = os.path.dirname(error.path)  # final/ or shared/
    self.run = os.path.dirname(self.folder)


def read(checkpoint: tf.train.Checkpoint, path: str) -> None:
  """Restores `path` into `checkpoint`'s objects, every one of them matched."""
  try:
    # expect_partial: the manager's save_counter is in the file, not in our objects
    checkpoint.read(path).assert_existing_objects_matched().expect_partial()
  except (tf.errors.OpError, ValueError, AssertionError, IndexError) as e:
    # IndexError: a truncated data file ("Read less bytes than requested")
    raise CheckpointError(path, type(e).__name__) from None


def newest_step(manager) -> Optional[int]:
  """The step of the manager's newest epoch checkpoint (its number), or None."""
  return int(manager.latest_checkpoint.rsplit("-", 1)[1]) if manager.latest_checkpoint else None


def restore_final(checkpoint, paths, model, end) -> Optional[bool]:
  """Restores a run's final checkpoint: True if it holds the phase's last step, False if there
  is none (or another step), None if it was corrupt (set aside; `checkpoint`'s objects may
  then hold part of it)."""
  if not tf.io.gfile.exists(paths.final_ckpt + ".index"):
    return False
  try:
    read(checkpoint, paths.final_ckpt)
  except CheckpointError:
    store.set_aside(paths.final, "retraining the run from its last good state")
    return None
  return int(model.optimizer.iterations.numpy()) == end


def restore_backup(checkpoint, manager) -> Optional[bool]:
  """Restores the newest epoch checkpoint: True if it was read, False if there is none, None
  if it was corrupt (set aside). After None, `checkpoint`'s objects may hold part of it and
  restores pending from it: build them again, and call again for the one before."""
  present = [p for p in manager.checkpoints if tf.io.gfile.exists(p + ".index")]
  if not present:
    return False
  try:
    read(checkpoint, present[-1])
    return True
  except CheckpointError:
    store.set_aside(present[-1], "resuming from the checkpoint before it" if len(present) > 1
                    else "training the phase again from its start")
    return None
