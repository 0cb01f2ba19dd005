"""Datasets: CIFAR-10/100 through tensorflow-datasets; offline, scikit-learn's `digits` and a
`synthetic` set; ImageNet streamed from disk (tfrewind.imagenet).

Training: standardise by the training set's per-channel mean and std, random
horizontal flip, 4-pixel reflection pad, random 32x32 crop (digits: 1-pixel pad,
8x8 crop, no flip; tfrewind.names.DATASETS). Evaluation:
standardise only. The images are decoded once into memory (CIFAR is 150 MB as
uint8), so every epoch reads from RAM; augmentation runs as a parallel map with
stateless per-example seeds, so a pipeline is deterministic under its seed
whatever the parallelism.

Example:
  >>> bundle = tfrewind.data.make("cifar10", batch_size=128, seed=1)
  >>> model.fit(bundle.train, steps_per_epoch=bundle.steps_per_epoch, ...)
"""

import dataclasses
import os
import socket
from typing import Optional

import numpy as np
import tensorflow as tf
from absl import logging as absl_logging

from tfrewind import names
from tfrewind.errors import DataError  # noqa: F401  (raised here; tfrewind.data.DataError)

DATASETS = tuple(names.DATASETS)
PAD = 4
# Renda et al. validate on a fixed random 2,000 of the 10,000 test images.
# Mikler's code standardises CIFAR-10 and CIFAR-100 with these CIFAR-10 constants (of x / 255).
CIFAR10_CODE_STATISTICS = (
    (255 * np.array([0.49139968, 0.48215841, 0.44653091], np.float64)).astype(np.float32),
    (255 * np.array([0.24703223, 0.24348513, 0.26158784], np.float64)).astype(np.float32))
VALIDATION_SIZE = 2000
VALIDATION_SEED = 0


@dataclasses.dataclass(frozen=True)
class Arrays:
  """A dataset decoded into memory (uint8 images, int64 labels)."""
  name: str
  train_x: np.ndarray
  train_y: np.ndarray
  test_x: np.ndarray
  test_y: np.ndarray
  num_classes: int


@dataclasses.dataclass(frozen=True)
class Bundle:
  """Pipelines ready for fit(): an infinite augmented train set, finite eval sets."""
  train: tf.data.Dataset
  test: tf.data.Dataset
  validation: Optional[tf.data.Dataset]
  steps_per_epoch: int
  num_classes: int
  mean: Optional[np.ndarray]  # None: each image standardised by its own statistics
  std: Optional[np.ndarray]


# Where tfds fetches CIFAR: its mirror of prepared datasets on GCS, and the source
# (tensorflow_datasets/image_classification/cifar.py).
DOWNLOAD_HOSTS = (("storage.googleapis.com", 443), ("www.cs.toronto.edu", 443))
_PROXY_VARIABLES = ("https_proxy", "HTTPS_PROXY", "http_proxy", "HTTP_PROXY", "all_proxy",
                    "ALL_PROXY")


def can_download(hosts=DOWNLOAD_HOSTS, timeout: float = 5.0) -> bool:
  """Whether a download could start: a TCP connection to one of `hosts` opens within `timeout`
  seconds each (a proxy in the environment: assumed yes, tfds goes through it).

  Offline, tfds' own retries take minutes before they give up; this takes seconds.
  """
  if any(os.environ.get(v) for v in _PROXY_VARIABLES):
    return True
  for host, port in hosts:
    try:
      with socket.create_connection((host, port), timeout=timeout):
        return True
    except OSError:
      continue
  return False


def default_data_dir() -> str:
  return os.environ.get("TFDS_DATA_DIR", os.path.join(os.path.expanduser("~"), "tensorflow_datasets"))


