"""Fault tolerance: kills at random points, bitwise resume, NaN, corrupt files, bad roots."""

import glob
import json
import os

import numpy as np
import pytest
import tensorflow as tf

from clitools import (QUICK, SMALL, SWEEPS, check_every_run_finished_exactly_once, cli,
                      kill_sweep, ledger, results)


@pytest.mark.slow
@SWEEPS
def test_kill_minus_9_at_random_points_then_every_run_finishes_once(tmp_path):
  root = str(tmp_path / "runs")
  args = ["run", f"--flagfile={QUICK}", f"--root={root}", *SMALL, "--train_steps=80it",
          "--lr_boundaries=40it,60it"]
  # One random kill (each more adds ~15 s of suite time); kills at known steps and their
  # bitwise resume: tests/test_preemption.py; a line of the local executor killed mid-training:
  # tests/test_launch.py.
  kill_sweep(tmp_path, kills=1, seed=0, args=args)
  check_every_run_finished_exactly_once(root, expected_runs=4)


# Resuming bitwise after SIGTERM (mid-epoch) and kill -9 (from the epoch checkpoint):
# tests/test_preemption.py.


@pytest.mark.slow
def test_nan_loss_marks_the_run_failed_and_exits_nonzero(tmp_path, capsys):
  root = str(tmp_path / "runs")
  status, _, err = cli(["run", f"--flagfile={QUICK}", f"--root={root}", *SMALL,
                        "--lr=1e30", "--methods=lr_rewind"], capsys)
  assert status == 3 and "NaN or Inf" in err
  failed = glob.glob(os.path.join(root, "*", "failed.json"))
  assert len(failed) == 1
  record = json.load(open(failed[0]))
  assert record["reason"] == "loss became NaN or Inf" and record["step"] >= 1
  assert not results(root)


@pytest.mark.slow
def test_corrupt_result_and_checkpoint_are_detected_and_redone(tmp_path, capsys, caplog):
  root = str(tmp_path / "runs")
  args = ["run", f"--flagfile={QUICK}", f"--root={root}", *SMALL, "--methods=weight_rewind"]
  assert cli(args, capsys)[0] == 0
  before = ledger(root)
  prune_dir = glob.glob(os.path.join(root, "prune_*"))[0]
  with open(os.path.join(prune_dir, "result.json"), "w") as f:
    f.write('{"test_accuracy": 0.9')  # truncated
  assert cli(args, capsys)[0] == 0
  assert any("result.json is corrupt" in r.getMessage() for r in caplog.records)
  after = ledger(root)
  name = os.path.basename(prune_dir)
  # Redone from the last good state (its final checkpoint): evaluated again, not retrained.
  assert [l["phase"] for l in after[name]] == [l["phase"] for l in before[name]] + ["finished"]
  assert json.load(open(os.path.join(prune_dir, "result.json")))["steps"] == 70
  # A truncated snapshot of a finished dense run: detected when a new branch needs it, set
  # aside, and replayed from the dense run's initialisation (the dense run itself stays).
  snap = glob.glob(os.path.join(root, "dense_*", "snapshots", "*.npz"))[0]
  with open(snap, "r+b") as f:
    f.truncate(100)
  assert cli(args + ["--density=0.5"], capsys)[0] == 0
  messages = [r.getMessage() for r in caplog.records]
  assert any("is corrupt: setting it aside" in m for m in messages)
  assert any("has no snapshot of step 10: retraining its trunk" in m for m in messages)
  assert os.path.exists(snap + ".corrupt") and np.load(snap).files
  dense_name = os.path.basename(os.path.dirname(os.path.dirname(snap)))
  phases = [l["phase"] for l in ledger(root)[dense_name]]
  assert phases.count("dense") == 1 and phases.count("finished") == 1
  assert phases.count("replay") == 1


def test_corrupt_backup_checkpoint_falls_back_with_a_warning(tmp_path, caplog):
  from tfrewind import checkpoints, hparams, training  # pylint: disable=g-import-not-at-top
  root = str(tmp_path / "runs")
  hp = hparams.HParams(dataset="synthetic", synthetic_size=400, model="resnet8", width=4,
                       batch_size=32, train_steps="30it", epoch_steps="10it",
                       lr_boundaries=("20it",), rewind_step="10it")
  model = training.build(hp)
  ckpt = tf.train.Checkpoint(model=model, optimizer=model.optimizer)
  manager = tf.train.CheckpointManager(ckpt, os.path.join(root, "b"), max_to_keep=2)
  model.optimizer.iterations.assign(10)
  manager.save(checkpoint_number=10)
  model.optimizer.iterations.assign(20)
  newest = manager.save(checkpoint_number=20)
  data = glob.glob(newest + ".data-*")[0]
  with open(data, "r+b") as f:
    f.seek(8)
    f.write(b"\xff" * 64)
  model.optimizer.iterations.assign(0)
  assert checkpoints.restore_backup(ckpt, manager) is None  # set aside: build the objects again
  model = training.build(hp)
  ckpt = tf.train.Checkpoint(model=model, optimizer=model.optimizer)
  manager = tf.train.CheckpointManager(ckpt, os.path.join(root, "b"), max_to_keep=2)
  assert checkpoints.restore_backup(ckpt, manager) is True
  assert int(model.optimizer.iterations.numpy()) == 10
  assert any(newest in r.getMessage() and "is corrupt: setting it aside as ckpt-20.corrupt; "
             "resuming from the checkpoint before it" in r.getMessage() for r in caplog.records)
  assert glob.glob(newest + ".corrupt.index") and not glob.glob(newest + ".index")


