"""ImageNet (ILSVRC 2012) through tensorflow-datasets, preprocessed as the original study's TPU
code (tpu-src/models/official/resnet: imagenet_input.py and the resnet_preprocessing.py of
tensorflow/tpu it imports; the normalisation is resnet_main.py's).

Training: a random crop of 8%..100% of the image's area and aspect ratio 3/4..4/3
(sample_distorted_bounding_box, 10 attempts, else the evaluation crop), resized bicubically to
--image_size (224), a random horizontal flip. Evaluation: the central crop of side
224 / (224 + 32) of the shorter side, resized alike. Both are then standardised by ImageNet's
per-channel mean and std (x 255). JPEGs are decoded only inside their crop window.

The images stay on disk (150 GB): each epoch streams them, its file order and shuffle drawn
from (seed, epoch), each image's crop and flip from (seed, its position in the stream), so the
stream is a pure function of the seed and a resumed run sees the batches an uninterrupted one
would (resuming inside an epoch reads, without decoding, the images before it).
"""

import dataclasses
import functools
import os
import time
from typing import Any, Optional

import numpy as np
import tensorflow as tf

from tfrewind.errors import DataError

NAME = "imagenet2012"
# tfds' manual download (tensorflow_datasets/image_classification/imagenet.py).
MANUAL_FILES = ("ILSVRC2012_img_train.tar", "ILSVRC2012_img_val.tar")
IMAGE_SIZE = 224
CROP_PADDING = 32
MEAN_RGB = (0.485 * 255, 0.456 * 255, 0.406 * 255)
STDDEV_RGB = (0.229 * 255, 0.224 * 255, 0.225 * 255)
SHUFFLE_BUFFER = 10_000


@dataclasses.dataclass(frozen=True)
class Source:
  """A prepared tfds ImageNet (what tfrewind.data.load returns for it): no images in memory."""
  name: str
  builder: Any
  num_classes: int
  train_size: int


def manual_dir(data_dir: str) -> str:
  return os.path.join(data_dir, "downloads", "manual")


def source(data_dir: str, prepared) -> Source:
  """The tfds builder of ImageNet in `data_dir`, prepared from the manual download if needed.

  prepared(builder) says whether tfds has it (tfrewind.data's check, shared with CIFAR). Raises
  DataError in seconds, naming the folder and the files, when neither the prepared dataset nor
  ImageNet's tar files are there (tfds cannot download ImageNet itself)."""
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  builder = tfds.builder(NAME, data_dir=data_dir)
  if not prepared(builder):
    manual = manual_dir(data_dir)
    missing = [f for f in MANUAL_FILES if not os.path.isfile(os.path.join(manual, f))]
    if missing:
      raise DataError(f"{NAME} is not prepared in {data_dir} and needs ImageNet's manual "
                      f"download: put {' and '.join(missing)} (from image-net.org) in {manual}, "
                      f"then rerun (tfds prepares it once, a few hours), or pass --data_dir of "
                      f"a folder where it is prepared")
    builder.download_and_prepare(
        download_config=tfds.download.DownloadConfig(manual_dir=manual))
  src = Source(NAME, builder, builder.info.features["label"].num_classes, 0)
  try:
    size = builder.info.splits["train"].num_examples
  except KeyError:  # tfds' mock data (tests) records no split sizes: count them
    size = int(_split(src, "train").reduce(np.int64(0), lambda n, _: n + 1).numpy())
  return dataclasses.replace(src, train_size=size)


def _normalize(image):
  return (image - tf.constant(MEAN_RGB, tf.float32)) / tf.constant(STDDEV_RGB, tf.float32)


def _resize(image, size):
  # tf.image.resize_bicubic of TF 1 (no half-pixel centres), as the original: TF 2's resize
  # samples other points.
  return tf.raw_ops.ResizeBicubic(images=image[None], size=[size, size], align_corners=False,
                                  half_pixel_centers=False)[0]


