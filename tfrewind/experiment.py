"""The experiment: a dense trunk, then one retraining branch per method and density.

Phases are idempotent: each first checks for its result.json, so rerunning a
command does no training for finished runs, a dense network is trained once for
every branch that starts from it, and iterative round r starts from round r-1.
The dense state at a rewind step K is its own artifact (the dense run's
snapshots/step_K.npz): made while the dense run trains when the grid asks for
it, else replayed from the dense run's initialisation when a branch first needs
it, so any job order works. The Runner resolves which runs a run needs and holds
their locks; tfrewind.training trains.

Example:
  >>> runner = Runner(Env(root="runs"))
  >>> runner.branch(HParams(model="resnet20", method="lr_rewind", density=0.107))
"""

import hashlib
import io
import itertools
import json
import os
import shutil
from typing import Dict, List, Optional

import numpy as np

from absl import logging

from tfrewind import checkpoints
from tfrewind import data as data_lib
from tfrewind import gradual
from tfrewind import hparams as hp_lib
from tfrewind import platform
from tfrewind import prefixes
from tfrewind import protocols
from tfrewind import registries
from tfrewind import rewind
from tfrewind import snapshots
from tfrewind import store
from tfrewind import training
from tfrewind.pruning import saliency
from tfrewind.pruning import schedules
from tfrewind.pruning.spec import PruneSpec
from tfrewind.training import Env, Phase  # noqa: F401  (Env: the Runner's argument, re-exported)