@pytest.mark.slow
def test_unusable_roots_give_one_clear_line_and_keep_earlier_results(tmp_path, capsys):
  root = str(tmp_path / "runs")
  assert cli(["run", f"--flagfile={QUICK}", f"--root={root}", *SMALL, "--methods=lr_rewind"],
             capsys)[0] == 0
  kept = results(root)
  (tmp_path / "plain").write_text("x")
  status, _, err = cli(["run", f"--flagfile={QUICK}", f"--root={tmp_path / 'plain' / 'r'}",
                        *SMALL], capsys)
  assert status == 2 and "cannot create --root" in err and "Traceback" not in err
  assert results(root) == kept


def test_run_folders_stay_inside_root_whatever_the_flags(tmp_path, capsys):
  from tfrewind import hparams, store  # pylint: disable=g-import-not-at-top
  root = str(tmp_path / "runs")
  for bad in ("--model=../../escape", "--dataset=../x", "--methods=../../m"):
    status, _, err = cli(["run", f"--flagfile={QUICK}", f"--root={root}", *SMALL, bad], capsys)
    assert status == 2, bad
  assert not os.path.exists(tmp_path / "escape")
  hp = hparams.HParams(model="resnet20", method="lr_rewind", density=0.1)
  for paths in (store.dense_paths(root, hp), store.branch_paths(root, hp, 1)):
    assert os.path.dirname(paths.dir) == root and os.path.realpath(paths.dir).startswith(
        os.path.realpath(root) + os.sep)


def _one_error_line(err):
  lines = [l for l in err.splitlines() if l.startswith("tfrewind: error:")]
  assert len(lines) == 1 and "Traceback" not in err, err
  return lines[0]


def _can_mount_tmpfs() -> bool:
  import subprocess  # pylint: disable=g-import-not-at-top
  import tempfile  # pylint: disable=g-import-not-at-top
  with tempfile.TemporaryDirectory() as folder:
    made = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", folder],
                          capture_output=True, check=False).returncode == 0
    if made:
      subprocess.run(["umount", folder], check=False)
  return made


# Where a real small disk can be mounted (root, as CI), the test below fills one; this one
# fakes the same failures where it cannot.
@pytest.mark.skipif(_can_mount_tmpfs(), reason="the real-disk test covers these writes")
@pytest.mark.slow
def test_enospc_in_tensorflows_checkpoint_write_and_in_ours_give_one_line(
    tmp_path, capsys, monkeypatch):
  """A full disk faked where TensorFlow writes (SaveV2's ResourceExhaustedError) and where we
  write (result.json): exit 1, one line, the rerun finishes, finished runs are kept."""
  import errno  # pylint: disable=g-import-not-at-top
  from tfrewind import store  # pylint: disable=g-import-not-at-top
  root = str(tmp_path / "runs")
  base = ["run", f"--flagfile={QUICK}", f"--root={root}", *SMALL]
  real_save = tf.train.CheckpointManager.save
  calls = []

  def save(self, checkpoint_number=None, **kwargs):
    calls.append(checkpoint_number)
    if len(calls) == 2:  # the second epoch end: what TensorFlow's SaveV2 raises on ENOSPC
      raise tf.errors.ResourceExhaustedError(
          None, None, f"{self.directory}/ckpt-{checkpoint_number}_temp/part-00000-of-00001.data"
          f"-00000-of-00001.tempstate1; No space left on device [Op:SaveV2]")
    return real_save(self, checkpoint_number=checkpoint_number, **kwargs)

  monkeypatch.setattr(tf.train.CheckpointManager, "save", save)
  status, _, err = cli(base + ["--methods=lr_rewind"], capsys)
  line = _one_error_line(err)
  dense = glob.glob(os.path.join(root, "dense_*"))[0]
  assert status == 1 and f"no space left on device writing {dense}/backup:" in line
  assert "free space and rerun the same command; finished runs are kept" in line
  monkeypatch.undo()
  assert cli(base + ["--methods=lr_rewind"], capsys)[0] == 0
  check_every_run_finished_exactly_once(root, expected_runs=2)
  kept = results(root)

  def full(path, content):
    raise OSError(errno.ENOSPC, "No space left on device", path)

  monkeypatch.setattr(store, "atomic_write", full)
  status, _, err = cli(base + ["--methods=finetune"], capsys)
  assert status == 1 and "no space left on device writing" in _one_error_line(err)
  monkeypatch.undo()
  assert results(root) == kept


