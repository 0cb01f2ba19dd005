"""Keras callbacks that prune and retrain: RewindCallback, and SnapshotCallback for the dense run.

The maths lives below this floor: which weights and LR a method retrains with
in tfrewind.plan (pure Python), the state at step K in tfrewind.snapshots,
masks in tfrewind.pruning. `optimizer.iterations` is never rewound: it keeps
counting so that checkpoints, TensorBoard and BackupAndRestore see one
monotonic run, and the LR schedule is told which step to replay instead
(tfrewind.lr.Rewindable).
"""

import itertools
from typing import List, Optional, Sequence, Union

import numpy as np
import tensorflow as tf
from absl import logging

import tf_keras as keras
from tfrewind import lr as lr_lib
from tfrewind import plan as plan_lib
from tfrewind import registries
from tfrewind import snapshots
from tfrewind.pruning import schedules as schedules_lib
from tfrewind.pruning import sparsity
from tfrewind.pruning import target as target_lib
from tfrewind.pruning.spec import PruneSpec
from tfrewind.snapshots import Snapshot
from tfrewind.errors import ConfigError


class StepCallback(keras.callbacks.Callback):
  """Knows the optimizer step of every batch with one device read per epoch, not per batch."""

  def on_epoch_begin(self, epoch, logs=None):
    self._epoch_step = int(self.model.optimizer.iterations.numpy())
    self._epoch_first_batch = None

  def _step(self, batch):
    """optimizer.iterations before this batch (batches restart at 0 or at a resumed index)."""
    if self._epoch_first_batch is None:
      self._epoch_first_batch = batch
    return self._epoch_step + batch - self._epoch_first_batch


class SnapshotCallback(StepCallback):
  """Takes a Snapshot when optimizer.iterations reaches `step` (and saves it to `path`).

  For training a dense network once, so that many RewindCallbacks with
  dense_trained=True can later rewind to its step K.
  """

  def __init__(self, step: int, path: Optional[str] = None):
    super().__init__()
    self.step = int(step)
    self.path = path
    self.snapshot: Optional[Snapshot] = None
    self._supports_tf_logs = True

  def on_train_batch_begin(self, batch, logs=None):
    if self._step(batch) == self.step:
      self.snapshot = snapshots.snapshot(self.model)
      if self.path:
        self.snapshot.save(self.path)


