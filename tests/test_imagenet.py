"""ImageNet: the original's TPU protocol (LR, networks, preprocessing) and the tfds pipeline on
tfds' mock data, through every method."""

import contextlib
import json
import os

import numpy as np
import pytest
import tensorflow as tf

import tf_keras as keras
from tfrewind import data, hparams, imagenet, names, training
from tfrewind.models.registry import build_model, counts

from clitools import REPO, cli, results

RESNET50 = os.path.join(REPO, "flags", "renda_resnet50_one_shot.flags")
RESNET34_A = os.path.join(REPO, "flags", "renda_resnet34_structured_a.flags")


@contextlib.contextmanager
def mock_imagenet(data_dir, num_examples=16):
  """tfds' mock ImageNet: the real path (builder, the manual download's check, as_dataset),
  generated JPEGs. The manual download is two empty stand-ins of its tar files (tfds' mock
  replaces the preparation that would read them)."""
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  manual = imagenet.manual_dir(str(data_dir))
  os.makedirs(manual, exist_ok=True)
  for name in imagenet.MANUAL_FILES:
    open(os.path.join(manual, name), "w").close()
  with tfds.testing.mock_data(num_examples=num_examples):
    yield


def _original_lr(step):
  """resnet_main.learning_rate_schedule of the original's TPU code, in TF float32, for the
  released configuration (base LR 0.1, batch 1024, 1,281,167 images, 90 epochs)."""
  scaled_lr = 0.1 * (1024 / 256.0)
  schedule = [(1.0, 5.0), (0.1, 30.0), (0.01, 60.0), (0.001, 80.0)]
  current_epoch = tf.cast(step, tf.float32) / (1281167 / 1024)
  decay_rate = scaled_lr * schedule[0][0] * current_epoch / schedule[0][1]
  for mult, start_epoch in schedule:
    decay_rate = tf.where(current_epoch < start_epoch, decay_rate, scaled_lr * mult)
  return decay_rate


def test_the_lr_of_every_checked_step_is_the_tpu_codes_bit_for_bit():
  from absl import flags  # pylint: disable=g-import-not-at-top
  from tfrewind import cli as cli_lib, commands  # pylint: disable=g-import-not-at-top
  flags.FLAGS.unparse_flags()
  flags.FLAGS(["tfrewind"] + cli_lib.expand_flagfiles([f"--flagfile={RESNET50}"]))
  try:
    hp = commands.make_grid(check_networks=False)[0]
  finally:
    flags.FLAGS.unparse_flags()
  schedule = tf.function(training.lr_schedule(hp))
  original = tf.function(_original_lr)
  # the warm-up's every 17th step, each boundary and its neighbours, the end
  steps = sorted(set(range(0, 6400, 17)) | {b + d for b in (6256, 37535, 75069, 100092)
                                            for d in (-2, -1, 0, 1)} | {112589})
  ours = np.array([schedule(tf.constant(s, tf.int64)).numpy() for s in steps], np.float32)
  theirs = np.array([original(tf.constant(s, tf.int64)).numpy() for s in steps], np.float32)
  assert ours.tobytes() == theirs.tobytes()
  lr = dict(zip(steps, ours.tolist()))
  assert lr[0] == 0.0 and lr[6255] < 0.4 and lr[6256] == np.float32(0.4)
  assert (lr[37534], lr[37535]) == (np.float32(0.4), np.float32(0.04))
  assert (lr[75068], lr[75069]) == (np.float32(0.04), np.float32(0.004))
  assert (lr[100091], lr[100092]) == (np.float32(0.004), np.float32(0.0004))


@pytest.mark.slow
def test_imagenet_resnets_are_the_originals_with_pinned_counts():
  hp = hparams.HParams(model="resnet34", dataset="imagenet2012", protocol="renda_tpu_code")
  options = hp.model_overrides()
  assert options == {"shortcut": "projection_all", "fixed_padding": True,
                     "classifier_stddev": 0.01, "zero_init_residual": True,
                     "initializer": "variance_scaling", "l2": 5e-5, "decay_bias": True}
  # He et al.'s ResNet-50 v1 (v1.5: the stride on the 3x3 conv, the same count), 1,000 classes
  assert counts(build_model("resnet50", num_classes=1000))["trainable"] == 25_557_032
  keras.backend.clear_session()
  assert counts(build_model("resnet34", num_classes=1000))["trainable"] == 21_797_672
  keras.backend.clear_session()
  official = build_model("resnet34", num_classes=1000, **options)
  # the official model's stage-1 projection: a 64x64 1x1 conv and its BatchNorm more
  assert counts(official)["trainable"] == 21_797_672 + 64 * 64 + 2 * 64 == 21_801_896
  last = [l for l in official.layers if l.name.endswith("_bn2")]
  assert len(last) == 16 and all(not l.gamma.numpy().any() for l in last)  # init_zero
  assert official.get_layer("stage1_block1_bn1").gamma.numpy().all()
  # L2 on every kernel and the classifier's bias, not on BatchNorm: 1e-4 * tf.nn.l2_loss
  assert len(official.losses) == counts(official)["prunable_layers"] + 1
  expected = sum(np.float64(1e-4) * np.sum(np.square(w.numpy().astype(np.float64))) / 2
                 for w in official.trainable_weights if "bn" not in w.name)
  assert float(tf.add_n(official.losses)) == pytest.approx(expected, rel=1e-5)
  assert official.get_layer("stem_conv").padding == "valid"  # 3 zeros each side, then VALID
  keras.backend.clear_session()


