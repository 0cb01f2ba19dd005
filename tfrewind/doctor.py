"""`tfrewind doctor [--out=DIR]`: is this machine ready for a sweep? Five minutes on a GPU.

  versions   TensorFlow, tf_keras, TF-MOT, and the CUDA/cuDNN TensorFlow was built with
  devices    what TensorFlow trains on (platform.devices)
  speed      ResNet-20 and ResNet-56 training it/s at density 0.2, in fp32, mixed precision,
             and mixed precision with XLA, against the reproduction's 59 and 28.6 it/s
             (one RTX 3080, TF 2.4); steps timed inside fit() (bench.StepTimer)
  input      the input pipeline's images/s against the fastest training images/s, and the
             ImageNet preprocessing's on ImageNet-sized JPEGs (tfrewind.imagenet.jpeg_rate)
  exact      after the speed runs, in every mode: each pruned weight +0.0 bitwise, and its
             momentum 0 (masks_exact); with two or more GPUs, a MirroredStrategy run whose
             replicas hold identical masks and weights (replicas_identical)
  cycle      one quickstart-scale cycle (digits, ResNet-8) of each paper method

It writes DIR/doctor.json and prints a table. A failed exactness check exits 1. Without
a GPU the settings are smaller (batch 32, a few steps, a shorter cycle), to stay within
about 3 minutes on 2 cores.
"""

import dataclasses
import os
import statistics
import tempfile
import time
from typing import Dict, List

import numpy as np
import tensorflow as tf

import tf_keras as keras
from tfrewind import bench
from tfrewind import data as data_lib
from tfrewind import experiment
from tfrewind import hparams as hp_lib
from tfrewind import platform
from tfrewind import store
from tfrewind import sweep
from tfrewind import training
from tfrewind.pruning import sparsity

MODES = {"fp32": (False, False), "mixed": (True, False), "mixed+jit": (True, True)}
NETWORKS = ("resnet20", "resnet56")
METHODS = ("finetune", "weight_rewind", "lr_rewind")


@dataclasses.dataclass(frozen=True)
class Settings:
  """How long each check runs: a GPU's, or a CPU's smaller ones."""
  batch: int
  warmup: int
  steps: int  # timed steps; the exactness checks run after warmup + steps
  cycle_steps: int  # the quickstart cycle's dense steps (its retraining as many)

  @classmethod
  def for_devices(cls, devices: List[str]) -> "Settings":
    if any(d.startswith("GPU") for d in devices):
      return cls(batch=128, warmup=20, steps=180, cycle_steps=300)
    return cls(batch=32, warmup=2, steps=6, cycle_steps=100)


def versions() -> Dict[str, str]:
  import tensorflow_model_optimization as tfmot  # pylint: disable=g-import-not-at-top
  build = tf.sysconfig.get_build_info()
  return {"tensorflow": tf.__version__, "tf_keras": keras.__version__,
          "tensorflow_model_optimization": tfmot.__version__,
          "cuda": str(build.get("cuda_version", "none")),
          "cudnn": str(build.get("cudnn_version", "none"))}


def masks_exact(model) -> List[str]:
  """What breaks exactness: a pruned weight that is not +0.0 bitwise, or a pruned weight's
  optimizer slot (momentum) that is not zero. [] when the masks are exact."""
  problems = []
  for weight, mask, _ in sparsity._pruning_vars(model):  # pylint: disable=protected-access
    pruned = mask.numpy() == 0
    w = weight.numpy()[pruned]
    if w.size and (np.any(w != 0) or np.any(np.signbit(w))):
      problems.append(f"{weight.name}: {int(np.sum((w != 0) | np.signbit(w)))} pruned weights "
                      f"not +0.0")
    for slot in sparsity.optimizer_slots(model.optimizer, weight):
      s = slot.numpy()[pruned]
      if s.size and np.any(s != 0):
        problems.append(f"{slot.name}: {int(np.sum(s != 0))} slots of pruned weights not 0")
  return problems


def replicas_identical(model) -> List[str]:
  """Under a MirroredStrategy: trainable weights and masks whose replicas differ (BatchNorm's
  moving statistics are per replica by design, read as their mean)."""
  problems = []
  masks = [m for _, m, _ in sparsity._pruning_vars(model)]  # pylint: disable=protected-access
  for v in list(model.trainable_variables) + masks:
    values = getattr(v, "values", None)
    if values and len(values) > 1:
      first = values[0].numpy()
      if any(r.numpy().tobytes() != first.tobytes() for r in values[1:]):
        problems.append(f"{v.name}: replicas differ")
  return problems


def _model(name: str, mixed: bool, jit: bool, strategy=None):
  hp = hp_lib.HParams(model=name, dataset="synthetic", mixed_precision=mixed)
  keras.backend.clear_session()
  keras.utils.set_random_seed(0)
  model = training.build(hp, strategy=strategy, jit_compile=jit)
  sparsity.prune(model, 0.2)
  return model


def speed(name: str, mode: str, settings: Settings, ds, strategy=None) -> Dict:
  """it/s of the pruned network in `mode`, and the exactness checks after the run."""
  mixed, jit = MODES[mode]
  try:
    model = _model(name, mixed, jit, strategy)
    timer = bench.StepTimer(settings.warmup)
    model.fit(ds, epochs=1, steps_per_epoch=settings.warmup + settings.steps, verbose=0,
              callbacks=[timer])
    its = 1.0 / statistics.median(timer.steps)
    problems = masks_exact(model) + (replicas_identical(model) if strategy else [])
  finally:
    keras.mixed_precision.set_global_policy("float32")
  # The reproduction's it/s are at batch 128: a smaller batch (a CPU's) has no ratio.
  published = sweep.PUBLISHED_ITS.get(name) if settings.batch == 128 else None
  return {"network": name, "mode": mode, "its": round(its, 2),
          "images_per_s": round(its * settings.batch, 1),
          "vs_published": round(its / published, 3) if published else None,
          "exact": not problems, "problems": problems}


