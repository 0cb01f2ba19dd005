"""Retraining plans: which weights and which LR each method retrains with. No TensorFlow.

After pruning, a retraining round takes the weights of step `weights_from`
(None: keep the trained ones), replays the LR schedule from step `lr_from`
(None: a constant fine-tuning LR), and trains `steps` steps. Each method of
Renda et al. (2020) is one entry of `METHODS`, name -> plan:

  finetune       Retrain(None, None, N)     constant LR 0.001
  weight_rewind  Retrain(K, K, N - K)       weights, BatchNorm, momentum from K
                                            (a budget T instead sets K = N - T)
  lr_rewind      Retrain(None, N - T, T)    T = N by default: LR from 0
  weight_rewind_low_lr  Retrain(K, None, N - K)   weights (and momentum) from K, constant LR
                                            0.001: the original's `lr_lottery` control
  reinit         the mask kept, weights re-drawn from their initializers, LR from 0 (control)
  custom         Retrain(weights_from, lr_from, T)

and the retraining schedules that followed (trained weights, masks fixed, a new
LR shape over the round's T steps, restarted every round; t = 0..T-1,
W = round(warmup * T) (Python's round), R = T - W, lr_max = base(0),
lr_min = base(N - 1) of the dense schedule `base`):

  slr  scaled LR restarting (Le & Hua 2021): linear warm-up lr_min -> lr_max over W
       steps, then base(floor((t - W) * N / R)): the whole schedule compressed into R
  clr  cyclic LR restarting (Le & Hua 2021): the same warm-up, then
       lr_min + (lr_max - lr_min) * (1 + cos(pi * (t - W) / R)) / 2
  llr  linear (Zimmer et al. 2023): lr_max * (1 - t / T), no warm-up

"Step K" is the state after K optimizer updates (optimizer.iterations == K).

Adding a method is one `@method(...)` entry below: the CLI's --method, the
callback, run folders and the report read this table.
"""

import dataclasses
from typing import Callable, Dict, Optional, Tuple

from tfrewind import protocols
from tfrewind.errors import ConfigError


@dataclasses.dataclass(frozen=True)
class Retrain:
  """The general retraining form: weights from one step, LR from another, a budget.

  weights_from: step whose weights are restored after pruning (None: keep the
    trained weights).
  lr_from: step from which the LR schedule is replayed (None: constant
    fine-tuning LR).
  steps: retraining steps per round.
  reinit: the control of Renda et al.: keep the mask, re-draw every weight
    from the network's initializers (seeded), replay the whole schedule.
  lr_shape: "slr", "clr" or "llr": the round's LR is that shape over its
    `steps` (tfrewind.lr.Rewindable.restart) instead of a replay.
  warmup: W, the warm-up steps of slr and clr.
  """
  weights_from: Optional[int]
  lr_from: Optional[int]
  steps: int
  reinit: bool = False
  lr_shape: Optional[str] = None
  warmup: int = 0

  @property
  def budget_is_prefix(self) -> bool:
    """True when the run of budget t is exactly the first t steps of a longer budget's: the
    trained weights kept, a constant LR, no re-draw (fine-tuning; `custom` without steps).
    A sweep then needs to train only its largest budget (tfrewind.sweep.cost)."""
    return (self.weights_from is None and self.lr_from is None and self.lr_shape is None
            and not self.reinit)


@dataclasses.dataclass(frozen=True)
class Method:
  """One retraining method: its plan and the retraining settings that plan reads.

  `reads` names the fields of tfrewind.hparams.HParams (group "retrain") that
  change what this method computes, besides `method` and `reset_momentum`; the
  others do not enter its run folder's name. `label` and `colour` are the report's
  (a matplotlib colour); `family` groups methods for its claims: "large_lr" (retrains
  with the schedule's large LR: Renda's and Le & Hua's claim), "small_lr", "control".
  """
  name: str
  plan: Callable[..., Retrain]
  reads: Tuple[str, ...]
  help: str
  label: str = ""
  colour: str = "black"
  family: str = ""


METHODS: Dict[str, Method] = {}


def method(name: str, reads: Tuple[str, ...], help: str, label: str = "",  # pylint: disable=redefined-builtin
           colour: str = "black", family: str = "", replace: bool = False):
  """Registers `fn(n, k, t, weights_from, lr_from, warmup) -> Retrain` as method `name`.

  n: cycle steps N; k: rewind step K; t: budget T (None: the method's
  default); weights_from, lr_from: custom steps (or None); warmup: a fraction.
  A user's module registers its own with `tfrewind.register_method` (the same
  arguments, the function first) and `--import`.
  """
  if not name or not name.replace("_", "").isalnum():
    raise ConfigError(f"a method name is letters, digits and '_' (it names run folders), got "
                      f"{name!r}")
  if name in METHODS and not replace:
    raise ConfigError(f"method {name!r} is registered already: choose another name, or pass "
                      f"replace=True")

  def register(fn):
    METHODS[name] = Method(name, fn, tuple(reads), help, label or name, colour, family)
    return fn
  return register


def register_method(name: str, plan: Callable[..., Retrain], reads: Tuple[str, ...] = (),
                    help: str = "", label: str = "", colour: str = "black",  # pylint: disable=redefined-builtin
                    family: str = "", replace: bool = False) -> Method:
  """Adds retraining method `name`: `plan(n, k, t, weights_from, lr_from, warmup) -> Retrain`.

  Example:
    >>> tfrewind.register_method("half_lr_rewind", lambda n, k, t, *_: tfrewind.Retrain(
    ...     None, n // 2, n - n // 2), help="replay the second half of the schedule")
  """
  method(name, reads, help or name, label, colour, family, replace)(plan)
  return METHODS[name]


