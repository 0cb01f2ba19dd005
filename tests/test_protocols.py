"""Protocols: the text's choices and the reproduction's code's, pinned on a reduced cycle.

N = 72 dense steps, K = 8, LR 0.1 x0.1 at 36 and 54 (Mikler's 72k/8k/36k/54k divided by 1,000).
"""

import numpy as np
import pytest

import tfrewind
from tfrewind import data, experiment, hparams, plan, protocols, training

from helpers import compile_sgd, dataset, mock_cifar, recording, tiny_resnet

N, K, SPE = 72, 8, 8


def _phases(*pairs):
  return [float(np.float32(lr)) for lr, steps in pairs for _ in range(steps)]


# The LR of every step: dense, then one retraining, per protocol and method.
DENSE = {"text": _phases((0.1, 36), (0.01, 18), (0.001, 18)),
         # Keras' PiecewiseConstantDecay keeps the old LR at the boundary step itself
         "mikler_code": _phases((0.1, 37), (0.01, 18), (0.001, 17)),
         # and so does tf.compat.v1.train.piecewise_constant (the original's code)
         "renda_code": _phases((0.1, 37), (0.01, 18), (0.001, 17))}
RETRAIN = {
    ("text", "finetune"): _phases((0.001, 72)),
    ("text", "weight_rewind"): _phases((0.1, 28), (0.01, 18), (0.001, 18)),  # resumed at K
    ("text", "lr_rewind"): DENSE["text"],
    ("mikler_code", "finetune"): _phases((0.001, 72)),
    # a fresh optimizer: the schedule from step 0 for N - K steps
    ("mikler_code", "weight_rewind"): _phases((0.1, 37), (0.01, 18), (0.001, 9)),
    ("mikler_code", "lr_rewind"): DENSE["mikler_code"],
    ("renda_code", "finetune"): _phases((0.001, 72)),
    # the global step restored with the weights: resumed at K, one step late at each boundary
    ("renda_code", "weight_rewind"): _phases((0.1, 29), (0.01, 18), (0.001, 17)),
    ("renda_code", "lr_rewind"): DENSE["renda_code"],
    # the original's low-LR control: weights from K, the fine-tuning LR for N - K steps
    ("text", "weight_rewind_low_lr"): _phases((0.001, 64)),
    ("mikler_code", "weight_rewind_low_lr"): _phases((0.001, 64)),
    ("renda_code", "weight_rewind_low_lr"): _phases((0.001, 64)),
}


@pytest.mark.parametrize("protocol,method", sorted(RETRAIN))
def test_whole_lr_trace_of_a_reduced_cycle_per_protocol_and_method(protocol, method):
  hp = hparams.HParams(train_steps=f"{N}it", lr_boundaries=("36it", "54it"), rewind_step=f"{K}it",
                       method=method, protocol=protocol)
  model = compile_sgd(tfrewind.prunable(tiny_resnet()))
  cb = tfrewind.RewindCallback(method=method, schedule=tfrewind.OneShot(0.5), cycle_steps=N,
                               lr=training.lr_schedule(hp), rewind_step=K, protocol=protocol,
                               verbose=0)
  assert cb.plan == hp.plan()
  trace = recording(model, cb.total_steps)
  model.fit(dataset(), epochs=cb.total_steps // SPE, steps_per_epoch=SPE, verbose=0,
            callbacks=[cb])
  assert [float(v) for v in trace.numpy()] == DENSE[protocol] + RETRAIN[(protocol, method)]


def test_the_code_protocol_is_a_dense_setting_and_rewinds_the_lr_from_zero():
  text, code = hparams.HParams(method="weight_rewind"), hparams.HParams(
      method="weight_rewind", protocol="mikler_code")
  assert text.plan() == plan.Retrain(8000, 8000, 64000)
  assert code.plan() == plan.Retrain(8000, 0, 64000)
  assert hparams.run_key(text, 0) != hparams.run_key(code, 0)
  assert hparams.HParams(method="lr_rewind", protocol="mikler_code").plan() == plan.Retrain(
      None, 0, 72000)
  with pytest.raises(ValueError, match="unknown --protocol='renda_text'"):
    hparams.HParams(protocol="renda_text").validate()


def test_the_code_protocol_standardises_cifar100_with_cifar10_statistics(tmp_path):
  runner = experiment.Runner(experiment.Env(root=str(tmp_path / "runs"), verbose=0))
  with mock_cifar(num_examples=64):
    for protocol in ("text", "mikler_code"):
      hp = hparams.HParams(dataset="cifar100", data_dir=str(tmp_path), batch_size=16,
                           protocol=protocol)
      bundle = runner.data(hp, 1, 0)
      own = data.channel_stats(runner.arrays(hp).train_x)
      expected = data.CIFAR10_CODE_STATISTICS if protocol == "mikler_code" else own
      assert bundle.mean.tobytes() == expected[0].tobytes()
      assert bundle.std.tobytes() == expected[1].tobytes()
  np.testing.assert_allclose(data.CIFAR10_CODE_STATISTICS[0], [125.307, 122.950, 113.865],
                             atol=1e-3)
  assert protocols.get("mikler_code").cifar10_statistics


def test_the_original_code_protocol_pads_with_zeros_and_standardises_each_image(tmp_path):
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  runner = experiment.Runner(experiment.Env(root=str(tmp_path / "runs"), verbose=0))
  with mock_cifar(num_examples=64):
    hp = hparams.HParams(dataset="cifar10", data_dir=str(tmp_path), batch_size=16,
                         protocol="renda_code")
    bundle = runner.data(hp, 1, 0)
    arrays = runner.arrays(hp)
  assert bundle.mean is None and bundle.std is None
  # evaluation: each image by its own mean and std (tf.image.per_image_standardization)
  x = arrays.test_x[:16].astype(np.float64)
  flat = x.reshape(16, -1)
  std = np.maximum(flat.std(axis=1), 1 / np.sqrt(flat.shape[1]))
  expected = (flat - flat.mean(axis=1, keepdims=True)) / std[:, None]
  np.testing.assert_allclose(next(iter(bundle.test))[0].numpy().reshape(16, -1), expected,
                             rtol=1e-4, atol=1e-4)
  # the crop pads with zeros: a crop at the corner starts with 4 zero rows (reflection: none)
  image = tf.constant(arrays.train_x[0])
  zero = data.augment_with(image, tf.constant(False), 0, 0, 4, "CONSTANT").numpy()
  assert (zero[:4] == 0).all() and (zero[4:, 4:] == arrays.train_x[0][:-4, :-4]).all()
  reflect = data.augment_with(image, tf.constant(False), 0, 0, 4).numpy()
  assert (reflect[:4, 4:] == arrays.train_x[0][4:0:-1, :-4]).all()
  assert protocols.get("renda_code").zero_padding
  assert not protocols.get("text").zero_padding and not protocols.get("mikler_code").zero_padding
