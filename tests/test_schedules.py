"""OneShot / Iterative schedules and the LR schedules."""

import numpy as np
import pytest
import tensorflow as tf

import tf_keras as keras
import tfrewind
from tfrewind import lr as lr_lib
from tfrewind.pruning import schedules


@pytest.mark.parametrize("schedule", [
    tfrewind.OneShot(0.2), tfrewind.OneShot(0.107, cycle_steps=100),
    tfrewind.Iterative(rate=0.8, rounds=5), tfrewind.Iterative(densities=[0.5, 0.25]),
    tfrewind.Iterative(rate=0.7, rounds=3, cycle_steps=10)])
def test_schedule_config_round_trip(schedule):
  config = schedule.get_config()
  again = keras.utils.deserialize_keras_object(config)
  assert again == schedule and again.densities == schedule.densities
  assert type(schedule).from_config(config["config"]) == schedule


def test_iterative_densities_are_powers_of_rate():
  s = tfrewind.Iterative(rate=0.8, rounds=20)
  assert s.densities == tuple(0.8 ** k for k in range(1, 21))
  assert s.rounds == 20 and s.density_at_round(0) == 1.0 and s.density_at_round(3) == 0.8 ** 3


def test_schedule_call_never_asks_tfmot_to_prune_and_reports_round_sparsity():
  s = tfrewind.Iterative(densities=[0.5, 0.25], cycle_steps=10)
  for step, sparsity in [(0, 0.0), (9, 0.0), (10, 0.5), (19, 0.5), (20, 0.75), (1000, 0.75)]:
    should, value = s(tf.constant(step, tf.int64))
    assert not bool(should) and float(value) == np.float32(sparsity)


@pytest.mark.parametrize("make", [
    lambda: tfrewind.OneShot(0.0), lambda: tfrewind.OneShot(1.2),
    lambda: tfrewind.Iterative(rate=1.0, rounds=2), lambda: tfrewind.Iterative(rate=0.8),
    lambda: tfrewind.Iterative(rate=0.8, rounds=0), lambda: tfrewind.Iterative(densities=[0.2, 0.5]),
    lambda: tfrewind.Iterative(densities=[]), lambda: tfrewind.OneShot(0.5, cycle_steps=0)])
def test_bad_schedules_raise(make):
  with pytest.raises(ValueError):
    make()


def test_step_decay_boundaries_are_exact():
  s = tfrewind.StepDecay(0.1, [36000, 54000], 0.1)
  for step, expected in [(0, 0.1), (35999, 0.1), (36000, 0.01), (53999, 0.01), (54000, 0.001),
                         (71999, 0.001)]:
    assert float(s(step)) == np.float32(expected) == np.float32(s.value(step))
  again = keras.optimizers.schedules.deserialize(keras.optimizers.schedules.serialize(s))
  assert float(again(40000)) == np.float32(0.01)


def test_rewindable_replays_base_from_any_step_and_holds_a_constant():
  base = tfrewind.StepDecay(0.1, [10, 15], 0.2)
  lr = lr_lib.Rewindable(base)
  assert [lr.value(s) for s in range(20)] == [base.value(s) for s in range(20)]
  lr.rewind(to=4, at=20)
  assert [lr.value(s) for s in range(20, 40)] == [base.value(4 + s) for s in range(20)]
  lr.hold(0.001)
  assert lr.value(25) == float(np.float32(0.001))
  lr.rewind(to=0, at=0)
  assert lr.value(12) == base.value(12)


def test_tabulated_python_function():
  fn = lambda s: 0.1 if s < 3 else 0.05  # pylint: disable=unnecessary-lambda-assignment
  s = lr_lib.as_schedule(fn, 6)
  assert [float(s(i)) for i in range(8)] == [np.float32(fn(min(i, 5))) for i in range(8)]
  assert float(lr_lib.as_schedule(0.3, 5)(100)) == np.float32(0.3)
  with pytest.raises(ValueError, match="lr must be"):
    lr_lib.as_schedule("fast", 5)


def test_round_schedule_repr_and_equality():
  assert repr(tfrewind.OneShot(0.2)) == "OneShot(density=0.2, cycle_steps=None)"
  assert tfrewind.OneShot(0.2) != tfrewind.Iterative(densities=[0.2])
  assert isinstance(tfrewind.OneShot(0.2), schedules.RoundSchedule)
