"""tfrewind doctor's exactness checks (the rest it measures) and its exit status."""

import json
import os

import numpy as np
import tensorflow as tf

import tf_keras as keras
import tfrewind
from tfrewind import doctor
from tfrewind.pruning import sparsity

from helpers import compile_sgd, dataset, tiny_resnet


def _trained(strategy=None):
  with (strategy or tf.distribute.get_strategy()).scope():
    model = compile_sgd(tfrewind.prunable(tiny_resnet()))
  tfrewind.prune(model, 0.3)
  model.fit(dataset(), epochs=1, steps_per_epoch=3, verbose=0)
  return model


def test_masks_exact_finds_a_revived_weight_a_negative_zero_and_a_moving_slot():
  model = _trained()
  assert doctor.masks_exact(model) == []
  weight, mask, _ = sparsity._pruning_vars(model)[1]  # pylint: disable=protected-access
  where = np.argwhere(mask.numpy() == 0)[0]
  value = weight.numpy()
  value[tuple(where)] = -0.0  # equal to 0, but not +0.0 bitwise
  weight.assign(value)
  assert doctor.masks_exact(model) == [f"{weight.name}: 1 pruned weights not +0.0"]
  value[tuple(where)] = 0.0
  weight.assign(value)
  slot = sparsity.optimizer_slots(model.optimizer, weight)[0]
  moving = slot.numpy()
  moving[tuple(where)] = 1e-12
  slot.assign(moving)
  assert doctor.masks_exact(model) == [f"{slot.name}: 1 slots of pruned weights not 0"]


def test_replicas_identical_under_mirrored_strategy_on_two_logical_cpus():
  # ReductionToOneDevice: a collective-based strategy would share collective instance keys
  # with test_rewind's in the same process (see test_sparsity).
  strategy = tf.distribute.MirroredStrategy(tf.config.list_logical_devices("CPU")[:2],
                                            cross_device_ops=tf.distribute.ReductionToOneDevice())
  model = _trained(strategy)
  assert doctor.masks_exact(model) == [] and doctor.replicas_identical(model) == []
  kernel = next(v for v in model.weights if "kernel" in v.name and hasattr(v, "values"))
  kernel.values[1].assign(kernel.values[1] + 1.0)
  assert doctor.replicas_identical(model) == [f"{kernel.name}: replicas differ"]


def test_a_check_that_fails_is_a_nonzero_exit_and_is_recorded(tmp_path, monkeypatch, capsys):
  def speed(name, mode, settings, ds, strategy=None):
    broken = name == "resnet56" and mode == "mixed+jit"
    return {"network": name, "mode": mode, "its": 1.0, "images_per_s": 32.0,
            "vs_published": 0.1, "exact": not broken,
            "problems": ["w: 3 pruned weights not +0.0"] if broken else []}

  monkeypatch.setattr(doctor, "speed", speed)
  monkeypatch.setattr(doctor, "input_rate", lambda settings: 1000.0)
  from tfrewind import imagenet  # pylint: disable=g-import-not-at-top
  monkeypatch.setattr(imagenet, "jpeg_rate", lambda: 500.0)
  monkeypatch.setattr(doctor, "cycle", lambda settings, root: [])
  assert doctor.run(str(tmp_path)) == 1
  report = json.load(open(os.path.join(tmp_path, "doctor.json")))
  assert report["exact"] is False and len(report["speed"]) == 6
  out = capsys.readouterr().out
  assert "resnet56 mixed+jit: w: 3 pruned weights not +0.0" in out and "BROKEN" in out
  keras.backend.clear_session()
