"""Reading a run's checkpoints: one function, one error type.

Epoch checkpoints (backup/, by tf.train.CheckpointManager) and the final one (final/ckpt)
hold model and optimizer; a corrupt or mismatched one raises CheckpointError, and the
callers decide: resume from an earlier one, retrain, or tell the user what to delete.
"""

from typing import Optional

import tensorflow as tf
from absl import logging


class CheckpointError(ValueError):
  """A checkpoint that cannot be read into the model (corrupt, truncated, another network)."""

  def __init__(self, path: str, cause: str):
    super().__init__(f"cannot read {path} ({cause})")
    self.path, self.cause = path, cause


def read(checkpoint: tf.train.Checkpoint, path: str) -> None:
  """Restores `path` into `checkpoint`'s objects, every one of them matched."""
  try:
    # expect_partial: the manager's save_counter is in the file, not in our objects
    checkpoint.read(path).assert_existing_objects_matched().expect_partial()
  except (tf.errors.OpError, ValueError, AssertionError) as e:
    raise CheckpointError(path, type(e).__name__) from None


def newest_step(manager) -> Optional[int]:
  """The step of the manager's newest epoch checkpoint (its number), or None."""
  return int(manager.latest_checkpoint.rsplit("-", 1)[1]) if manager.latest_checkpoint else None


def restore_final(checkpoint, paths, model, end) -> bool:
  """Restores a run's final checkpoint; True if it holds the phase's last step."""
  if not tf.io.gfile.exists(paths.final_ckpt + ".index"):
    return False
  try:
    read(checkpoint, paths.final_ckpt)
  except CheckpointError as e:
    logging.warning("final checkpoint %s is unreadable (%s): retraining", e.path, e.cause)
    return False
  return int(model.optimizer.iterations.numpy()) == end


def restore_backup(checkpoint, manager) -> bool:
  """Restores the newest readable epoch checkpoint; warns about and skips corrupt ones."""
  for path in reversed(manager.checkpoints):
    try:
      read(checkpoint, path)
      return True
    except CheckpointError as e:
      logging.warning("checkpoint %s is unreadable (%s): resuming from an earlier state",
                      path, e.cause)
  return False