class Runner:
  """Runs dense trunks and retraining branches in a run root, reusing finished work."""

  def __init__(self, env: Env):
    self.env = env
    self.owner = platform.Ownership(env.root, env.worker)
    self._arrays: Dict[tuple, data_lib.Arrays] = {}
    self._verified = set()  # snapshots read whole once by this process (nothing moves them)
    # Shared prefixes (tfrewind.prefixes): a shorter budget's folder -> the run that writes it,
    # and that run's folder -> the shorter budgets it writes.
    self._longer: Dict[str, hp_lib.HParams] = {}
    self._shorter: Dict[str, List[hp_lib.HParams]] = {}
    store.check_root(env.root)

  def share(self, runs: List[hp_lib.HParams]) -> int:
    """Trains each group of budgets of `runs` that are prefixes of one another once, to the
    largest (tfrewind.prefixes); returns the runs that are written from a longer one. Not
    across the processes of multi-worker training, whose chief alone writes."""
    if self.env.worker is not None or platform.multi_worker(self.env.strategy):
      return 0
    for group in prefixes.groups(runs).values():
      longest = store.branch_paths(self.env.root, group[-1], 1).dir
      self._shorter[longest] = group[:-1]
      for hp in group[:-1]:
        self._longer[store.branch_paths(self.env.root, hp, 1).dir] = group[-1]
    return len(self._longer)

  # ------------------------------------------------------------------ runs
  def dense(self, hp: hp_lib.HParams) -> store.RunPaths:
    """Trains (or finds) the dense network of `hp`; its training saves the grid's snapshots."""
    paths = store.dense_paths(self.env.root, hp)
    needed = sorted(set(self.env.snapshot_steps))
    if not self.owner.finished(paths):
      with self.owner.locked(paths):
        if not self.owner.finished(paths):
          own = self.owner.own(paths)
          training.train_phase(
              hp, own, Phase("dense", 0, 0, hp.cycle_steps,
                             callbacks=[rewind.SnapshotCallback(k, own.snapshot(k))
                                        for k in needed]),
              self.env, self.data, dense_run=os.path.basename(paths.dir))
    return self.owner.readable(paths)

  def dense_at(self, hp: hp_lib.HParams, step: int) -> str:
    """The path of the dense state at `step` (a Snapshot), made if missing."""
    self.dense(hp)
    return self._snapshot(hp, step)

  def _snapshot(self, hp: hp_lib.HParams, step: int) -> str:
    """Of a finished dense run: its snapshot of `step`, replayed from initialisation if missing."""
    paths = store.dense_paths(self.env.root, hp)
    readable = self.owner.readable(paths).snapshot(step)
    if readable in self._verified or _readable_snapshot(readable):
      self._verified.add(readable)
      return readable
    own = self.owner.own(paths)
    with self.owner.locked(own):
      if not _readable_snapshot(own.snapshot(step)):
        if os.path.exists(own.snapshot(step)):
          store.set_aside(own.snapshot(step), "replaying the dense run to that step")
        logging.warning("dense run %s has no snapshot of step %d: retraining its trunk from "
                        "initialisation to step %d (%d of its %d steps; bitwise the same with "
                        "--deterministic)", own.dir, step, step, step + 1, hp.cycle_steps)
        training.replay_dense(hp, own, [step], self.env, self.data)
    return own.snapshot(step)

  def branch(self, hp: hp_lib.HParams, round_: Optional[int] = None) -> store.RunPaths:
    """Trains (or finds) retraining round `round_` (default: the last) of `hp`'s branch.

    A checkpoint it starts from that cannot be read (the dense run's or the previous round's
    final/, a longer budget's tap) is set aside and what held it is redone: that run trains
    again (its epoch checkpoints went when it finished: from its start, bitwise the same with
    --deterministic), or this branch trains alone."""
    try:
      return self._branch(hp, round_)
    except checkpoints.Unreadable as e:
      self._redo(e)
      return self._branch(hp, round_)

  def _redo(self, error: checkpoints.Unreadable) -> None:
    """Sets the unreadable folder aside under its run's lock, and makes that run unfinished."""
    paths = self.owner.own(store.RunPaths(error.run))
    with self.owner.locked(paths):
      if os.path.exists(error.folder):
        store.set_aside(error.folder, f"{os.path.basename(paths.dir)} is done again")
      if os.path.exists(paths.result):  # whole, but of a network that is gone
        os.replace(paths.result, paths.result + ".redone")

  def _branch(self, hp: hp_lib.HParams, round_: Optional[int] = None) -> store.RunPaths:
    round_ = len(hp.densities) if round_ is None else round_
    paths = store.branch_paths(self.env.root, hp, round_)
    if self.owner.finished(paths):
      return self.owner.readable(paths)
    if registries.schedule(hp.schedule).from_scratch:
      return self._from_scratch(hp, paths)
    if round_ == 1 and paths.dir in self._longer:
      self.branch(self._longer[paths.dir], 1)  # writes this budget's state on its way
    previous = self.dense(hp) if round_ == 1 else self.branch(hp, round_ - 1)
    plan = hp.plan()
    snapshot = None if plan.weights_from is None else self.dense_at(hp, plan.weights_from)
    scores = self.scores(hp, hp.densities[round_ - 1]) if needs_scores(hp) else None
    start = hp.cycle_steps + (round_ - 1) * plan.steps
    with self.owner.locked(paths):
      if not self.owner.finished(paths):
        tapped = prefixes.read(paths) if round_ == 1 else None
        if tapped is not None:  # a longer budget trained through this one's last step
          shutil.rmtree(paths.backup, ignore_errors=True)
        callback = rewind.RewindCallback(
            method=hp.method, schedule=schedules.OneShot(hp.densities[round_ - 1]),
            cycle_steps=hp.cycle_steps, rewind_step=hp.to_steps("rewind_step"),
            finetune_lr=hp.finetune_lr, retrain_steps=hp.to_steps("retrain"),
            weights_from=hp.to_steps("weights_from"), lr_from=hp.to_steps("lr_from"),
            warmup=hp.warmup, protocol=hp.protocol, prune=PruneSpec.from_hparams(hp),
            reset_momentum=hp.reset_momentum, restore_optimizer=hp.restore_optimizer,
            dense_trained=True, snapshot=snapshot, start_step=start, first_round=round_,
            verbose=self.env.verbose, scores=scores)
        callbacks = [callback]
        shorter = self._shorter.get(paths.dir, []) if round_ == 1 else []
        if shorter:
          callbacks.append(prefixes.tap_callback(
              {start + s.plan().steps: store.branch_paths(self.env.root, s, 1) for s in shorter},
              paths.dir))
        training.train_phase(
            hp, self.owner.own(paths),
            Phase("prune", round_, start, start + plan.steps,
                  initial=previous.final_ckpt if tapped is None else
                  os.path.join(paths.shared, "ckpt"), callbacks=callbacks, shared=tapped),
            self.env, self.data,
            dense_run=os.path.basename(store.dense_paths(self.env.root, hp).dir))
        shutil.rmtree(paths.shared, ignore_errors=True)  # result.json holds its record
    return self.owner.readable(paths)

  def _from_scratch(self, hp: hp_lib.HParams, paths: store.RunPaths) -> store.RunPaths:
    """A gradual run: one phase from the dense trunk's initialisation and data order, pruned
    as it trains (tfrewind.gradual); it needs no dense network."""
    begin, end, every = registries.gradual_steps(hp)
    with self.owner.locked(paths):
      if not self.owner.finished(paths):
        callback = gradual.GradualCallback(hp.density, begin, end, every, hp.gradual_power,
                                           prune=PruneSpec.from_hparams(hp),
                                           verbose=self.env.verbose)
        training.train_phase(
            hp, self.owner.own(paths),
            Phase("prune", 1, 0, hp.cycle_steps, callbacks=[callback], stream=0), self.env,
            self.data, dense_run=os.path.basename(store.dense_paths(self.env.root, hp).dir))
    return self.owner.readable(paths)

  def scores(self, hp: hp_lib.HParams, density: float) -> List[np.ndarray]:
    """The criterion's scores of the dense trunk's network at --mask_from (default: its end),
    computed once per dense run, step and criterion (SynFlow's: per density and rule too) and
    kept beside its snapshots (scores/<name>.npz), so each density and method reuses them."""
    step = hp.cycle_steps if hp.mask_from is None else hp.to_steps("mask_from")
    entry = registries.criterion(hp.criterion)
    spec = PruneSpec.from_hparams(hp)
    name = f"{hp.criterion}_step{step}"
    if "batches" in entry.needs and entry.fetch is None:
      name += f"_b{hp.criterion_batches}"
    if entry.per_density:
      rule = json.dumps([spec.kwargs(), hp.synflow_rounds], sort_keys=True).encode()
      name += f"_d{density:.6g}_{hashlib.sha256(rule).hexdigest()[:8]}"
    dense = self.dense(hp)
    path = os.path.join(dense.dir, "scores", f"{name}.npz")
    found = _arrays(path)
    if found is not None:
      return found
    # Before the lock: a missing snapshot is replayed under it.
    snapshot = self._snapshot(hp, step) if step < hp.cycle_steps else None
    own = self.owner.own(store.dense_paths(self.env.root, hp))
    path = os.path.join(own.dir, "scores", f"{name}.npz")
    with self.owner.locked(own):
      if os.path.exists(path) and _arrays(path) is None:
        store.set_aside(path, "computing the scores again")
      if not os.path.exists(path):
        model = training.network_at(hp, dense, snapshot, self.env)
        stream = iter(self.data(hp, 0, 0).train)
        fetch = entry.fetch_fn()
        batches = (fetch(stream, model) if fetch is not None else
                   list(itertools.islice(stream, hp.criterion_batches)))
        found = saliency.scores(model, spec, density, batches, hp.synflow_rounds)
        buffer = io.BytesIO()
        np.savez(buffer, *found)
        store.atomic_write(path, buffer.getvalue())
    return _arrays(path)

  def run(self, hp: hp_lib.HParams, progress=None) -> List[store.RunPaths]:
    """Every round of `hp`'s branch (and its dense run), in order: their run folders.

    progress: a tfrewind.progress.Progress, told when each round starts and ends.
    """
    out = []
    for r in range(1, len(hp.densities) + 1):
      trained = not self.owner.finished(store.branch_paths(self.env.root, hp, r))
      if progress:
        progress.start(hp, r)
      out.append(self.branch(hp, r))
      if progress:
        progress.end(hp, r, out[-1], None if registries.schedule(hp.schedule).from_scratch
                     else self.dense(hp), trained)
    return out

  # ------------------------------------------------------------------ data
  def arrays(self, hp: hp_lib.HParams) -> data_lib.Arrays:
    """The decoded dataset of `hp`, loaded once per process (DataError if unavailable); a
    streamed one's tfds source (tfrewind.imagenet.Source)."""
    key = (hp.dataset, hp.data_dir, hp.synthetic_size)
    if key not in self._arrays:
      self._arrays[key] = data_lib.load(hp.dataset, hp.data_dir, hp.download, hp.synthetic_size)
    return self._arrays[key]

  def data(self, hp: hp_lib.HParams, round_: int, start_in_phase: int) -> data_lib.Bundle:
    # Each phase draws its own data order, so retraining does not replay dense batches;
    # data_order k > 0 gives a retraining another one (the dense phase never changes).
    order = hp.data_order * 1_000_000 if round_ > 0 else 0
    protocol = protocols.get(hp.protocol)
    stats = (data_lib.CIFAR10_CODE_STATISTICS if hp.dataset.startswith("cifar") and
             protocol.cifar10_statistics else None)
    return data_lib.make(hp.dataset, hp.batch_size, seed=hp.seed * 1000 + round_ + order,
                         stats=stats, per_image=protocol.per_image_standardization,
                         pad_mode="CONSTANT" if protocol.zero_padding else "REFLECT",
                         validation=hp.validation, arrays=self.arrays(hp),
                         start_step=start_in_phase, image_size=hp.image_size,
                         # a streamed set builds each epoch of a phase: at most its cycle or
                         # its budget, and the epoch it resumes in
                         epochs=-(-max(hp.cycle_steps, hp.to_steps("retrain") or 0)
                                  // hp.steps_per_epoch()) + 1)


def _arrays(path) -> Optional[List[np.ndarray]]:
  """The arrays of a scores file, or None if it is missing or cannot be read whole."""
  if not os.path.exists(path):
    return None
  try:
    with np.load(path) as data:
      return [data[f"arr_{i}"] for i in range(len(data.files))]
  except Exception:  # pylint: disable=broad-except  (zip, npz and IO errors alike)
    return None


def _readable_snapshot(path) -> bool:
  if not os.path.exists(path):
    return False
  try:
    snapshots.Snapshot.load(path)
    return True
  except Exception:  # pylint: disable=broad-except  (zip, npz and IO errors alike)
    return False


def needs_scores(hp: hp_lib.HParams) -> bool:
  """The branch prunes by scores computed apart: of another step's network, or of a criterion
  that scores the network itself (gradients, SynFlow)."""
  return hp.mask_from is not None or registries.criterion(hp.criterion).scores_model
