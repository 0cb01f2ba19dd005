"""Shared prefixes: retraining budgets that are the first steps of a longer budget's run.

Fine-tuning keeps the trained weights and a constant LR, so its run with budget t is exactly
the first t steps of the run with budget t' > t (plan.Retrain.budget_is_prefix says which
methods are so; only the first round: a later round starts from its own budget's previous
round). A sweep therefore trains the longest budget of each group once; a `Tap` in that run
saves the whole state (weights, optimizer, masks) at step start + t into the budget-t run
folder's shared/, and the Runner finishes that folder from it, as if it had trained alone
(metrics.csv, result.json, final/; tfrewind.experiment), with a `shared_from` record.

  groups(runs)  -> {key: [runs of the group, shortest budget first]}     (pure, no TensorFlow)
"""

import dataclasses
import os
import tempfile
from typing import Dict, List, Sequence

from tfrewind import hparams as hp_lib
from tfrewind import registries
from tfrewind import store


def group_key(hp: hp_lib.HParams):
  """Runs with the same key differ in their retraining budget alone, and each budget is a
  prefix of the longer ones; None for a run that shares nothing."""
  if registries.schedule(hp.schedule).from_scratch or not hp.plan().budget_is_prefix:
    return None
  return hp_lib.run_key(dataclasses.replace(hp, retrain=None), 1), hp.seed


def groups(runs: Sequence[hp_lib.HParams]) -> Dict[tuple, List[hp_lib.HParams]]:
  """The groups of two or more budgets in `runs`, each sorted by budget (the last trains)."""
  out: Dict[tuple, List[hp_lib.HParams]] = {}
  for hp in runs:
    key = group_key(hp)
    if key is not None:
      out.setdefault(key, [])
      if all(other.plan().steps != hp.plan().steps for other in out[key]):
        out[key].append(hp)
  return {k: sorted(v, key=lambda h: h.plan().steps) for k, v in out.items() if len(v) > 1}


def copy_rows(source: str, target: str, epochs: int) -> None:
  """metrics.csv of `source` up to (not including) epoch `epochs`, written atomically to
  `target`: the rows of a prefix are the longer run's, byte for byte."""
  keep = []
  if os.path.exists(source):
    with open(source, encoding="utf-8", newline="") as f:  # CSVLogger's \r\n kept
      lines = f.readlines()
    keep = lines[:1] + [l for l in lines[1:] if l.strip() and int(l.split(",")[0]) < epochs]
  store.atomic_write(target, "".join(keep).encode())


def tap_callback(taps: Dict[int, store.RunPaths], source: str):
  """A Keras callback for the longest run of a group: at each step of `taps` (absolute
  optimizer steps) it writes the state into that budget's run folder, shared/."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  import tf_keras as keras  # pylint: disable=g-import-not-at-top

  class Tap(keras.callbacks.Callback):
    """Skips a folder that is finished, already tapped, or locked by a process training it."""

    def on_train_batch_end(self, batch, logs=None):
      step = int(self.model.optimizer.iterations.numpy())
      paths = taps.get(step)
      if paths is None or paths.finished() or read(paths) is not None:
        return
      with store.try_locked(paths) as got:
        if not got:
          return
        tmp = tempfile.mkdtemp(prefix="shared.tmp-", dir=paths.dir)
        tf.train.Checkpoint(model=self.model, optimizer=self.model.optimizer).write(
            os.path.join(tmp, "ckpt"))
        # The epoch's running training metrics at this step: a run of this budget alone
        # would end its last epoch here, with these values in its metrics.csv row.
        store.write_json(os.path.join(tmp, "tap.json"), {
            "shared_from": os.path.basename(source), "step": step,
            "logs": {k: float(v) for k, v in (logs or {}).items()}})
        store.replace_dir(tmp, paths.shared)

  return Tap()


def read(paths: store.RunPaths):
  """The tap record in a run folder's shared/ ({shared_from, step, logs}), or None."""
  record = store.read_json(os.path.join(paths.shared, "tap.json"))
  if record is None or not os.path.exists(os.path.join(paths.shared, "ckpt.index")):
    return None
  return record
