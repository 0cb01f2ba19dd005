"""Test set-up: legacy Keras, two logical CPU devices (for MirroredStrategy), quiet logs."""

import os

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import pytest  # noqa: E402

from tfrewind import platform  # noqa: E402

# TensorFlow 2.21 writes its C++ start-up lines whatever TF_CPP_MIN_LOG_LEVEL says; each xdist
# worker would print them after pytest's summary. Started as the CLI starts it, they are gone.
platform.start_tensorflow(verbose=0)
import tensorflow as tf  # noqa: E402  pylint: disable=g-import-not-at-top

_cpus = tf.config.list_physical_devices("CPU")
tf.config.set_logical_device_configuration(
    _cpus[0], [tf.config.LogicalDeviceConfiguration(), tf.config.LogicalDeviceConfiguration()])


@pytest.fixture(autouse=True)
def _seed():
  import tf_keras as keras  # pylint: disable=g-import-not-at-top
  keras.backend.clear_session()
  keras.utils.set_random_seed(0)
  yield
