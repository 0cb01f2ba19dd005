"""A damaged file never stops a sweep (#38): every file tfrewind reads back to resume or to
branch is checked as it is read; one that cannot be read whole is set aside (renamed
.corrupt, one warning line) and the run falls back to its newest good state. Under
--deterministic the rerun ends bitwise equal to an uninterrupted run."""

import glob
import json
import os

import pytest

from clitools import PROCESSES, ledger, results
from test_preemption import ARGS, _run, _weights

# Weight rewinding (a snapshot of step 10) with SNIP masks (a scores file of the dense run).
TORN_ARGS = ARGS[:-2] + ["--methods=weight_rewind", "--criterion=snip", "--deterministic"]
SET_ASIDE = "is corrupt: setting it aside as "


def _damage(path, how):
  """Cuts a file to half its size, or changes one byte where its format checks it (a TF
  checkpoint's CRC32C, a zip member's CRC-32, a JSON file's first brace)."""
  size = os.path.getsize(path)
  with open(path, "r+b") as f:
    if how == "truncate":
      f.truncate(size // 2)
      return
    at = 0 if path.endswith(".json") else size // 2
    f.seek(at)
    byte = f.read(1)
    f.seek(at)
    f.write(bytes([byte[0] ^ 0xFF]))


def _one(pattern):
  found = glob.glob(pattern)
  assert len(found) == 1, (pattern, found)
  return found[0]


def _set_aside(out):
  return sorted(line.split(SET_ASIDE)[0].split()[-1] for line in out.splitlines()
                if SET_ASIDE in line)


@pytest.mark.slow
@PROCESSES
@pytest.mark.parametrize("how", ["truncate", "flip"])
def test_every_damaged_file_is_set_aside_and_the_rerun_equals_an_uninterrupted_run(tmp_path, how):
  whole, torn = str(tmp_path / "whole"), str(tmp_path / "torn")
  status, out = _run(TORN_ARGS + [f"--root={whole}"], tmp_path)
  assert status == 0, out
  args = TORN_ARGS + [f"--root={torn}"]
  # Killed in the dense phase at step 33: epoch checkpoints 20 and 30 are kept.
  assert _run(args, tmp_path, at=33, signal="KILL")[0] == -9
  dense = _one(os.path.join(torn, "dense_*"))
  backup = _one(os.path.join(dense, "backup", "ckpt-30.data-*"))
  damaged = [backup, os.path.join(dense, "hparams.json")]
  for path in damaged:
    _damage(path, how)
  # Rerun, killed in the branch at step 43, before its first epoch checkpoint (50).
  status, out = _run(args, tmp_path, at=43, signal="KILL")
  assert status == -9, out
  assert _set_aside(out) == sorted([backup.rsplit(".data", 1)[0], damaged[1]]), out
  branch = _one(os.path.join(torn, "prune_*"))
  final = _one(os.path.join(dense, "final", "ckpt.data-*"))
  snapshot = os.path.join(dense, "snapshots", "step_10.npz")
  scores = _one(os.path.join(dense, "scores", "snip_*.npz"))
  for path in (final, snapshot, scores, os.path.join(branch, "hparams.json")):
    _damage(path, how)
  status, out = _run(args, tmp_path)
  assert status == 0 and "Traceback" not in out, out
  # One line per file: the dense run's final/ (it trains again), its snapshot (replayed) and
  # scores (recomputed), the branch's hparams.json (written again).
  assert _set_aside(out) == sorted([os.path.dirname(final), snapshot, scores,
                                    os.path.join(branch, "hparams.json")]), out
  # A finished run whose result.json is damaged is measured again from its final checkpoint.
  _damage(os.path.join(branch, "result.json"), how)
  status, out = _run(args, tmp_path)
  assert status == 0 and _set_aside(out) == [os.path.join(branch, "result.json")], out
  # What each fallback redid, from the ledgers (a killed process writes no line): the dense
  # run resumed at 20 (ckpt-30 set aside); the snapshot of step 10 was replayed (steps 0..11);
  # then the dense run trained again from 0 (its final/ set aside; its epoch checkpoints went
  # when it finished); the branch trained its 30 steps from its start, and was measured again
  # from its final checkpoint once its result.json was set aside.
  steps = {name[:5]: [(l["phase"], l["start"], l["end"]) for l in lines]
           for name, lines in ledger(torn).items()}
  assert steps["dense"] == [("dense", 20, 40), ("finished", 40, 40), ("replay", 0, 11),
                            ("dense", 0, 40), ("finished", 40, 40)], steps
  assert steps["prune"] == [("prune", 40, 70), ("finished", 70, 70), ("finished", 70, 70)], steps
  assert len(results(torn)) == 2 and not glob.glob(os.path.join(torn, "*", "*.tmp-*"))
  a, b = results(whole), results(torn)
  assert a.keys() == b.keys()
  for name in a:
    for key in ("test_accuracy", "test_loss", "epoch_eval_accuracy", "density", "steps"):
      assert a[name][key] == b[name][key], (name, key)
  for prefix in ("dense_", "prune_"):
    # Every variable; not the object graph, bookkeeping that a re-measured run writes anew.
    wa, wb = [{n: v for n, v in _weights(root, prefix).items()
               if n != "_CHECKPOINTABLE_OBJECT_GRAPH"} for root in (whole, torn)]
    assert wa.keys() == wb.keys() and len(wa) > 10, prefix
    assert [n for n in wa if wa[n] != wb[n]] == [], prefix
  for path in glob.glob(os.path.join(torn, "*", "*.json")):
    json.load(open(path))  # every file left in place reads whole


@pytest.mark.slow
@PROCESSES
def test_a_damaged_tap_is_set_aside_and_that_budget_trains_alone(tmp_path):
  """Shared prefixes: the 30-step fine-tuning run, killed at step 57, has written the taps of
  the 10- and 15-step budgets (steps 50 and 55) into their folders. One tap's checkpoint is
  truncated, the other's has a byte changed: the rerun sets both aside and trains those
  budgets alone, and every result and final weight equals an uninterrupted shared sweep."""
  from test_launch import BUDGETS  # pylint: disable=g-import-not-at-top
  whole, torn = str(tmp_path / "whole"), str(tmp_path / "torn")
  assert _run(BUDGETS + [f"--root={whole}"], tmp_path)[0] == 0
  args = BUDGETS + [f"--root={torn}"]
  assert _run(args, tmp_path, at=57, signal="KILL")[0] == -9
  taps = sorted(glob.glob(os.path.join(torn, "prune_*", "shared", "ckpt.data-*")))
  assert len(taps) == 2, taps
  for path, how in zip(taps, ("truncate", "flip")):
    _damage(path, how)
  status, out = _run(args, tmp_path)
  assert status == 0 and "Traceback" not in out, out
  assert _set_aside(out) == sorted(os.path.dirname(p) for p in taps), out
  a, b = results(whole), results(torn)
  assert a.keys() == b.keys() and len(a) == 4
  for name in a:
    for key in ("test_accuracy", "test_loss", "epoch_eval_accuracy", "density", "steps"):
      assert a[name][key] == b[name][key], (name, key)
    # Trained alone, not written from the longer run's tap.
    assert ("shared_from" in b[name]) == ("shared_from" in a[name] and not any(
        name in t for t in taps)), name
  for name in a:
    wa, wb = [{n: v for n, v in _weights(root, name).items()
               if n != "_CHECKPOINTABLE_OBJECT_GRAPH"} for root in (whole, torn)]
    assert wa.keys() == wb.keys() and len(wa) > 10, name
    assert [n for n in wa if wa[n] != wb[n]] == [], name