def load(name: str, data_dir: Optional[str] = None, download: bool = True,
         synthetic_size: int = 5000) -> Arrays:
  """Decodes a whole dataset into memory.

  Args:
    name: "cifar10", "cifar100", "digits" or "synthetic".
    data_dir: tfds data folder (default: $TFDS_DATA_DIR or ~/tensorflow_datasets).
    download: let tfds download CIFAR when it is not in data_dir.
    synthetic_size: training images of the synthetic set (test: a fifth).

  Raises:
    DataError: unknown dataset, or CIFAR neither in data_dir nor downloadable.
  """
  if name == "synthetic":
    return synthetic(synthetic_size, max(synthetic_size // 5, 100))
  if name == "digits":
    return digits()
  if name not in DATASETS:
    raise DataError(f"unknown dataset {name!r}: choose one of {', '.join(DATASETS)}")
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  data_dir = data_dir or default_data_dir()
  if data_dir and os.path.exists(data_dir) and not os.path.isdir(data_dir):
    raise DataError(f"--data_dir {data_dir} is a file, not a folder")
  if names.DATASETS[name].streamed:  # ImageNet: read from disk every epoch
    from tfrewind import imagenet  # pylint: disable=g-import-not-at-top
    return imagenet.source(data_dir, _prepared)
  # tfds warns about each empty version folder it looks into; the error below says it all.
  verbosity = absl_logging.get_verbosity()
  absl_logging.set_verbosity(absl_logging.ERROR)
  try:
    builder = tfds.builder(name, data_dir=data_dir)
    prepared = _prepared(builder)
  finally:
    absl_logging.set_verbosity(verbosity)
  if not prepared:
    hint = (f"on a machine with internet run `tfds build {name} --data_dir={data_dir}` "
            f"(or python -m tensorflow_datasets.scripts.download_and_prepare "
            f"--datasets={name} --data_dir={data_dir}) and copy that folder here, "
            f"then pass --data_dir")
    if not download:
      raise DataError(f"{name} is not prepared in {data_dir}: {hint}")
    if not can_download():
      hosts = " or ".join(h for h, _ in DOWNLOAD_HOSTS)
      raise DataError(f"{name} is not in {data_dir} and this machine cannot reach {hosts} to "
                      f"download it: {hint}")
    try:
      builder.download_and_prepare()
    except Exception as e:  # pylint: disable=broad-except
      raise DataError(f"{name} is not in {data_dir} and could not be downloaded "
                      f"({type(e).__name__}): {hint}") from None
  splits = {}
  for split in ("train", "test"):
    ds = builder.as_dataset(split=split, shuffle_files=False).batch(10000)
    batches = list(tfds.as_numpy(ds))
    splits[split] = (np.concatenate([b["image"] for b in batches]).astype(np.uint8),
                     np.concatenate([b["label"] for b in batches]).astype(np.int64))
  return Arrays(name, *splits["train"], *splits["test"],
                num_classes=builder.info.features["label"].num_classes)


def _prepared(builder) -> bool:
  try:
    return bool(builder.is_prepared())
  except Exception:  # pylint: disable=broad-except
    return False


def synthetic(n_train: int = 5000, n_test: int = 1000, num_classes: int = 10,
              seed: int = 0) -> Arrays:
  """A learnable, deterministic CIFAR-shaped dataset, generated in memory.

  Each class is a smooth random colour pattern (an upsampled 4x4 field);
  an image is its class pattern, randomly shifted and mirrored, with noise, so
  a small ResNet learns it well above chance within a minute on a CPU while
  augmentation still matters.
  """
  rng = np.random.default_rng(seed)
  protos = rng.uniform(-1, 1, (num_classes, 4, 4, 3))
  protos = np.repeat(np.repeat(protos, 8, axis=1), 8, axis=2)  # 32x32 blocks

  def make(n):
    y = rng.integers(0, num_classes, n)
    x = protos[y]
    shifts = rng.integers(-3, 4, (n, 2))
    x = np.stack([np.roll(img, tuple(s), axis=(0, 1)) for img, s in zip(x, shifts)])
    flip = rng.random(n) < 0.5
    x[flip] = x[flip, :, ::-1]
    x = x * 0.5 + rng.normal(0, 0.9, x.shape)
    return np.clip(128 + 60 * x, 0, 255).astype(np.uint8), y.astype(np.int64)

  return Arrays("synthetic", *make(n_train), *make(n_test), num_classes=num_classes)


def digits() -> Arrays:
  """scikit-learn's 1,797 8x8 handwritten digits, split 1,437/360 (stratified, fixed seed).

  Pixels are 0..16; stored as uint8 0..240 (x15, exact) so that they go through the
  same standardisation as CIFAR.
  """
  from sklearn import datasets, model_selection  # pylint: disable=g-import-not-at-top
  bunch = datasets.load_digits()
  x = (bunch.images * 15).astype(np.uint8)[..., None]
  y = bunch.target.astype(np.int64)
  test_size = len(y) - names.DATASETS["digits"].train_size
  train_x, test_x, train_y, test_y = model_selection.train_test_split(
      x, y, test_size=test_size, stratify=y, random_state=0)
  return Arrays("digits", train_x, train_y, test_x, test_y, num_classes=10)


def channel_stats(images: np.ndarray):
  """Per-channel mean and std of uint8 images, in float64 then float32."""
  x = images.reshape(-1, images.shape[-1]).astype(np.float64)
  return x.mean(axis=0).astype(np.float32), x.std(axis=0).astype(np.float32)


def standardize(image, mean, std):
  """By per-channel constants, or (mean None) each image by its own mean and std, as the
  original study's TF official ResNet (tf.image.per_image_standardization)."""
  if mean is None:
    return tf.image.per_image_standardization(tf.cast(image, tf.float32))
  return (tf.cast(image, tf.float32) - mean) / std


def _constants(mean, std):
  return (None, None) if mean is None else (tf.constant(mean), tf.constant(std))


PAD_MODES = ("REFLECT", "CONSTANT")


def augment_with(image, flip, dy, dx, pad: int = PAD, pad_mode: str = "REFLECT"):
  """Pads by `pad` (reflection, or zeros: "CONSTANT"), crops at (dy, dx), mirrors if `flip`:
  pure and exact."""
  h, w = image.shape[0], image.shape[1]
  padded = tf.pad(image, [[pad, pad], [pad, pad], [0, 0]], mode=pad_mode)
  cropped = tf.slice(padded, tf.stack([dy, dx, 0]), [h, w, image.shape[2]])
  return tf.cond(flip, lambda: tf.reverse(cropped, axis=[1]), lambda: cropped)


def augment(image, seed, pad: int = PAD, flip: bool = True, pad_mode: str = "REFLECT"):
  """Random flip (if `flip`) and crop drawn from a stateless seed (a [2] int tensor)."""
  mirror = tf.random.stateless_uniform([], seed) < 0.5
  if not flip:
    mirror = tf.constant(False)
  offsets = tf.random.stateless_uniform([2], seed + [0, 1], 0, 2 * pad + 1, dtype=tf.int32)
  return augment_with(image, mirror, offsets[0], offsets[1], pad, pad_mode)


def train_pipeline(x, y, batch_size: int, seed: int, mean, std,
                   start_step: int = 0, pad: int = PAD, flip: bool = True,
                   pad_mode: str = "REFLECT") -> tf.data.Dataset:
  """Infinite, shuffled, augmented, standardised batches; deterministic under `seed`.

  Epoch e visits the images in a stateless permutation of (seed, e), and the
  image at position i of the whole stream is augmented with seed (seed, i), so
  the stream is a pure function of the seed: `start_step` skips to any batch
  cheaply (a resumed run sees exactly the batches an uninterrupted one would).
  """
  n = len(x)
  per_epoch = n // batch_size * batch_size  # drop the remainder of every epoch
  first = start_step * batch_size
  images, labels = tf.constant(x), tf.constant(y)
  mean, std = _constants(mean, std)

  def epoch(e):
    order = tf.random.experimental.stateless_shuffle(
        tf.range(n, dtype=tf.int64), seed=tf.stack([tf.constant(seed, tf.int64), e]))[:per_epoch]
    positions = e * per_epoch + tf.range(per_epoch, dtype=tf.int64)
    return tf.data.Dataset.from_tensor_slices((positions, order))

  def prepare(position, index):
    s = tf.stack([tf.constant(seed, tf.int64), position])
    image = augment(tf.gather(images, index), s, pad, flip, pad_mode)
    return standardize(image, mean, std), tf.gather(labels, index)

  ds = tf.data.Dataset.range(first // per_epoch, np.iinfo(np.int64).max).flat_map(epoch)
  ds = ds.skip(first % per_epoch)
  ds = ds.map(prepare, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
  return ds.batch(batch_size, drop_remainder=True).prefetch(tf.data.AUTOTUNE)


def eval_pipeline(x, y, batch_size: int, mean, std) -> tf.data.Dataset:
  """Finite, standardised, in order."""
  mean, std = _constants(mean, std)
  ds = tf.data.Dataset.from_tensor_slices((x, y))
  ds = ds.map(lambda image, label: (standardize(image, mean, std), label),
              num_parallel_calls=tf.data.AUTOTUNE)
  return ds.batch(batch_size).prefetch(tf.data.AUTOTUNE)


def validation_split(n_test: int, size: int = VALIDATION_SIZE):
  """Indices (validation, test) of Renda's fixed random split of the test set."""
  order = np.random.default_rng(VALIDATION_SEED).permutation(n_test)
  size = min(size, n_test // 2)
  return np.sort(order[:size]), np.sort(order[size:])


def make(name: str, batch_size: int = 128, seed: int = 0, data_dir: Optional[str] = None,
         validation: bool = False, download: bool = True, synthetic_size: int = 5000,
         arrays: Optional[Arrays] = None, start_step: int = 0, stats=None,
         per_image: bool = False, pad_mode: str = "REFLECT", image_size: Optional[int] = None,
         epochs: int = 91) -> Bundle:
  """The training and evaluation pipelines of a dataset.

  Args:
    name: "cifar10", "cifar100", "digits" (scikit-learn's, offline) or "synthetic".
    batch_size: per step (global, across replicas).
    seed: shuffling and augmentation seed.
    data_dir, download, synthetic_size: see `load`.
    validation: split a fixed 2,000 test images off for validation (Renda).
    arrays: already loaded Arrays (skips `load`).
    start_step: first training batch to produce (resuming).
    stats: (mean, std) per channel to standardise with (default: the training set's).
    per_image: standardise each image by its own mean and std instead (Bundle.mean and
      .std are then None).
    pad_mode: the random crop's padding, "REFLECT" or "CONSTANT" (zeros).
    image_size, epochs: of a streamed dataset (ImageNet, tfrewind.imagenet): the crops' side
      (default 224), and the epochs of training stream to build.
  """
  if int(batch_size) != batch_size or batch_size < 1:
    raise DataError(f"batch_size must be a positive integer, got {batch_size!r}")
  a = arrays or load(name, data_dir, download, synthetic_size)
  if names.DATASETS[name].streamed:
    from tfrewind import imagenet  # pylint: disable=g-import-not-at-top
    size = image_size or names.DATASETS[name].image_shape[0]
    return Bundle(train=imagenet.train_pipeline(a, batch_size, seed, size, start_step, epochs),
                  test=imagenet.eval_pipeline(a, batch_size, size), validation=None,
                  steps_per_epoch=max(a.train_size // batch_size, 1),
                  num_classes=a.num_classes, mean=None, std=None)
  if pad_mode not in PAD_MODES:
    raise DataError(f"pad_mode must be one of {PAD_MODES}, got {pad_mode!r}")
  if per_image:
    mean = std = None
  else:
    mean, std = stats if stats is not None else channel_stats(a.train_x)
  test_x, test_y, val = a.test_x, a.test_y, None
  if validation:
    vi, ti = validation_split(len(a.test_x))
    val = eval_pipeline(a.test_x[vi], a.test_y[vi], batch_size, mean, std)
    test_x, test_y = a.test_x[ti], a.test_y[ti]
  if len(a.train_x) < batch_size:
    raise DataError(f"batch_size {batch_size} is larger than the training set ({len(a.train_x)})")
  spec = names.DATASETS[name]
  return Bundle(train=train_pipeline(a.train_x, a.train_y, batch_size, seed, mean, std,
                                     start_step, spec.pad, spec.flip, pad_mode),
                test=eval_pipeline(test_x, test_y, batch_size, mean, std),
                validation=val, steps_per_epoch=max(len(a.train_x) // batch_size, 1),
                num_classes=a.num_classes, mean=mean, std=std)
