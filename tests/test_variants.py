"""slr, clr and llr (Le & Hua 2021; Zimmer et al. 2023): the LR of every step, recorded inside
the compiled train step, equals the formulas of tfrewind.plan computed here in float64 and
rounded once to float32."""

import math

import numpy as np
import pytest
import tensorflow as tf

import tf_keras as keras
import tfrewind
from tfrewind import plan as plan_lib

from helpers import compile_sgd, dataset, recording, tiny_resnet

N, SPE = 20, 4
LR = tfrewind.StepDecay(0.1, [10, 15], 0.1)


def _trace(method, rounds=1, spe=1, base=LR, **kwargs):
  model = compile_sgd(tfrewind.prunable(tiny_resnet()), steps_per_execution=spe)
  schedule = tfrewind.OneShot(0.5) if rounds == 1 else tfrewind.Iterative(rate=0.5,
                                                                            rounds=rounds)
  cb = tfrewind.RewindCallback(method=method, schedule=schedule, cycle_steps=N, lr=base,
                               rewind_step=4, verbose=0, **kwargs)
  trace = recording(model, cb.total_steps)
  model.fit(dataset(), epochs=cb.total_steps // SPE, steps_per_epoch=SPE, verbose=0,
            callbacks=[cb])
  assert int(model.optimizer.iterations.numpy()) == cb.total_steps
  return [float(v) for v in trace.numpy()], cb


def _base(base, step):
  return float(np.float32(base(step)))


def _shape(method, base, t_steps, warmup):
  """One round of slr/clr/llr by the formulas, float64 rounded to float32."""
  hi, lo = _base(base, 0), _base(base, N - 1)
  w = round(warmup * t_steps) if method != "llr" else 0
  r = t_steps - w
  out = []
  for t in range(t_steps):
    if t < w:
      v = lo + (hi - lo) * t / w
    elif method == "slr":
      v = _base(base, (t - w) * N // r)
    elif method == "clr":
      v = lo + (hi - lo) * (1.0 + math.cos(math.pi * (t - w) / r)) / 2.0
    else:
      v = hi * (1.0 - t / t_steps)
    out.append(float(np.float32(v)))
  return out


@pytest.mark.parametrize("spe", [1, 2])
@pytest.mark.parametrize("rounds", [1, 2])
@pytest.mark.parametrize("method", ["slr", "clr", "llr"])
def test_lr_of_every_step_follows_the_formula(method, rounds, spe):
  trace, cb = _trace(method, rounds=rounds, spe=spe)
  expected = [_base(LR, s) for s in range(N)] + _shape(method, LR, N, 0.1) * rounds
  assert trace == expected
  w = cb.plan.warmup
  assert (method, w) in (("slr", 2), ("clr", 2), ("llr", 0))


@pytest.mark.parametrize("method", ["slr", "clr"])
def test_warmup_and_budget_set_the_shape(method):
  trace, cb = _trace(method, retrain_steps=12, warmup=0.25)
  assert cb.plan == plan_lib.Retrain(None, None, 12, lr_shape=method, warmup=3)
  assert trace[N:] == _shape(method, LR, 12, 0.25)
  assert trace[N] == _base(LR, N - 1) and trace[N + 3] == _base(LR, 0)  # warm-up ends at lr_max


def test_slr_without_warmup_over_the_whole_cycle_is_lr_rewinding_bitwise():
  slr, _ = _trace("slr", rounds=2, warmup=0.0)
  lr_rewind, _ = _trace("lr_rewind", rounds=2)
  assert slr == lr_rewind


@pytest.mark.parametrize("method", ["lr_rewind", "weight_rewind", "slr", "clr", "llr"])
def test_any_keras_schedule_is_a_base(method):
  cosine = keras.optimizers.schedules.CosineDecay(0.1, N, alpha=0.01)
  trace, cb = _trace(method, base=cosine)
  dense = trace[:N]
  # In the compiled step the float32 cos may differ from eager by an ulp of base(0).
  np.testing.assert_allclose(dense, [_base(cosine, s) for s in range(N)], rtol=0, atol=1e-8)
  if method in ("slr", "clr", "llr"):
    expected = _shape(method, cosine, N, 0.1)
    w = cb.plan.warmup
    if method == "slr":  # the compressed schedule replays the dense steps bitwise
      expected[w:] = [dense[(t - w) * N // (N - w)] for t in range(w, N)]
    assert trace[N:] == expected
  else:  # a replay gives exactly what the base gave at those steps in dense training
    assert trace[N:] == dense[cb.plan.lr_from:cb.plan.lr_from + cb.plan.steps]


def test_piecewise_constant_decay_base_is_inclusive_at_its_boundaries():
  piecewise = keras.optimizers.schedules.PiecewiseConstantDecay([10, 15], [0.1, 0.01, 0.001])
  trace, _ = _trace("slr", base=piecewise, warmup=0.0)
  # Keras keeps the old value at step == boundary: base(10) is still 0.1.
  assert trace[10] == _base(piecewise, 10) == float(np.float32(0.1))
  assert trace[N:] == [_base(piecewise, t) for t in range(N)]


def test_bad_warmup_is_refused():
  with pytest.raises(ValueError, match=r"warmup must be a fraction in \[0, 1\)"):
    plan_lib.retrain_plan("clr", N, warmup=1.0)
