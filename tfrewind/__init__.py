"""tfrewind: prune tf_keras networks and retrain them by fine-tuning, weight
rewinding or learning-rate rewinding (Renda et al. 2020; Mikler 2021).

Example:
  >>> import tfrewind, tf_keras as keras
  >>> model = tfrewind.prunable(my_model())
  >>> tfrewind.prune(model, density=0.2)

The public names load on first use (PEP 562), so `tfrewind report`,
`tfrewind sweep --print` and `--help` start without TensorFlow.
"""

import importlib as _importlib
import os as _os

# TF-MOT needs Keras 2 (tf_keras); this must be set before TensorFlow is imported.
_os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
_os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

# public name -> module that defines it
_EXPORTS = {
    "prunable": "tfrewind.pruning.sparsity", "prune": "tfrewind.pruning.target",
    "density": "tfrewind.pruning.sparsity", "get_masks": "tfrewind.pruning.sparsity",
    "layer_densities": "tfrewind.pruning.sparsity", "strip": "tfrewind.pruning.sparsity",
    "OneShot": "tfrewind.pruning.schedules", "Iterative": "tfrewind.pruning.schedules",
    "snapshot": "tfrewind.snapshots", "rewind_weights": "tfrewind.snapshots",
    "Snapshot": "tfrewind.snapshots",
    "RewindCallback": "tfrewind.rewind", "GradualCallback": "tfrewind.gradual",
    "scores": "tfrewind.pruning.saliency", "register_control": "tfrewind.registries",
    "Retrain": "tfrewind.plan", "retrain_plan": "tfrewind.plan",
    "register_method": "tfrewind.plan", "register_criterion": "tfrewind.registries",
    "register_structure": "tfrewind.registries", "PruneSpec": "tfrewind.pruning.spec",
    "StepDecay": "tfrewind.lr", "Rewindable": "tfrewind.lr",
    "build_model": "tfrewind.models.registry",
    "flops": "tfrewind.macs",
    "slim": "tfrewind.pruning.slim",
    "interpolate": "tfrewind.connectivity", "barrier": "tfrewind.connectivity",
    "reestimate_batchnorm": "tfrewind.connectivity",
}
__all__ = list(_EXPORTS)
__version__ = "0.1.0"


def __getattr__(name):
  if name in _EXPORTS:
    value = getattr(_importlib.import_module(_EXPORTS[name]), name)
    globals()[name] = value  # the next lookup does not come here
    return value
  try:  # a submodule, e.g. tfrewind.data
    return _importlib.import_module(f"{__name__}.{name}")
  except ModuleNotFoundError as e:
    if e.name != f"{__name__}.{name}":
      raise
  raise AttributeError(f"module 'tfrewind' has no attribute {name!r}")


def __dir__():
  return sorted(list(globals()) + __all__)
