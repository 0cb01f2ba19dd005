"""The input pipeline: real tfds path on mock data, exact augmentation, standardisation."""

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_datasets as tfds

import tf_keras as keras
from tfrewind import data
from tfrewind.models import build_model

from helpers import mock_cifar


def _np_augment(img, flip, dy, dx):
  padded = np.pad(img, ((4, 4), (4, 4), (0, 0)), mode="reflect")
  out = padded[dy:dy + img.shape[0], dx:dx + img.shape[1]]
  return out[:, ::-1] if flip else out


def test_augment_with_is_exact_for_every_flip_and_offset():
  img = np.arange(32 * 32 * 3, dtype=np.float32).reshape(32, 32, 3)
  for flip in (False, True):
    for dy in range(9):
      for dx in range(9):
        got = data.augment_with(tf.constant(img), tf.constant(flip), tf.constant(dy),
                                tf.constant(dx)).numpy()
        assert got.tobytes() == _np_augment(img, flip, dy, dx).tobytes(), (flip, dy, dx)


def test_random_augment_is_seeded_and_covers_flips_and_crops():
  img = np.random.default_rng(0).integers(0, 255, (32, 32, 3)).astype(np.uint8)
  candidates = {_np_augment(img, f, dy, dx).tobytes(): (f, dy, dx)
                for f in (False, True) for dy in range(9) for dx in range(9)}
  seen = set()
  for i in range(300):
    seed = tf.constant([7, i], tf.int64)
    a = data.augment(tf.constant(img), seed).numpy()
    assert a.tobytes() == data.augment(tf.constant(img), seed).numpy().tobytes()
    seen.add(candidates[a.tobytes()])  # KeyError if not a pad+crop+flip of the image
  assert {f for f, _, _ in seen} == {False, True}
  assert len({(dy, dx) for _, dy, dx in seen}) > 60


def test_standardisation_uses_training_statistics():
  a = data.synthetic(400, 100)
  mean, std = data.channel_stats(a.train_x)
  x = a.train_x.reshape(-1, 3).astype(np.float64)
  np.testing.assert_array_equal(mean, x.mean(0).astype(np.float32))
  np.testing.assert_array_equal(std, x.std(0).astype(np.float32))
  bundle = data.make("synthetic", batch_size=100, arrays=a)
  test_x = np.concatenate([b[0].numpy() for b in bundle.test])
  expected = (a.test_x.astype(np.float32) - mean) / std
  assert test_x.tobytes() == expected.astype(np.float32).tobytes()
  train_x = np.concatenate([next(iter(bundle.train))[0].numpy() for _ in range(2)])
  assert abs(train_x.mean()) < 0.2 and abs(train_x.std() - 1) < 0.2


def test_train_pipeline_is_deterministic_under_its_seed():
  a = data.synthetic(256, 64)
  first = [b[0].numpy() for b in data.make("synthetic", 32, seed=3, arrays=a).train.take(10)]
  again = [b[0].numpy() for b in data.make("synthetic", 32, seed=3, arrays=a).train.take(10)]
  other = [b[0].numpy() for b in data.make("synthetic", 32, seed=4, arrays=a).train.take(10)]
  assert all(x.tobytes() == y.tobytes() for x, y in zip(first, again))
  assert any(x.tobytes() != y.tobytes() for x, y in zip(first, other))
  # Epochs differ (reshuffled, re-augmented): 256 / 32 = 8 batches per epoch.
  assert first[0].tobytes() != first[8].tobytes()


@pytest.mark.parametrize("name,classes", [("cifar10", 10), ("cifar100", 100)])
def test_real_tfds_path_on_mock_data(name, classes, tmp_path):
  with mock_cifar(num_examples=64):
    bundle = data.make(name, batch_size=16, data_dir=str(tmp_path), validation=True)
  assert bundle.num_classes == classes and bundle.steps_per_epoch == 4
  x, y = next(iter(bundle.train))
  assert x.shape == (16, 32, 32, 3) and x.dtype == tf.float32 and y.shape == (16,)
  n_val = sum(int(b[1].shape[0]) for b in bundle.validation)
  n_test = sum(int(b[1].shape[0]) for b in bundle.test)
  assert (n_val, n_test) == (32, 32)  # 2,000 of 10,000 in the real set; half of a tiny one


