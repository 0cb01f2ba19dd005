"""What result.json records of a trained model: accuracy, density, MACs, sizes, evaluations."""

import gzip
import os
import tempfile
from typing import Dict

from tfrewind import data as data_lib
from tfrewind import hparams as hp_lib
from tfrewind import macs as flops_lib
from tfrewind import store
from tfrewind.pruning import slim as slim_lib
from tfrewind.pruning import sparsity


def measure(hp: hp_lib.HParams, model, bundle: data_lib.Bundle, pruned: bool = True) -> Dict:
  """What result.json records of a trained model (less the wall time); the parameters left
  after removing channels only for a pruned one (a dense run serves every structure)."""
  evaluation = model.evaluate(bundle.test, verbose=0, return_dict=True)
  density = float(sparsity.density(model, hp.keep_dense))
  result = {"test_accuracy": float(evaluation["accuracy"]),
            "test_loss": float(evaluation["loss"]), "density": density,
            # With --keep_dense, "density" counts the prunable kernels (as the target does).
            "density_all_kernels": float(sparsity.density(model)),
            "layer_densities": sparsity.layer_densities(model),
            "steps": int(model.optimizer.iterations.numpy())}
  macs = flops_lib.flops(model)
  stripped = sparsity.strip(model)
  result.update(dense_macs=macs["dense_macs"], pruned_macs=macs["pruned_macs"],
                # The fraction of MACs kept, beside "density" (of weights): --target=macs
                # sets this one.
                macs_density=macs["pruned_macs"] / macs["dense_macs"],
                flops_speedup=macs["speedup"], compression=1.0 / density if density else None,
                # "slim": what the slim network computes; "sparse": theoretical (sparse kernels)
                macs_count=macs["count"], flops_theoretical=macs["count"] == "sparse",
                **saved_size(stripped))
  if pruned and sparsity.silences_channels(hp.structure):
    result["parameters"] = int(stripped.count_params())
    result["slim_parameters"] = int(slim_lib.slim(model, stripped).count_params())
  if bundle.validation is not None:
    result["val_accuracy"] = float(model.evaluate(bundle.validation, verbose=0,
                                                  return_dict=True)["accuracy"])
  return result


def epoch_evaluations(hp: hp_lib.HParams, paths: store.RunPaths) -> Dict:
  """Every epoch-end evaluation of the run (metrics.csv, the last line of a resumed epoch
  kept), and the best on the test set: the reproduction's reported ACC is that maximum."""
  if not os.path.exists(paths.metrics):
    return {}
  import pandas as pd  # pylint: disable=g-import-not-at-top
  metrics = pd.read_csv(paths.metrics)
  if "val_accuracy" not in metrics:
    return {}
  evals = metrics.drop_duplicates("epoch", keep="last").sort_values("epoch")["val_accuracy"]
  values = [float(v) for v in evals]
  out = {"epoch_eval_accuracy": values, "eval_set": "validation" if hp.validation else "test"}
  if not hp.validation and values:
    out["best_test_accuracy"] = max(values)
  return out


def saved_size(stripped) -> Dict[str, int]:
  """Bytes of a stripped model's saved weights (stripped_bytes), raw and gzipped.

  Pruned weights are zeros, so gzip shows what the sparsity is worth on disk.
  """
  with tempfile.TemporaryDirectory() as tmp:
    path = os.path.join(tmp, "weights.h5")
    stripped.save_weights(path)
    with open(path, "rb") as f:
      raw = f.read()
  return {"stripped_bytes": len(raw), "stripped_gzip_bytes": len(gzip.compress(raw, 6))}
