"""tfrewind: prune tf_keras networks and retrain them by fine-tuning, weight
rewinding or learning-rate rewinding (Renda et al. 2020; Mikler 2021).

Example:
  >>> import tfrewind, tf_keras as keras
  >>> model = tfrewind.prunable(my_model())
  >>> tfrewind.prune(model, density=0.2)
"""

import os as _os

# TF-MOT needs Keras 2 (tf_keras); this must be set before TensorFlow is imported.
_os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
_os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from tfrewind.macs import flops  # noqa: E402
from tfrewind.lr import Rewindable, StepDecay  # noqa: E402
from tfrewind.models import build_model  # noqa: E402
from tfrewind.pruning.schedules import Iterative, OneShot  # noqa: E402
from tfrewind.pruning.sparsity import (density, get_masks, layer_densities, prunable,  # noqa: E402
                                       prune, strip)
from tfrewind.rewind import (Retrain, RewindCallback, Snapshot, retrain_plan,  # noqa: E402
                             rewind_weights, snapshot)
from tfrewind.pruning.slim import slim  # noqa: E402

__all__ = ["prunable", "prune", "density", "get_masks", "layer_densities", "OneShot",
           "Iterative", "snapshot", "rewind_weights", "Snapshot", "RewindCallback", "Retrain",
           "retrain_plan", "StepDecay", "Rewindable", "build_model", "flops", "strip", "slim"]
__version__ = "0.1.0"