def center_crop(image_bytes, size: int = IMAGE_SIZE):
  """The evaluation crop, float32 in 0..255 (not yet standardised)."""
  shape = tf.image.extract_jpeg_shape(image_bytes)
  side = tf.cast(size / (size + CROP_PADDING) * tf.cast(tf.minimum(shape[0], shape[1]),
                                                        tf.float32), tf.int32)
  window = tf.stack([(shape[0] - side + 1) // 2, (shape[1] - side + 1) // 2, side, side])
  return _resize(tf.image.decode_and_crop_jpeg(image_bytes, window, channels=3), size)


def random_crop(image_bytes, seed, size: int = IMAGE_SIZE):
  """The training crop from a stateless seed ([2] int), float32 in 0..255, not flipped."""
  shape = tf.image.extract_jpeg_shape(image_bytes)
  begin, extent, _ = tf.image.stateless_sample_distorted_bounding_box(
      shape, bounding_boxes=tf.constant([[[0.0, 0.0, 1.0, 1.0]]]), seed=seed,
      min_object_covered=0.1, aspect_ratio_range=(3 / 4, 4 / 3), area_range=(0.08, 1.0),
      max_attempts=10, use_image_if_no_bounding_boxes=True)
  window = tf.stack([begin[0], begin[1], extent[0], extent[1]])
  crop = tf.image.decode_and_crop_jpeg(image_bytes, window, channels=3)
  # No crop found in 10 attempts (the whole image came back): the evaluation crop instead.
  whole = tf.reduce_sum(tf.cast(tf.equal(shape, tf.shape(crop)), tf.int32)) >= 3
  return tf.cond(whole, lambda: center_crop(image_bytes, size), lambda: _resize(crop, size))


def preprocess_train(image_bytes, seed, size: int = IMAGE_SIZE):
  image = random_crop(image_bytes, seed, size)
  image = tf.image.stateless_random_flip_left_right(image, seed + tf.constant([0, 1], seed.dtype))
  return tf.reshape(_normalize(image), [size, size, 3])


def preprocess_eval(image_bytes, size: int = IMAGE_SIZE):
  return tf.reshape(_normalize(center_crop(image_bytes, size)), [size, size, 3])


def _split(src: Source, split: str, shuffle_seed: Optional[int] = None):
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  read = tfds.ReadConfig(shuffle_seed=shuffle_seed, shuffle_reshuffle_each_iteration=False,
                         interleave_cycle_length=16 if shuffle_seed is not None else 1)
  ds = src.builder.as_dataset(split=split, shuffle_files=shuffle_seed is not None,
                              decoders={"image": tfds.decode.SkipDecoding()}, read_config=read)
  return ds.map(lambda ex: (ex["image"], ex["label"]))


def train_pipeline(src: Source, batch_size: int, seed: int, size: int = IMAGE_SIZE,
                   start_step: int = 0, epochs: int = 91) -> tf.data.Dataset:
  """Augmented, standardised batches from `start_step` on, `epochs` epochs of them (each
  epoch's pipeline is built ahead: a phase needs at most its cycle's epochs, plus one)."""
  per_epoch = src.train_size // batch_size * batch_size  # each epoch's remainder dropped
  first = start_step * batch_size
  e0 = first // per_epoch

  def epoch(e):
    s = int(np.random.SeedSequence([seed, e]).generate_state(1)[0] & 0x7FFFFFFF)
    ds = _split(src, "train", shuffle_seed=s).shuffle(
        SHUFFLE_BUFFER, seed=s, reshuffle_each_iteration=False).take(per_epoch)
    positions = tf.data.Dataset.range(e * per_epoch, (e + 1) * per_epoch)
    return tf.data.Dataset.zip((positions, ds))

  stream = functools.reduce(lambda a, b: a.concatenate(b),
                            [epoch(e) for e in range(e0, e0 + epochs)])
  stream = stream.skip(first - e0 * per_epoch)  # records read, not decoded

  def prepare(position, example):
    image_bytes, label = example
    s = tf.stack([tf.constant(seed, tf.int64), position])
    return preprocess_train(image_bytes, s, size), label

  stream = stream.map(prepare, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
  return stream.batch(batch_size, drop_remainder=True).prefetch(tf.data.AUTOTUNE)


def eval_pipeline(src: Source, batch_size: int, size: int = IMAGE_SIZE) -> tf.data.Dataset:
  """ILSVRC's 50,000 validation images (the study's test set), centre-cropped, in order."""
  ds = _split(src, "validation").map(lambda b, y: (preprocess_eval(b, size), y),
                                     num_parallel_calls=tf.data.AUTOTUNE)
  return ds.batch(batch_size).prefetch(tf.data.AUTOTUNE)


def throughput(dataset: tf.data.Dataset, batches: int = 20, warmup: int = 2) -> float:
  """Images per second that `dataset` delivers (after `warmup` batches)."""
  it = iter(dataset)
  for _ in range(warmup):
    next(it)
  t0, images = time.perf_counter(), 0
  for _ in range(batches):
    images += int(next(it)[1].shape[0])
  return images / (time.perf_counter() - t0)


def jpeg_rate(batches: int = 8, batch: int = 32, shape=(375, 500), size: int = IMAGE_SIZE) -> float:
  """Images/s of the training preprocessing on ImageNet-sized JPEGs (500x375, quality 90, held
  in memory): what this machine's CPUs can feed a GPU, disk reads apart."""
  rng = np.random.default_rng(0)
  encoded = []
  for _ in range(32):  # smooth random photographs: a coarse field, upsampled, with noise
    coarse = rng.uniform(0, 255, (shape[0] // 25, shape[1] // 25, 3)).astype(np.float32)
    image = tf.image.resize(coarse, shape) + rng.normal(0, 8, shape + (3,)).astype(np.float32)
    encoded.append(tf.io.encode_jpeg(tf.cast(tf.clip_by_value(image, 0, 255), tf.uint8),
                                     quality=90))
  ds = tf.data.Dataset.from_tensor_slices(tf.stack(encoded)).repeat().enumerate()
  ds = ds.map(lambda i, b: (preprocess_train(b, tf.stack([tf.constant(0, tf.int64), i]), size),
                            tf.constant(0, tf.int64)), num_parallel_calls=tf.data.AUTOTUNE)
  return throughput(ds.batch(batch).prefetch(tf.data.AUTOTUNE), batches)