@pytest.fixture
def small_disk(tmp_path):
  """A real 600 KB filesystem (tmpfs): room for a run's first files, not its checkpoints."""
  import subprocess  # pylint: disable=g-import-not-at-top
  mount = tmp_path / "disk"
  mount.mkdir()
  made = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=600k", "tmpfs", str(mount)],
                        capture_output=True, check=False)
  if made.returncode:
    pytest.skip(f"cannot mount a tmpfs here (needs root): {made.stderr.decode().strip()}")
  resize = lambda size: subprocess.run(["mount", "-o", f"remount,size={size}", str(mount)],  # noqa: E731
                                       check=True)
  yield mount, resize
  subprocess.run(["umount", "-l", str(mount)], check=False)


@pytest.mark.slow
def test_a_disk_that_fills_during_training_gives_one_line_then_the_rerun_finishes(
    small_disk, tmp_path, capsys):
  mount, resize = small_disk
  root = str(mount / "runs")
  args = ["run", f"--flagfile={QUICK}", f"--root={root}", *SMALL, "--methods=lr_rewind"]
  status, _, err = cli(args, capsys)
  line = _one_error_line(err)
  assert status == 1 and "no space left on device writing" in line and root in line, line
  # Whatever TensorFlow left half-written (backup/ckpt-N_temp) was removed with the error.
  assert not glob.glob(os.path.join(root, "*", "backup", "*_temp*"))
  # The same for the other commands that write: stability (its copies are runs), report, export.
  status, _, err = cli(["stability", f"--flagfile={QUICK}", *SMALL, f"--root={root}",
                        "--densities=0.2", "--rewind_steps=10it", "--alphas=11",
                        f"--out={mount / 'stability'}"], capsys)
  assert status == 1 and "no space left on device writing" in _one_error_line(err)
  resize("64m")
  assert cli(args, capsys)[0] == 0
  check_every_run_finished_exactly_once(root, expected_runs=2)
  prune = glob.glob(os.path.join(root, "prune_*"))[0]
  stat = os.statvfs(mount)  # fill it again, to 64 KB short of full
  with open(mount / "filler", "wb") as f:
    f.write(b"\0" * (stat.f_bavail * stat.f_frsize - 64 * 1024))
  status, _, err = cli(["export", f"--run={prune}", f"--out={mount / 'export'}"], capsys)
  assert status == 1 and "no space left on device writing" in _one_error_line(err)
  assert not glob.glob(str(mount / "export*"))  # no half-written export
  for _ in range(3):  # figures and CSVs until the disk is full
    status, _, err = cli(["report", f"--root={root}", f"--out={mount / 'report'}"], capsys)
    if status:
      break
  assert status == 1 and "no space left on device writing" in _one_error_line(err)
  check_every_run_finished_exactly_once(root, expected_runs=2)  # nothing finished was touched


@pytest.mark.slow
def test_a_diverged_run_reruns_from_its_last_finite_checkpoint_and_then_counts_as_finished(
    tmp_path, monkeypatch):
  from tfrewind import errors, experiment, hparams, lr, store, training  # pylint: disable=g-import-not-at-top
  from tfrewind.report import aggregate  # pylint: disable=g-import-not-at-top
  root = str(tmp_path / "runs")
  hp = hparams.HParams(dataset="synthetic", synthetic_size=400, model="resnet8", width=4,
                       batch_size=32, train_steps="40it", epoch_steps="10it",
                       lr_boundaries=("20it", "30it"), rewind_step="10it", density=0.5)
  real_schedule = training.lr_schedule
  # The cause, outside the run's identity: an LR that explodes from step 25 (third epoch).
  monkeypatch.setattr(training, "lr_schedule",
                      lambda h: lr.StepDecay(h.lr, [25], 1e12))
  runner = experiment.Runner(experiment.Env(root=root, verbose=0))
  with pytest.raises(errors.RunFailed, match="NaN or Inf"):
    runner.run(hp)
  paths = store.dense_paths(root, hp)
  record = store.read_json(paths.failed)
  assert record["step"] > 25 and record["resume_from"] in (10, 20)
  # Every epoch checkpoint left is finite: the diverged epoch end was not saved.
  for index in glob.glob(os.path.join(paths.backup, "*.index")):
    reader = tf.train.load_checkpoint(index[:-len(".index")])
    for name in reader.get_variable_to_shape_map():
      value = reader.get_tensor(name)
      if isinstance(value, np.ndarray) and value.dtype.kind == "f":
        assert np.isfinite(value).all(), (index, name)
  assert aggregate.collect(root)[2]["failed"] == [os.path.basename(paths.dir)]

  monkeypatch.setattr(training, "lr_schedule", real_schedule)  # the cause fixed
  runner.run(hp)
  dense = [l for l in ledger(root)[os.path.basename(paths.dir)] if l["phase"] == "dense"]
  assert dense[0]["start"] == 0 and dense[1]["start"] == record["resume_from"]
  assert dense[1]["end"] == 40 and not os.path.exists(paths.failed)
  assert os.path.exists(paths.failed + ".resolved")
  _, dense_runs, counts = aggregate.collect(root)
  assert counts["failed"] == [] and counts["finished"] == 2 and len(dense_runs) == 1