class RewindCallback(StepCallback):
  """Trains dense, then prunes and retrains once per round of `schedule`.

  Example:
    >>> model = tfrewind.prunable(my_model())
    >>> rewind = tfrewind.RewindCallback(
    ...     method="lr_rewind", schedule=tfrewind.Iterative(rate=0.8, rounds=3),
    ...     cycle_steps=1000, lr=tfrewind.StepDecay(0.1, [500, 750], 0.1), rewind_step=100)
    >>> model.compile(keras.optimizers.SGD(momentum=0.9), loss, metrics=["accuracy"])
    >>> model.fit(ds, epochs=rewind.total_steps // 100, steps_per_epoch=100,
    ...           callbacks=[rewind])

  The fit must be long enough for the dense cycle and every round
  (`total_steps`); a longer fit stops when the last round ends. Events happen
  at step boundaries, so with steps_per_execution > 1 every prune and rewind
  step must be a multiple of it.

  Args:
    method: a name of tfrewind.plan.METHODS (finetune, weight_rewind, lr_rewind,
      weight_rewind_low_lr, reinit, custom, and the schedules slr, clr, llr; `tfrewind run
      --help` lists them with their help).
    schedule: OneShot or Iterative: the density of each round.
    cycle_steps: N, the length of the dense training (and of LR rewinding).
    lr: the LR schedule (a LearningRateSchedule, a float or a `step -> lr`
      function); default: the optimizer's own.
    rewind_step: K, for weight rewinding.
    finetune_lr: the constant LR of fine-tuning.
    retrain_steps, weights_from, lr_from: the general form (method="custom"),
      or a budget for finetune / lr_rewind / slr / clr / llr.
    warmup: slr and clr: the warm-up, a fraction of the round.
    protocol: a name of tfrewind.protocols.PROTOCOLS: "text" (the papers' texts),
      "mikler_code" or "renda_code" (what each study's code did).
    scope, structure, criterion, seed, count, classifier, level: passed to
      `tfrewind.prune`; or, instead of them, `prune`: a tfrewind.PruneSpec.
    reset_momentum: zero the optimizer state at every prune (Mikler).
    restore_optimizer: weight rewinding also restores the optimizer slots of
      step K (Renda).
    dense_trained: the model is already trained dense: start with a prune.
    snapshot: a Snapshot (or its path) of step `weights_from`, needed with
      dense_trained and a weight-restoring method.
    snapshot_path: where the step-K snapshot is written when taken (and read
      back when a resumed run needs it).
    start_step: optimizer step of the first prune (default: cycle_steps, or
      the step at the first train begin when dense_trained).
    split_fit: the schedule is trained over several fit() calls, so one
      fit() shorter than the schedule is not an error.
    first_round: the number of this callback's first round in the whole schedule (the
      command line runs round r of an iterative schedule as a one-round callback with
      first_round=r), so that reinit draws the same weights either way.
    scores: per kernel, per-weight scores to prune by instead of the criterion's of the
      current weights (tfrewind.pruning.saliency.scores of another network or step: the
      command line's --mask_from and cached gradient criteria).
    criterion_data, criterion_batches: a criterion that scores gradients (snip, grasp)
      without `scores` takes the first `criterion_batches` (images, labels) of
      `criterion_data` at each prune; synflow_rounds: synflow's prunes per round.
  """

  def __init__(self, method: str, schedule: schedules_lib.RoundSchedule, cycle_steps: int,
               lr=None, rewind_step: int = 0, finetune_lr: float = 1e-3,
               retrain_steps: Optional[int] = None, weights_from: Optional[int] = None,
               lr_from: Optional[int] = None, warmup: float = 0.1, protocol: str = "text",
               scope: str = "global",
               structure: str = "unstructured", criterion: str = "magnitude", seed: int = 0,
               count: str = "weights", classifier: str = "fixed", level: int = 1,
               reset_momentum: bool = False, restore_optimizer: bool = True,
               dense_trained: bool = False, snapshot: Union[None, str, Snapshot] = None,
               snapshot_path: Optional[str] = None, start_step: Optional[int] = None,
               split_fit: bool = False, first_round: int = 1, verbose: int = 1,
               prune: Optional[PruneSpec] = None, scores: Optional[Sequence] = None,
               criterion_data=None, criterion_batches: int = 1, synflow_rounds: int = 100):
    super().__init__()
    if not isinstance(schedule, schedules_lib.RoundSchedule):
      raise ConfigError(f"schedule must be tfrewind.OneShot or tfrewind.Iterative, got {schedule!r}")
    self.method = method
    self.schedule = schedule
    self.cycle_steps = plan_lib.positive_int("cycle_steps", cycle_steps)
    self.plan = plan_lib.retrain_plan(method, cycle_steps, rewind_step, retrain_steps,
                                      weights_from, lr_from, warmup, protocol)
    self.finetune_lr = float(finetune_lr)
    if not self.finetune_lr > 0:
      raise ConfigError(f"finetune_lr must be positive, got {finetune_lr!r}")
    # One value for how to prune, validated once (not after hours of dense training).
    self.prune = prune if prune is not None else PruneSpec(
        scope=scope, structure=structure, criterion=criterion, seed=seed, count=count,
        classifier=classifier, level=level)
    self.prune_kwargs = self.prune.kwargs()
    self.scores = None if scores is None else [np.asarray(a) for a in scores]
    self.criterion_data = criterion_data
    self.criterion_batches = plan_lib.positive_int("criterion_batches", criterion_batches)
    self.synflow_rounds = plan_lib.positive_int("synflow_rounds", synflow_rounds)
    entry = registries.criterion(self.prune.criterion)
    if scores is None and "batches" in entry.needs and criterion_data is None:
      raise ConfigError(f"criterion {self.prune.criterion!r} scores gradients on training "
                        f"batches: pass criterion_data= (a dataset of (images, labels)) or "
                        f"scores=")
    self.reset_momentum = bool(reset_momentum)
    self.restore_optimizer = bool(restore_optimizer)
    self.dense_trained = bool(dense_trained)
    self._snapshot = Snapshot.load(snapshot) if isinstance(snapshot, str) else snapshot
    self.snapshot_path = snapshot_path
    self.start_step = start_step if start_step is not None else (
        None if dense_trained else self.cycle_steps)
    self.split_fit = bool(split_fit)
    self.first_round = int(first_round)
    self.verbose = verbose
    self._lr_arg = lr
    self.lr_schedule: Optional[lr_lib.Rewindable] = None
    self.events: List[dict] = []
    self._supports_tf_logs = True
    if (self._snapshot is not None and self.plan.weights_from is not None
        and self._snapshot.step != self.plan.weights_from):
      raise ConfigError(f"the snapshot is of step {self._snapshot.step}, but weights are "
                       f"rewound to step {self.plan.weights_from}")

  # -- the plan, in absolute optimizer steps
  @property
  def prune_steps(self) -> List[int]:
    return [self.start_step + r * self.plan.steps for r in range(self.schedule.rounds)]

  @property
  def end_step(self) -> int:
    return self.start_step + self.schedule.rounds * self.plan.steps

  @property
  def total_steps(self) -> int:
    """Optimizer steps that fit() must provide from a fresh start."""
    return self.end_step - (self.start_step if self.dense_trained else 0)

  @property
  def snapshot_step(self) -> Optional[int]:
    """The dense step at which the snapshot for weight restoring is taken."""
    if self.plan.weights_from is None or self.dense_trained:
      return None
    return self.start_step - self.cycle_steps + self.plan.weights_from

  def round_at(self, step: int) -> int:
    """0 during dense training, r during round r (after its prune)."""
    if step < self.start_step:
      return 0
    return min((step - self.start_step) // self.plan.steps + 1, self.schedule.rounds)

  # -- Keras hooks
  def on_train_begin(self, logs=None):
    model = self.model
    if model.optimizer is None:
      raise ConfigError("RewindCallback needs a compiled model")
    if not sparsity.wrappers(model):
      raise ConfigError("RewindCallback needs a prunable model: call tfrewind.prunable(model) "
                       "before compiling")
    if sparsity.silences_channels(self.prune_kwargs["structure"]):
      sparsity.require_channel_norms(model)
    step = int(model.optimizer.iterations.numpy())
    if self.start_step is None:
      self.start_step = step
    self._install_lr(model)
    self._check_fit_length(step)
    spe = int(getattr(model, "_steps_per_execution", None).numpy()) if getattr(
        model, "_steps_per_execution", None) is not None else 1
    events = self.prune_steps + ([self.snapshot_step] if self.snapshot_step is not None else [])
    if spe > 1 and any(e % spe for e in events):
      raise ConfigError(f"prune/rewind steps {sorted(events)} must be multiples of "
                       f"steps_per_execution={spe}")
    r = self.round_at(step)
    if r > 0 and step not in self.prune_steps:
      self._set_lr(self.prune_steps[r - 1])  # resumed inside round r: masks came from the checkpoint
    else:
      self.lr_schedule.rewind(to=0, at=0)
    needs_snapshot = self.plan.weights_from is not None and any(p >= step for p in self.prune_steps)
    if needs_snapshot and self._snapshot is None:
      if self.dense_trained or (self.snapshot_step is not None and step > self.snapshot_step):
        if self.snapshot_path and tf.io.gfile.exists(self.snapshot_path):
          self._snapshot = Snapshot.load(self.snapshot_path)
        else:
          raise ConfigError(f"weight rewinding to step {self.plan.weights_from} needs the "
                           f"snapshot of that step: pass snapshot= (or snapshot_path= of a "
                           f"saved one)")
    if step >= self.end_step:
      logging.warning("RewindCallback: step %d is past the last round (%d): nothing to train",
                      step, self.end_step)
      model.stop_training = True

  def on_train_batch_begin(self, batch, logs=None):
    step = self._step(batch)
    if step == self.snapshot_step:
      self._take_snapshot()
    if step in self.prune_steps:
      self._prune(step)

  def on_train_batch_end(self, batch, logs=None):
    if self._step(batch) + 1 >= self.end_step:
      self.model.stop_training = True

  def on_epoch_end(self, epoch, logs=None):
    if logs is not None:
      logs["density"] = sparsity.density(self.model, self.prune.keep_dense)
      logs["round"] = self.round_at(int(self.model.optimizer.iterations.numpy()) - 1)

  # -- internals
  def _install_lr(self, model):
    optimizer = getattr(model.optimizer, "inner_optimizer", model.optimizer)
    current = optimizer._learning_rate  # pylint: disable=protected-access
    if isinstance(current, lr_lib.Rewindable):
      self.lr_schedule = current
      return
    base = self._lr_arg
    if base is None:
      base = current if isinstance(current, lr_lib.LearningRateSchedule) else float(
          current.numpy())
    with model.distribute_strategy.scope():
      self.lr_schedule = lr_lib.Rewindable(lr_lib.as_schedule(base, self.end_step))
      optimizer.learning_rate = self.lr_schedule
      optimizer._compute_current_learning_rate()  # pylint: disable=protected-access
    if model.train_function is not None:  # traced with the old LR: retrace
      model.train_function = model.make_train_function(force=True)

  def _check_fit_length(self, step):
    steps, epochs = self.params.get("steps"), self.params.get("epochs")
    if not steps or not epochs or self.split_fit:
      return
    available = steps * epochs
    needed = self.total_steps
    if available < needed and step <= (0 if not self.dense_trained else self.start_step):
      raise ConfigError(
          f"the fit is {epochs} epochs x {steps} steps = {available} steps, but this schedule "
          f"needs {needed} ({'' if self.dense_trained else f'{self.cycle_steps} dense + '}"
          f"{self.schedule.rounds} rounds x {self.plan.steps}): raise epochs to "
          f"{-(-needed // steps)}")

  def _set_lr(self, prune_step):
    if self.plan.lr_shape is not None:
      self.lr_schedule.restart(self.plan.lr_shape, at=prune_step, steps=self.plan.steps,
                               warmup=self.plan.warmup, cycle=self.cycle_steps)
    elif self.plan.lr_from is None:
      self.lr_schedule.hold(self.finetune_lr)
    else:
      self.lr_schedule.rewind(to=self.plan.lr_from, at=prune_step)

  def _take_snapshot(self):
    self._snapshot = snapshots.snapshot(self.model)
    if self.snapshot_path:
      self._snapshot.save(self.snapshot_path)
    self.events.append({"step": self._snapshot.step, "event": "snapshot"})

  def _scores(self, target):
    """The scores this prune uses: given, computed on the network (a model criterion), or
    None (the criterion scores the current weights itself)."""
    if self.scores is not None:
      return self.scores
    if not registries.criterion(self.prune.criterion).scores_model:
      return None
    batches = [] if self.criterion_data is None else list(
        itertools.islice(iter(self.criterion_data), self.criterion_batches))
    from tfrewind.pruning import saliency  # pylint: disable=g-import-not-at-top
    return saliency.scores(self.model, self.prune, target, batches, self.synflow_rounds)

  def _prune(self, step):
    r = self.prune_steps.index(step) + 1
    target = self.schedule.density_at_round(r)
    seed = self.prune_kwargs["seed"] * 1000 + self.first_round + r - 1
    control = self.prune.control
    scores = self._scores(target)
    if control is None:
      achieved = target_lib.prune(self.model, target, self.prune, scores=scores)
    else:  # the control shuffles the kernels the round retrains from: rewound, redrawn or kept
      kwargs = {k: v for k, v in self.prune_kwargs.items() if k not in ("control", "target")}
      new = sparsity.new_masks(self.model, target_lib.weight_density(
          self.model, target, self.prune, scores), scores=scores, **kwargs)
    if self.plan.weights_from is not None:
      snapshots.rewind_weights(self.model, self._snapshot, optimizer=self.restore_optimizer)
    if self.plan.reinit:
      snapshots.reinitialize(self.model, seed=seed)
    if control is not None:
      sparsity.apply_control(self.model, new, control, seed,
                             [w.numpy() for w, _, _ in sparsity._pruning_vars(self.model)],  # pylint: disable=protected-access
                             sparsity.kept_dense(self.model, self.prune.keep_dense))
      sparsity.record_thresholds(self.model, None)
      achieved = sparsity.density(self.model, self.prune.keep_dense)
    if self.reset_momentum or self.plan.reinit:
      snapshots.reset_optimizer_state(self.model)
    self._set_lr(step)
    self.events.append({"step": step, "event": "prune", "round": r, "density": achieved})
    if self.verbose:
      logging.info("step %d: round %d of %d, pruned to density %.4f (%s)", step, r,
                   self.schedule.rounds, achieved, self.method)
