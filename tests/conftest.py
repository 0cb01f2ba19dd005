"""Test set-up: legacy Keras, two logical CPU devices (for MirroredStrategy), quiet logs."""

import os

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import pytest  # noqa: E402
import tensorflow as tf  # noqa: E402

_cpus = tf.config.list_physical_devices("CPU")
tf.config.set_logical_device_configuration(
    _cpus[0], [tf.config.LogicalDeviceConfiguration(), tf.config.LogicalDeviceConfiguration()])


@pytest.fixture(autouse=True)
def _seed():
  import tf_keras as keras  # pylint: disable=g-import-not-at-top
  keras.backend.clear_session()
  keras.utils.set_random_seed(0)
  yield