def input_rate(settings: Settings, batches: int = 50) -> float:
  bundle = data_lib.make("synthetic", settings.batch, seed=0, synthetic_size=2000)
  return bench._time_pipeline(bundle.train, batches, settings.batch)  # pylint: disable=protected-access


def cycle(settings: Settings, root: str) -> List[Dict]:
  """One quickstart-scale cycle of each method (digits, ResNet-8, density 0.1, seed 1)."""
  n = settings.cycle_steps
  base = hp_lib.HParams(dataset="digits", model="resnet8", width=16, bn_momentum=0.9,
                        batch_size=64, train_steps=f"{n}it", epoch_steps=f"{n // 6}it",
                        lr_boundaries=(f"{n // 2}it", f"{3 * n // 4}it"),
                        rewind_step=f"{n // 10}it", density=0.1)
  runner = experiment.Runner(experiment.Env(root=root, verbose=0,
                                            snapshot_steps=[n // 10]))
  out = []
  for method in METHODS:
    t0 = time.perf_counter()
    hp = dataclasses.replace(base, method=method)
    paths = runner.run(hp)[-1]
    dense = store.read_json(store.dense_paths(root, hp).result)
    result = store.read_json(paths.result)
    out.append({"method": method, "test_accuracy": result["test_accuracy"],
                "dense_accuracy": dense["test_accuracy"],
                "change_pt": round(100 * (result["test_accuracy"] - dense["test_accuracy"]), 2),
                "density": round(result["density"], 4),
                "seconds": round(time.perf_counter() - t0, 1)})
  return out


def run(out: str) -> int:
  """Every check; writes out/doctor.json and prints the table. 0, or 1 if any is not exact."""
  t0 = time.perf_counter()
  devices = platform.devices()
  settings = Settings.for_devices(devices)
  report = {"versions": versions(), "devices": devices,
            "settings": dataclasses.asdict(settings), "speed": []}
  bundle = data_lib.make("synthetic", settings.batch, seed=0, synthetic_size=2000)
  for name in NETWORKS:
    for mode in MODES:
      report["speed"].append(speed(name, mode, settings, bundle.train))
  gpus = [d for d in devices if d.startswith("GPU")]
  if len(gpus) > 1:
    mirrored = tf.distribute.MirroredStrategy()
    report["mirrored"] = speed("resnet20", "fp32", settings, bundle.train, mirrored)
  report["input_images_per_s"] = round(input_rate(settings), 1)
  fastest = max(s["images_per_s"] for s in report["speed"])
  report["input_vs_training"] = round(report["input_images_per_s"] / fastest, 2)
  from tfrewind import imagenet  # pylint: disable=g-import-not-at-top
  report["imagenet_input_images_per_s"] = round(imagenet.jpeg_rate(), 1)
  with tempfile.TemporaryDirectory() as root:
    report["cycle"] = cycle(settings, root)
  report["seconds"] = round(time.perf_counter() - t0, 1)
  checks = report["speed"] + ([report["mirrored"]] if "mirrored" in report else [])
  report["exact"] = all(s["exact"] for s in checks)
  store.write_json(os.path.join(out, "doctor.json"), report)
  print(table(report))
  print(f"wrote {os.path.join(out, 'doctor.json')}")
  if not report["exact"]:
    bad = [f"{s['network']} {s['mode']}: {'; '.join(s['problems'])}" for s in checks
           if not s["exact"]]
    print(f"tfrewind doctor: masks are not exact on this device: {' | '.join(bad)}")
    return 1
  return 0


def table(report: Dict) -> str:
  v = report["versions"]
  lines = [f"TensorFlow {v['tensorflow']}, tf_keras {v['tf_keras']}, TF-MOT "
           f"{v['tensorflow_model_optimization']}, CUDA {v['cuda']}, cuDNN {v['cudnn']}",
           f"devices: {', '.join(report['devices'])}; batch {report['settings']['batch']}, "
           f"{report['settings']['steps']} timed steps",
           f"{'network':<10} {'mode':<10} {'it/s':>8} {'img/s':>9} {'vs RTX 3080':>12} "
           f"{'masks':>7}"]
  for s in report["speed"] + ([report["mirrored"]] if "mirrored" in report else []):
    ratio = f"{s['vs_published']:.3f}x" if s["vs_published"] is not None else "-"
    lines.append(f"{s['network']:<10} {s['mode']:<10} {s['its']:>8.2f} {s['images_per_s']:>9.1f} "
                 f"{ratio:>12} {'exact' if s['exact'] else 'BROKEN':>7}")
  lines.append(f"input pipeline: {report['input_images_per_s']:,.0f} images/s "
               f"({report['input_vs_training']:.2f}x the fastest training)")
  lines.append(f"ImageNet input (the original's training crops of 500x375 JPEGs, from memory): "
               f"{report['imagenet_input_images_per_s']:,.0f} images/s")
  for c in report["cycle"]:
    lines.append(f"cycle {c['method']:<14} density {c['density']:.4f}: test "
                 f"{c['test_accuracy']:.4f} ({c['change_pt']:+.2f} pt vs dense) in "
                 f"{c['seconds']:.0f} s")
  lines.append(f"doctor: {report['seconds']:.0f} s, masks "
               f"{'exact in every mode' if report['exact'] else 'NOT exact'}")
  return "\n".join(lines)
