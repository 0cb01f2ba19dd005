"""Channel pruning through the runner, then `tfrewind export` of the finished run."""

import glob
import json
import os

import numpy as np
import pytest
import tensorflow as tf

import tf_keras as keras
from tfrewind import export as export_lib
from tfrewind import macs
from tfrewind.pruning import slim, sparsity

from clitools import QUICK, SMALL, cli, ledger, results


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore:.*tf.lite.Interpreter is deprecated")
def test_channel_run_then_export_slim_saved_model_and_tflite(tmp_path, capsys):
  root = str(tmp_path / "runs")
  base = ["run", f"--flagfile={QUICK}", f"--root={root}", *SMALL, "--densities=0.5"]
  # Every method retrains coupled channel groups and 2:4 sparsity (the first trains the dense
  # run); what a run counts is what its slim network computes, or the theoretical sparse count.
  every = ["--methods=finetune,weight_rewind,lr_rewind"]
  assert cli(base + every + ["--structure=channel_group"], capsys)[0] == 0
  dense = {n: lines for n, lines in ledger(root).items() if n.startswith("dense_")}
  assert cli(base + every + ["--structure=n_m", "--n_m=2:4"], capsys)[0] == 0
  for name in results(root):
    model, hp, result = export_lib.load_run(os.path.join(root, name)) if "prune" in name else (
        None, None, None)
    if hp is not None and hp.structure == "n_m":  # 4 weights along the inputs keep 2
      assert result["macs_count"] == "sparse" and result["flops_theoretical"] is True
      for mask in sparsity.get_masks(model).values():
        if mask.shape[-2] % 4 == 0:
          assert (np.moveaxis(mask, -2, -1).reshape(-1, 4).sum(axis=1) == 2).all(), name
    elif hp is not None:
      assert result["macs_count"] == "slim" and result["flops_theoretical"] is False
      assert result["pruned_macs"] == macs.flops(slim.slim(model))["dense_macs"], name
      assert result["pruned_macs"] < result["dense_macs"], name
  assert len(results(root)) == 7
  # A MACs target: result.json records the MACs kept beside the weights kept.
  status, _, err = cli(base + ["--structure=channel", "--methods=lr_rewind", "--target=macs"],
                       capsys)
  assert status == 0, err
  # One dense network (its checkpoint) serves every branch.
  assert {n: lines for n, lines in ledger(root).items() if n.startswith("dense_")} == dense
  (name, result), = [(n, r) for n, r in results(root).items() if r["kind"] == "prune" and
                     json.load(open(os.path.join(root, n, "hparams.json")))["hparams"][
                         "structure"] == "channel"]
  assert result["macs_density"] == result["pruned_macs"] / result["dense_macs"]
  assert abs(result["macs_density"] - 0.5) < 0.05 and abs(result["density"] - 0.5) > 0.05
  assert result["slim_parameters"] < result["parameters"]
  assert result["flops_speedup"] > 1
  assert result["macs_count"] == "slim" and result["flops_theoretical"] is False
  run = os.path.join(root, name)
  out = str(tmp_path / "exported")
  status, stdout, err = cli(["export", f"--run={run}", f"--out={out}"], capsys)
  assert status == 0, err
  assert sorted(os.listdir(out)) == ["export.json", "model.tflite", "saved_model"]
  info = json.load(open(os.path.join(out, "export.json")))
  assert info["slim_parameters"] == result["slim_parameters"] and "parameters" in stdout
  # The masked network's MACs are what slim computes (zero weights of a stage channel that
  # only some writers prune stay, and cost), and the TFLite latency of all three is there.
  assert result["pruned_macs"] == info["slim_dense_macs"] < info["dense_macs"]
  assert result["macs_count"] == info["macs_count"] == "slim"
  latency = info["tflite_latency_ms"]
  assert sorted(latency) == ["dense", "masked", "slim"]
  assert all(v["1"] > 0 and v["all"] > 0 for v in latency.values()) and "TFLite" in stdout

  masked, _, _ = export_lib.load_run(run)
  x = np.random.default_rng(0).normal(size=(3, 32, 32, 3)).astype(np.float32)
  expected = masked(x, training=False).numpy()
  loaded = keras.models.load_model(os.path.join(out, "saved_model"))
  assert loaded.count_params() == info["slim_parameters"]
  np.testing.assert_allclose(loaded(x, training=False).numpy(), expected, rtol=1e-4, atol=1e-4)
  serving = tf.saved_model.load(os.path.join(out, "saved_model")).signatures["serving_default"]
  (served,) = serving(tf.constant(x)).values()
  np.testing.assert_allclose(served.numpy(), expected, rtol=1e-4, atol=1e-4)
  interpreter = tf.lite.Interpreter(model_path=os.path.join(out, "model.tflite"))
  interpreter.resize_tensor_input(interpreter.get_input_details()[0]["index"], x.shape)
  interpreter.allocate_tensors()
  interpreter.set_tensor(interpreter.get_input_details()[0]["index"], x)
  interpreter.invoke()
  lite = interpreter.get_tensor(interpreter.get_output_details()[0]["index"])
  np.testing.assert_allclose(lite, expected, rtol=1e-3, atol=1e-3)

  # Exporting again replaces the earlier export whole; a foreign folder is never replaced.
  assert cli(["export", f"--run={run}", f"--out={out}", "--latency_runs=0"], capsys)[0] == 0
  assert "tflite_latency_ms" not in json.load(open(os.path.join(out, "export.json")))
  assert not glob.glob(str(tmp_path / "exported.*"))
  (tmp_path / "mine").mkdir()
  (tmp_path / "mine" / "notes.txt").write_text("keep")
  status, _, err = cli(["export", f"--run={run}", f"--out={tmp_path / 'mine'}"], capsys)
  assert status == 2 and "not an earlier export" in err
  assert (tmp_path / "mine" / "notes.txt").read_text() == "keep"


@pytest.mark.parametrize("make,match", [
    (lambda p: str(p / "nowhere"), "is not a folder"),
    (lambda p: str(p), "hparams.json is missing"),
])
def test_export_bad_run_is_one_line_and_writes_nothing(make, match, tmp_path, capsys):
  out = tmp_path / "out"
  status, _, err = cli(["export", f"--run={make(tmp_path)}", f"--out={out}"], capsys)
  assert status == 2 and match in err and err.count("\n") == 1
  assert not out.exists()


def test_export_of_an_unfinished_run_says_so(tmp_path, capsys):
  run = tmp_path / "prune_x"
  run.mkdir()
  (run / "hparams.json").write_text(json.dumps({"hparams": {}}))
  status, _, err = cli(["export", f"--run={run}", f"--out={tmp_path / 'out'}"], capsys)
  assert status == 2 and "not finished" in err
  status, _, err = cli(["export", f"--out={tmp_path / 'out'}"], capsys)
  assert status == 2 and "--run" in err

