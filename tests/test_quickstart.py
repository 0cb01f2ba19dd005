"""The first ten minutes: the digits dataset, the quickstart flag file, a quiet console."""

import collections
import os
import re
import subprocess
import sys

import numpy as np
import pytest

from clitools import PROCESSES, QUICK, SMALL


def test_digits_load_offline_with_a_fixed_stratified_split():
  from tfrewind import data  # pylint: disable=g-import-not-at-top
  a, b = data.load("digits"), data.load("digits")
  assert a.train_x.shape == (1437, 8, 8, 1) and a.test_x.shape == (360, 8, 8, 1)
  assert a.train_x.dtype == np.uint8 and a.train_x.max() == 240 and a.num_classes == 10
  assert a.train_x.tobytes() == b.train_x.tobytes() and a.test_y.tobytes() == b.test_y.tobytes()
  whole = collections.Counter(np.concatenate([a.train_y, a.test_y]).tolist())
  test = collections.Counter(a.test_y.tolist())
  for c in range(10):  # stratified: each class's share of the test set is its share overall
    assert abs(test[c] - whole[c] * 360 / 1797) <= 1, c


def test_digits_pipeline_crops_by_one_pixel_and_never_flips():
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  from tfrewind import data  # pylint: disable=g-import-not-at-top
  img = np.arange(64, dtype=np.uint8).reshape(8, 8, 1)
  padded = np.pad(img, ((1, 1), (1, 1), (0, 0)), mode="reflect")
  crops = {padded[dy:dy + 8, dx:dx + 8].tobytes() for dy in range(3) for dx in range(3)}
  seen = set()
  for i in range(200):
    out = data.augment(tf.constant(img), tf.constant([3, i], tf.int64), pad=1, flip=False)
    assert out.numpy().tobytes() in crops  # a crop, never mirrored
    seen.add(out.numpy().tobytes())
  assert len(seen) == 9
  bundle = data.make("digits", batch_size=32, seed=1)
  x, y = next(iter(bundle.train))
  assert x.shape == (32, 8, 8, 1) and bundle.steps_per_epoch == 1437 // 32


def test_quickstart_flag_file_validates(capsys):
  from absl import flags  # pylint: disable=g-import-not-at-top
  from tfrewind import cli as cli_lib, commands  # pylint: disable=g-import-not-at-top
  flags.FLAGS.unparse_flags()
  flags.FLAGS(["tfrewind"] + cli_lib.expand_flagfiles([f"--flagfile={QUICK}"]))
  runs = commands.make_grid()
  flags.FLAGS.unparse_flags()
  assert len(runs) == 3 * 3 * 2 and {hp.dataset for hp in runs} == {"digits"}
  assert sorted({hp.density for hp in runs}) == [0.03, 0.1, 0.3]


@pytest.mark.slow
@PROCESSES
def test_a_run_prints_progress_lines_and_no_tensorflow_chatter(tmp_path):
  args = ["run", f"--flagfile={QUICK}", f"--root={tmp_path / 'runs'}", *SMALL, "--dataset=digits",
          "--densities=0.5,0.2", "--methods=finetune", "--verbose=1"]
  env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
  exe = os.path.join(os.path.dirname(sys.executable), "tfrewind")
  proc = subprocess.run([exe] + args, cwd=tmp_path, env=env, capture_output=True, text=True,
                        timeout=400)
  out = proc.stdout + proc.stderr
  assert proc.returncode == 0, out
  for noise in ("functional_saver", "absl::InitializeLog", "cuInit", "oneDNN"):
    assert noise not in out, noise
  starts = re.findall(r"^\[(\d)/2\] finetune density 0\.\d+ seed \d: started( on CPU)?$",
                      proc.stdout, re.M)
  ends = re.findall(r"^\[(\d)/2\] finetune density (0\.\d+) seed 1: test 0\.\d{4} \([+-]\d+\.\d "
                    r"pt\) in \d+s; done (\d), left (\d)", proc.stdout, re.M)
  # The first line names the devices it trains on.
  assert starts == [("1", " on CPU"), ("2", "")] and [(e[0], e[2], e[3]) for e in ends] == [("1", "1", "1"),
                                                                      ("2", "2", "0")]
  assert "about" in proc.stdout.split("done 1, left 1")[1].splitlines()[0]
  assert "Epoch 1/" not in out  # no Keras bars: stdout is not a terminal
  logs = [os.path.join(root, "log.txt") for root, _, files in os.walk(tmp_path / "runs")
          if "log.txt" in files]
  assert len(logs) == 3  # the dense run and both branches log to their folders, INFO included
  for path in logs:
    with open(path, encoding="utf-8") as f:
      assert f"run {os.path.dirname(path)}" in f.read()


def test_progress_lines_count_runs_and_estimate_time_left_per_network(tmp_path):
  import io  # pylint: disable=g-import-not-at-top
  from tfrewind import hparams, progress, store  # pylint: disable=g-import-not-at-top
  dense = store.RunPaths(str(tmp_path / "dense"))
  store.write_json(dense.result, {"test_accuracy": 0.9})
  run = store.RunPaths(str(tmp_path / "run"))
  store.write_json(run.result, {"test_accuracy": 0.892})
  runs = [hparams.HParams(model="resnet20", method="finetune", density=0.1),
          hparams.HParams(model="resnet20", method="lr_rewind", schedule="iterative", rounds=2),
          hparams.HParams(model="wrn16_8", method="finetune", density=0.1)]
  now = [0.0]
  out = io.StringIO()
  p = progress.Progress(runs, out=out, clock=lambda: now[0])
  p.start(runs[0], 1)
  now[0] = 1260.0  # 21 minutes
  p.end(runs[0], 1, run, dense, trained=True)
  p.start(runs[1], 1)
  p.end(runs[1], 1, run, dense, trained=False)  # finished before: no time, not in the mean
  lines = out.getvalue().splitlines()
  assert lines[0] == "[1/4] finetune density 0.1 seed 1: started"
  # 3 runs to go, 21m each: resnet20 from its own mean, wrn16_8 from the overall mean
  assert lines[1] == ("[1/4] finetune density 0.1 seed 1: test 0.8920 (-0.8 pt) in 21m; done 1, "
                      "left 3, about 63m left")
  assert lines[3] == ("[2/4] lr_rewind density 0.8 seed 1: test 0.8920 (-0.8 pt) finished "
                      "before; done 2, left 2, about 42m left")
  assert p.rows[0] == (1, "finetune", 0.1, 0.892, 0.9)
  assert [progress.duration(s) for s in (42, 1260, 12600, 64800)] == ["42s", "21m", "3.5h", "18h"]
