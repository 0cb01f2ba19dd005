"""Where this process runs: its distribution strategy, its worker index, the runs it owns.

Multi-worker training runs every worker in lockstep; only the chief writes to
the root. Worker i writes its copy of a run under <root>/.worker<i>/, where its
own restarts find it, and never takes a run's lock (a worker waiting on the
chief's lock would deadlock the collectives).
"""

import contextlib
import dataclasses
import glob
import os
import sys
import tempfile
from typing import List, Optional

from tfrewind import store
from tfrewind.errors import UsageError

DISTRIBUTIONS = ("auto", "none", "mirrored", "multi_worker")

# Lines TensorFlow's C++ runtime writes to stderr while it starts, before its log level applies.
_STARTUP_NOISE = ("All log messages before absl::InitializeLog() is called",
                  "oneDNN custom operations are on",
                  "Could not find cuda drivers on your machine")


def _is_noise(line: str, gpu_hardware: bool) -> bool:
  if any(n in line for n in _STARTUP_NOISE):
    return True
  # cuInit fails on every machine without a GPU: an error only where there is one.
  return "failed call to cuInit" in line and not gpu_hardware


@contextlib.contextmanager
def _filtered_stderr():
  """Captures file descriptor 2 (native code writes there too), then passes on what is not
  start-up noise."""
  sys.stderr.flush()
  saved = os.dup(2)
  with tempfile.TemporaryFile() as captured:
    os.dup2(captured.fileno(), 2)
    try:
      yield
    finally:
      sys.stderr.flush()
      os.dup2(saved, 2)
      os.close(saved)
      captured.seek(0)
      gpu_hardware = bool(glob.glob("/dev/nvidia[0-9]*"))
      for line in captured.read().decode("utf-8", "replace").splitlines():
        if not _is_noise(line, gpu_hardware):
          print(line, file=sys.stderr)


def start_tensorflow(verbose: int) -> None:
  """Imports TensorFlow and finds its devices, without the C++ start-up chatter
  (all of it with verbose >= 2)."""
  with _filtered_stderr() if verbose < 2 else contextlib.nullcontext():
    import tensorflow as tf  # pylint: disable=g-import-not-at-top
    tf.config.list_physical_devices("GPU")


def devices() -> List[str]:
  """The devices TensorFlow trains on here: "GPU:0 (NVIDIA H200)", ..., else ["CPU"]."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  out = []
  for i, gpu in enumerate(tf.config.list_physical_devices("GPU")):
    name = tf.config.experimental.get_device_details(gpu).get("device_name", "")
    out.append(f"GPU:{i}" + (f" ({name})" if name else ""))
  return out or ["CPU"]


def require_gpu(found: List[str]) -> None:
  """--require_gpu: no GPU is one line, never a silent run on the CPU."""
  if not any(d.startswith("GPU") for d in found):
    raise UsageError("--require_gpu: TensorFlow sees no GPU here, so it would train on the CPU: "
                     "install the CUDA libraries with pip install -e '.[cuda]' and check the "
                     "driver with nvidia-smi")


def strategy(choice: str):
  """The tf.distribute strategy of --distribution (None: TF's default)."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  gpus = tf.config.list_physical_devices("GPU")
  if choice == "auto":
    choice = "mirrored" if len(gpus) > 1 else "none"
  if choice == "none":
    return None
  if choice == "mirrored":
    return tf.distribute.MirroredStrategy()
  if "TF_CONFIG" in os.environ:
    resolver = tf.distribute.cluster_resolver.TFConfigClusterResolver()
  elif "SLURM_JOB_ID" in os.environ:
    resolver = tf.distribute.cluster_resolver.SlurmClusterResolver()
  else:
    raise UsageError("--distribution=multi_worker needs TF_CONFIG or a Slurm allocation")
  return tf.distribute.MultiWorkerMirroredStrategy(cluster_resolver=resolver)


def multi_worker(strategy_) -> bool:
  """True under a MultiWorkerMirroredStrategy of two or more processes."""
  return bool(strategy_ is not None and getattr(strategy_.extended, "_in_multi_worker_mode",
                                                lambda: False)())


def worker_index(strategy_) -> Optional[int]:
  """None for the chief (or a single process), else this worker's task index."""
  resolver = getattr(strategy_, "cluster_resolver", None)
  if resolver is None or not multi_worker(strategy_):
    return None
  task_type, task_id = resolver.task_type, resolver.task_id
  if task_type == "chief" or (task_type == "worker" and task_id == 0 and
                              "chief" not in resolver.cluster_spec().as_dict()):
    return None
  return task_id if task_type == "worker" else 1000 + task_id


@dataclasses.dataclass(frozen=True)
class Ownership:
  """Which copy of a run this process writes and reads, and whether it locks it."""
  root: str
  worker: Optional[int] = None  # None: the chief or a single process

  def own(self, paths: store.RunPaths) -> store.RunPaths:
    """Where this process writes a run: the run itself (chief), or a worker's private copy."""
    if self.worker is None:
      return paths
    rel = os.path.relpath(paths.dir, self.root)
    return store.RunPaths(os.path.join(self.root, f".worker{self.worker}", rel))

  def readable(self, paths: store.RunPaths) -> store.RunPaths:
    """The copy of a run to read: this worker's own if it trained it, else the chief's."""
    own = self.own(paths)
    return own if own.finished() else paths

  def finished(self, paths: store.RunPaths) -> bool:
    """Finished by the chief or by this worker: a worker must not wait for the chief's
    result.json, which the chief may write a moment later than the worker finishes its copy
    (training again would desynchronise the collectives)."""
    return paths.finished() or (self.worker is not None and self.own(paths).finished())

  def locked(self, paths: store.RunPaths):
    return store.locked(paths) if self.worker is None else contextlib.nullcontext()