def test_missing_manual_download_is_one_line_in_seconds_and_no_run_folder(tmp_path, capsys):
  root = tmp_path / "runs"
  status, _, err = cli(["run", f"--flagfile={RESNET50}", f"--data_dir={tmp_path / 'data'}",
                        "--density=0.5", "--method=lr_rewind", "--seed=1",
                        f"--root={root}"], capsys)
  manual = os.path.join(str(tmp_path / "data"), "downloads", "manual")
  assert status == 2 and len(err.strip().splitlines()) == 1, err
  assert "ILSVRC2012_img_train.tar and ILSVRC2012_img_val.tar" in err and manual in err
  assert not os.listdir(root)
  status, _, err = cli(["run", "--dataset=imagenet2012", "--validation", f"--root={root}"],
                       capsys)
  assert status == 2 and "leave it out" in err
  status, _, err = cli(["run", "--dataset=cifar10", "--image_size=64", f"--root={root}"], capsys)
  assert status == 2 and "--image_size sets ImageNet's crops" in err


def test_pipeline_crops_as_the_original_and_is_a_pure_function_of_the_seed(tmp_path):
  with mock_imagenet(tmp_path, num_examples=40):
    make = lambda **kw: data.make("imagenet2012", batch_size=8, seed=1,  # noqa: E731
                                  data_dir=str(tmp_path), image_size=32, epochs=3, **kw)
    bundle = make()
    assert bundle.steps_per_epoch == 5 and bundle.num_classes == 1000
    first = [b[0].numpy() for b in bundle.train.take(12)]
    assert first[0].shape == (8, 32, 32, 3) and first[0].dtype == np.float32
    again = [b[0].numpy() for b in make().train.take(12)]
    resumed = [b[0].numpy() for b in make(start_step=7).train.take(3)]
    assert all(a.tobytes() == b.tobytes() for a, b in zip(first, again))
    assert all(a.tobytes() == b.tobytes() for a, b in zip(first[7:10], resumed))
    assert first[0].tobytes() != first[5].tobytes()  # the next epoch: another order and crops
    # evaluation: the central 224/256 of the shorter side, resized bicubically (TF 1), then
    # ImageNet's mean and std, computed here from the decoded image
    src = data.load("imagenet2012", data_dir=str(tmp_path))
    image_bytes, _ = next(iter(imagenet._split(src, "validation")))  # pylint: disable=protected-access
    full = tf.io.decode_jpeg(image_bytes, channels=3)
    h, w = int(full.shape[0]), int(full.shape[1])
    side = int(np.float32(32 / 64) * np.float32(min(h, w)))
    top, left = (h - side + 1) // 2, (w - side + 1) // 2
    crop = tf.cast(full[top:top + side, left:left + side], tf.float32)
    expected = tf.raw_ops.ResizeBicubic(images=crop[None], size=[32, 32])[0]
    expected = (expected - np.float32(imagenet.MEAN_RGB)) / np.float32(imagenet.STDDEV_RGB)
    image = next(iter(bundle.test))[0][0]
    np.testing.assert_allclose(image.numpy(), expected.numpy(), rtol=0, atol=1e-5)
    ips = imagenet.throughput(bundle.train, batches=4)
    assert ips > 0


@pytest.mark.slow
def test_resnet50_and_resnet34_retrain_through_the_imagenet_pipeline(tmp_path, capsys):
  """A few steps of each (width 8 and 32x32 crops, to stay small): ResNet-50 one-shot by
  fine-tuning, weight and LR rewinding; Renda's ResNet-34-A at level 2 by weight rewinding
  with the fine-tuning LR, landing on the released density of that level (the report's axis;
  CIFAR's filters: tests/test_sparsity.py). reinit re-draws any network alike (its CLI run:
  the controls test in tests/test_cli.py)."""
  root, report = str(tmp_path / "runs"), str(tmp_path / "report")
  small = [f"--data_dir={tmp_path / 'data'}", "--image_size=32", "--width=8", "--batch_size=4",
           "--train_steps=2it", "--epoch_steps=2it", "--lr_boundaries=1it", "--retrains=1it",
           "--rewind_step=1it", "--seeds=1", f"--root={root}", "--verbose=0"]
  with mock_imagenet(tmp_path / "data"):
    status, out, err = cli(["run", f"--flagfile={RESNET50}", *small, "--densities=0.5",
                            "--methods=finetune,weight_rewind,lr_rewind"], capsys)
    assert status == 0, err
    status, out, err = cli(["run", f"--flagfile={RESNET34_A}", *small, "--levels=2",
                            "--methods=weight_rewind_low_lr"], capsys)
    assert status == 0, err
    assert "weight_rewind_low_lr structured_a level 2 seed 1" in out
  found = results(root)
  assert len(found) == 2 + 3 + 1
  for name, result in found.items():
    meta = json.load(open(os.path.join(root, name, "hparams.json")))
    assert meta["hparams"]["dataset"] == "imagenet2012" and result["steps"] in (2, 3)
    if meta["hparams"]["model"] == "resnet34" and meta["kind"] == "prune":
      assert meta["density_target"] is None and "_os_structured_a_l2_s1_" in name
      masks = result["layer_densities"]
      # conv 4 of the original (stage 1, block 2's first) loses filters, conv 2 (block 1's)
      # and stage 4 never
      assert masks["stage1_block2_conv1/kernel:0"] < 1.0
      assert masks["stage1_block1_conv1/kernel:0"] == masks["stage4_block1_conv1/kernel:0"] == 1.0
  assert cli(["report", f"--root={root}", f"--out={report}"], capsys)[0] == 0
  table = open(os.path.join(report, "results.csv")).read()
  assert ",structured_a,one_shot,renda_tpu_code,weight_rewind_low_lr,0.872," in table
  assert names.image_shape("imagenet2012", 32) == (32, 32, 3)