def test_validation_split_is_fixed_and_disjoint():
  v, t = data.validation_split(10000)
  assert len(v) == 2000 and len(t) == 8000 and not set(v) & set(t)
  v2, _ = data.validation_split(10000)
  assert (v == v2).all()


def test_missing_cifar_says_which_folder_and_how_to_download(tmp_path):
  with pytest.raises(data.DataError) as e:
    data.load("cifar10", data_dir=str(tmp_path / "nowhere"), download=False)
  assert str(tmp_path / "nowhere") in str(e.value) and "tfds build cifar10" in str(e.value)
  with pytest.raises(data.DataError, match="unknown dataset"):
    data.load("mnist")
  (tmp_path / "file").write_text("x")
  with pytest.raises(data.DataError, match="is a file"):
    data.load("cifar10", data_dir=str(tmp_path / "file"), download=False)


def _closed_loopback_port():
  import socket  # pylint: disable=g-import-not-at-top
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]  # free again once closed: nothing listens there


def test_offline_a_missing_cifar_fails_at_once_without_trying_to_download(tmp_path,
                                                                          monkeypatch):
  # The download hosts made unreachable on loopback (a closed port): the real check runs, and
  # tfds' download (minutes of retries offline) is never started.
  monkeypatch.setattr(data, "DOWNLOAD_HOSTS", (("127.0.0.1", _closed_loopback_port()),))
  for variable in data._PROXY_VARIABLES:  # pylint: disable=protected-access
    monkeypatch.delenv(variable, raising=False)
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top

  def no_download(*args, **kwargs):
    raise AssertionError("download_and_prepare was called")
  monkeypatch.setattr(tfds.core.DatasetBuilder, "download_and_prepare", no_download)
  assert not data.can_download(data.DOWNLOAD_HOSTS, timeout=2.0)
  with pytest.raises(data.DataError) as e:
    data.load("cifar100", data_dir=str(tmp_path / "nowhere"), download=True)
  message = str(e.value)
  assert "cannot reach 127.0.0.1" in message and "tfds build cifar100" in message
  assert str(tmp_path / "nowhere") in message and "\n" not in message
  # a proxy in the environment: tfds is left to go through it
  monkeypatch.setenv("HTTPS_PROXY", "http://127.0.0.1:9")
  assert data.can_download(data.DOWNLOAD_HOSTS, timeout=2.0)


@pytest.mark.slow
def test_synthetic_is_deterministic_and_learnable_well_above_chance():
  a, b = data.synthetic(2000, 400), data.synthetic(2000, 400)
  assert a.train_x.tobytes() == b.train_x.tobytes() and a.train_x.shape == (2000, 32, 32, 3)
  keras.utils.set_random_seed(0)
  bundle = data.make("synthetic", batch_size=64, arrays=a)
  model = build_model("resnet8", width=8, bn_momentum=0.9)
  model.compile(keras.optimizers.SGD(0.05, momentum=0.9, nesterov=True),
                keras.losses.SparseCategoricalCrossentropy(from_logits=True), metrics=["accuracy"])
  model.fit(bundle.train, epochs=5, steps_per_epoch=30, verbose=0)
  _, accuracy = model.evaluate(bundle.test, verbose=0)
  assert accuracy > 0.5  # chance is 0.1


def test_pipeline_started_at_a_step_continues_the_same_stream():
  a = data.synthetic(200, 50)
  full = [b[0].numpy() for b in data.make("synthetic", 32, seed=5, arrays=a).train.take(15)]
  resumed = [b[0].numpy() for b in data.make("synthetic", 32, seed=5, arrays=a,
                                             start_step=9).train.take(6)]
  assert all(x.tobytes() == y.tobytes() for x, y in zip(full[9:], resumed))