@method("finetune", reads=("retrain", "finetune_lr"),
        help="keep the trained weights, constant LR finetune_lr",
        label="fine-tuning", colour="tab:blue", family="small_lr")
def _finetune(n, k, t, weights_from, lr_from, warmup):
  return Retrain(None, None, t or n)


@method("weight_rewind", reads=("rewind_step", "retrain", "restore_optimizer"),
        help="weights and LR schedule from step K (a budget T sets K = N - T)",
        label="weight rewinding", colour="tab:orange", family="")
def _weight_rewind(n, k, t, weights_from, lr_from, warmup):
  # A budget T means Renda's form: rewind weights and LR to step N - T.
  k = k if t is None else n - t
  if k < 0:
    raise ConfigError(f"weight_rewind budget {t} is longer than the cycle ({n} steps)")
  return Retrain(k, k, n - k)


@method("weight_rewind_low_lr", reads=("rewind_step", "retrain", "finetune_lr",
                                      "restore_optimizer"),
        help="weights from step K (a budget T sets K = N - T), constant LR finetune_lr "
             "(Renda's low-LR control)",
        label="weight rewinding, low LR", colour="silver", family="small_lr")
def _weight_rewind_low_lr(n, k, t, weights_from, lr_from, warmup):
  # The original's `lr_lottery`: --lottery_reset_to the checkpoint of step K (weights, momentum
  # and global step) with --lottery_force_learning_rate, trained to the end of the cycle.
  return dataclasses.replace(_weight_rewind(n, k, t, weights_from, lr_from, warmup), lr_from=None)


@method("lr_rewind", reads=("retrain",),
        help="keep the trained weights, replay the last T steps of the LR schedule",
        label="LR rewinding", colour="tab:green", family="large_lr")
def _lr_rewind(n, k, t, weights_from, lr_from, warmup):
  t = t or n
  if t > n:
    raise ConfigError(f"lr_rewind budget {t} is longer than the cycle ({n} steps)")
  return Retrain(None, n - t, t)


@method("reinit", reads=(),
        help="control: keep the mask, re-draw the weights, the whole schedule",
        label="reinit (control)", colour="grey", family="control")
def _reinit(n, k, t, weights_from, lr_from, warmup):
  return Retrain(None, 0, n, reinit=True)


@method("custom", reads=("retrain", "weights_from", "lr_from", "finetune_lr",
                         "restore_optimizer"),
        help="weights from --weights_from, LR from --lr_from, budget --retrain",
        label="custom", colour="tab:purple", family="")
def _custom(n, k, t, weights_from, lr_from, warmup):
  if t is None:
    raise ConfigError("method 'custom' needs retrain_steps")
  return Retrain(weights_from, lr_from, t)


def _shaped(shape: str, n: int, t: Optional[int], warmup: float) -> Retrain:
  t = t or n
  if not 0 <= warmup < 1:
    raise ConfigError(f"warmup must be a fraction in [0, 1), got {warmup!r}")
  return Retrain(None, None, t, lr_shape=shape, warmup=round(warmup * t))


@method("slr", reads=("retrain", "warmup"),
        help="scaled LR restarting: warm-up, then the dense schedule compressed into T",
        label="scaled LR restarting", colour="tab:red", family="large_lr")
def _slr(n, k, t, weights_from, lr_from, warmup):
  return _shaped("slr", n, t, warmup)


@method("clr", reads=("retrain", "warmup"),
        help="cyclic LR restarting: warm-up, then one cosine from lr_max to lr_min",
        label="cyclic LR restarting", colour="tab:brown", family="large_lr")
def _clr(n, k, t, weights_from, lr_from, warmup):
  return _shaped("clr", n, t, warmup)


@method("llr", reads=("retrain",), help="linear LR from lr_max to 0 over T, no warm-up",
        label="linear LR", colour="tab:pink", family="large_lr")
def _llr(n, k, t, weights_from, lr_from, warmup):
  return _shaped("llr", n, t, 0.0)


def retrain_plan(method_name: str, cycle_steps: int, rewind_step: int = 0,
                 retrain_steps: Optional[int] = None, weights_from: Optional[int] = None,
                 lr_from: Optional[int] = None, warmup: float = 0.1,
                 protocol: str = "text") -> Retrain:
  """The Retrain of a named method.

  protocol: "text", or a code's protocol (tfrewind.protocols): under "mikler_code"
    weight rewinding replays the LR from step 0.

  Example:
    >>> retrain_plan("weight_rewind", cycle_steps=72000, rewind_step=8000)
    Retrain(weights_from=8000, lr_from=8000, steps=64000, reinit=False, lr_shape=None, warmup=0)
  """
  n = positive_int("cycle_steps", cycle_steps)
  if method_name not in METHODS:
    raise ConfigError(f"unknown method {method_name!r}: choose one of {', '.join(METHODS)}")
  if retrain_steps is not None:
    retrain_steps = positive_int("retrain_steps", retrain_steps)
  plan = METHODS[method_name].plan(
      n, int(rewind_step), retrain_steps, None if weights_from is None else int(weights_from),
      None if lr_from is None else int(lr_from), float(warmup))
  for name, value in (("weights_from", plan.weights_from), ("lr_from", plan.lr_from)):
    if value is not None and not 0 <= value <= n:
      raise ConfigError(f"{name} (rewind step) {value} is outside the cycle [0, {n}]")
  if plan.weights_from == n:  # the trained weights themselves
    plan = dataclasses.replace(plan, weights_from=None)
  if method_name == "weight_rewind" and protocols.get(protocol).rewind_lr_from_zero:
    plan = dataclasses.replace(plan, lr_from=0)
  return plan


def positive_int(name, value) -> int:
  if int(value) != value or value <= 0:
    raise ConfigError(f"{name} must be a positive integer, got {value!r}")
  return int(value)
