"""`tfrewind export --run=RUN --out=OUT`: the slim network of a finished run, for deployment.

  OUT/saved_model/   tf_keras SavedModel of tfrewind.slim(model) (pruned channels removed,
                     no tfrewind layers: loads with plain TensorFlow)
  OUT/model.tflite   the same network converted by TFLiteConverter (float32)
  OUT/export.json    where it came from and what it is worth: parameters and MACs of the
                     masked and slim networks, the run's test accuracy, and the TFLite
                     latency of one image (XNNPack; 1 thread and every core) of the dense,
                     masked and slim networks

OUT is written into a temporary folder and renamed into place, so it is whole or absent.
"""

import os
import shutil
import statistics
import tempfile
import time
from typing import Any, Dict

import numpy as np
import tensorflow as tf

from tfrewind import hparams as hp_lib
from tfrewind import macs
from tfrewind import names
from tfrewind import store
from tfrewind.errors import ConfigError
from tfrewind import training
from tfrewind.models import registry
from tfrewind.pruning import slim as slim_lib
from tfrewind.pruning import sparsity


class ExportError(ConfigError):
  """A run that cannot be exported; the message says why and what to do."""


def load_run(run_dir: str):
  """The compiled prunable model of a finished run, restored from its final checkpoint."""
  try:
    paths = store.finished_run(run_dir)
  except ValueError as e:
    raise ExportError(str(e)) from None
  meta = store.read_json(paths.hparams)
  hp = hp_lib.HParams.from_json(meta["hparams"])
  try:
    model = training.load_final(hp, paths)
  except ValueError as e:
    raise ExportError(str(e)) from None
  return model, hp, store.read_json(paths.result)


def tflite_latency(model, runs: int = 50, warmup: int = 5, content=None) -> Dict[str, float]:
  """{"1": ms, "all": ms}: the median latency of one image through `model` converted to
  TFLite (float32; the interpreter's default XNNPack delegate), with 1 thread and with every
  core, each the median of `runs` invocations after `warmup`. content: its conversion, when
  the caller has it."""
  if content is None:
    content = tf.lite.TFLiteConverter.from_keras_model(model).convert()
  x = np.random.default_rng(0).normal(size=(1, *model.input_shape[1:])).astype(np.float32)
  out = {}
  for label, threads in (("1", 1), ("all", os.cpu_count() or 1)):
    interpreter = tf.lite.Interpreter(model_content=content, num_threads=threads)
    index = interpreter.get_input_details()[0]["index"]
    interpreter.resize_tensor_input(index, x.shape)
    interpreter.allocate_tensors()
    interpreter.set_tensor(index, x)
    times = []
    for i in range(warmup + runs):
      t0 = time.perf_counter()
      interpreter.invoke()
      if i >= warmup:
        times.append(time.perf_counter() - t0)
    out[label] = round(1000 * statistics.median(times), 4)
  return out


def export(run_dir: str, out: str, latency_runs: int = 50) -> Dict[str, Any]:
  """Writes OUT (see the module docstring) and returns what export.json holds.

  latency_runs: TFLite invocations timed per model and thread count (0: none timed)."""
  out = os.path.normpath(out)
  if os.path.exists(out) and (not os.path.isdir(out) or (
      os.listdir(out) and not os.path.exists(os.path.join(out, "export.json")))):
    raise ExportError(f"--out={out} exists and is not an earlier export: choose a new folder")
  model, hp, result = load_run(run_dir)
  small = slim_lib.slim(model)
  stripped = sparsity.strip(model)
  counts = macs.flops(model)
  info = {"run": os.path.abspath(run_dir), "model": hp.model, "method": hp.method,
          "structure": hp.structure, "density": result.get("density"),
          "test_accuracy": result.get("test_accuracy"),
          "parameters": int(stripped.count_params()), "slim_parameters": int(small.count_params()),
          "macs": counts["pruned_macs"], "dense_macs": counts["dense_macs"],
          "slim_dense_macs": macs.flops(small)["dense_macs"], "macs_count": counts["count"]}
  parent = os.path.dirname(os.path.abspath(out))
  os.makedirs(parent, exist_ok=True)
  tmp = tempfile.mkdtemp(prefix=os.path.basename(out) + ".tmp-", dir=parent)
  try:
    saved = os.path.join(tmp, "saved_model")
    small.compile()  # no loss or optimizer: only so that Keras does not warn it is uncompiled
    small.save(saved, save_format="tf", include_optimizer=False)
    content = tf.lite.TFLiteConverter.from_saved_model(saved).convert()
    with open(os.path.join(tmp, "model.tflite"), "wb") as f:
      f.write(content)
    if latency_runs:
      # The same network dense (fresh weights: latency does not depend on them), masked
      # (stripped, its zeros kept) and slim (model.tflite itself); beside their MACs above.
      dense = registry.build_model(hp.model, num_classes=names.num_classes(hp.dataset),
                                   input_shape=names.image_shape(hp.dataset, hp.image_size),
                                   **hp.model_overrides())
      info["tflite_threads"] = {"1": 1, "all": os.cpu_count() or 1}
      info["tflite_latency_ms"] = {"dense": tflite_latency(dense, latency_runs),
                                   "masked": tflite_latency(stripped, latency_runs),
                                   "slim": tflite_latency(small, latency_runs, content=content)}
    store.write_json(os.path.join(tmp, "export.json"), info)
    store.replace_dir(tmp, out)
  except BaseException:
    shutil.rmtree(tmp, ignore_errors=True)
    raise
  return info
