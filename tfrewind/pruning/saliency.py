"""Criteria that score the network itself: SNIP and GraSP (gradients on training batches) and
SynFlow (data-free), for tfrewind.registries.CRITERIA entries that need "model".

Each returns one float64 array of per-weight scores per prunable kernel (layer order); the
structure's rule then keeps the highest (tfrewind.pruning.masks.compute_masks(scores=...)).
BatchNorm runs in inference mode throughout, as the reproduction's snip_saliences calls its
model; every variable the scoring touches is restored bitwise.
"""

import contextlib
import dataclasses
from typing import List, Optional, Sequence

import numpy as np
import tensorflow as tf

import tf_keras as keras
from tfrewind import registries
from tfrewind.errors import ConfigError
from tfrewind.pruning import sparsity
from tfrewind.pruning.spec import PruneSpec

# GraSP's released code divides the logits by a temperature of 200 before the loss.
GRASP_TEMPERATURE = 200.0


@dataclasses.dataclass
class Context:
  """What a model criterion gets besides the network."""
  batches: Sequence = ()
  rng: Optional[np.random.Generator] = None
  density: Optional[float] = None
  spec: PruneSpec = dataclasses.field(default_factory=PruneSpec)
  rounds: int = 100


def scores(model, spec: PruneSpec, density: Optional[float] = None, batches: Sequence = (),
           rounds: int = 100) -> List[np.ndarray]:
  """The per-weight scores of `spec.criterion` on `model` (a prunable model, as it is now).

  batches: (images, labels) pairs, for criteria that need "batches" (SNIP, GraSP).
  density: the target, for criteria whose scores hold for one density (SynFlow).
  """
  entry = registries.criterion(spec.criterion)
  rng = np.random.default_rng(spec.seed)
  if not entry.scores_model:
    weights = [w.numpy() for w in _kernels(model)]
    return [np.asarray(s, np.float64) for s in entry.score(weights, rng)]
  if "batches" in entry.needs and not batches:
    raise ConfigError(f"criterion {spec.criterion!r} scores gradients on training batches: "
                      f"pass batches (--criterion_batches of them)")
  if entry.per_density and density is None:
    raise ConfigError(f"criterion {spec.criterion!r} prunes towards one density: pass density")
  out = entry.score_fn()(model, Context(list(batches), rng, density, spec, rounds))
  return [np.asarray(s, np.float64) for s in out]


def _kernels(model) -> List[tf.Variable]:
  return [w for w, _, _ in sparsity._pruning_vars(model)]  # pylint: disable=protected-access


def _loss(model, x, y, temperature: float = 1.0, training: bool = False):
  logits = tf.cast(model(x, training=training), tf.float32)
  return keras.losses.SparseCategoricalCrossentropy(from_logits=True)(y, logits / temperature)


def _summed_gradients(model, batches, temperature: float = 1.0, training: bool = False):
  kernels = _kernels(model)
  total = [tf.zeros_like(k) for k in kernels]
  for x, y in batches:
    with tf.GradientTape() as tape:
      loss = _loss(model, x, y, temperature, training)
    total = [t + g for t, g in zip(total, tape.gradient(loss, kernels))]
  return kernels, total


@contextlib.contextmanager
def _restored(model):
  """Every variable of `model` (masks, moving statistics too) put back bitwise on exit."""
  saved = [v.numpy() for v in model.variables]
  try:
    yield
  finally:
    for v, value in zip(model.variables, saved):
      v.assign(value)


def _hessian_gradient(model, kernels, g, batches, training: bool = False):
  """Sum over `batches` of H g, H the Hessian of the loss of logits / 200 in the kernels."""
  hg = [tf.zeros_like(k) for k in kernels]
  for x, y in batches:
    with tf.GradientTape() as outer:
      with tf.GradientTape() as inner:
        loss = _loss(model, x, y, GRASP_TEMPERATURE, training)
      grads = inner.gradient(loss, kernels)
      z = tf.add_n([tf.reduce_sum(a * tf.stop_gradient(b)) for a, b in zip(grads, g)])
    hg = [h + d for h, d in zip(hg, outer.gradient(z, kernels))]
  return hg


def snip(model, context: Context) -> List[np.ndarray]:
  """Lee et al. (2019) as the reproduction's snip_saliences: |w * sum over batches of dL/dw|."""
  kernels, grads = _summed_gradients(model, context.batches)
  return [np.abs((k * g).numpy()).astype(np.float64) for k, g in zip(kernels, grads)]


def grasp(model, context: Context) -> List[np.ndarray]:
  """Wang et al. (2020), as its code: g = sum of gradients, Hg = sum over the same batches of
  the Hessian-gradient products, both of the loss of logits / 200. GraSP removes the highest
  -w * Hg, so the score kept highest here is w * Hg."""
  kernels, g = _summed_gradients(model, context.batches, GRASP_TEMPERATURE)
  hg = _hessian_gradient(model, kernels, g, context.batches)
  return [(k * h).numpy().astype(np.float64) for k, h in zip(kernels, hg)]


# The released code's samples for CIFAR (main_prune_non_imagenet.py passes 10 per class).
GRASP_CODE_SAMPLES_PER_CLASS = 10


def grasp_code_samples(batches, model, per_class: int = GRASP_CODE_SAMPLES_PER_CLASS):
  """GraSP_fetch_data of the released code: the first `per_class` training samples of each class
  in stream order, laid class by class, split into two halves: [(x, y), (x, y)]."""
  classes = int(model.output_shape[-1])
  xs, ys = [[] for _ in range(classes)], [[] for _ in range(classes)]
  seen = 0
  for x, y in batches:
    x, y = np.asarray(x), np.asarray(y).reshape(-1)
    for i, label in enumerate(y):
      if len(ys[label]) < per_class:
        xs[label].append(x[i])
        ys[label].append(label)
    seen += len(y)
    if all(len(c) == per_class for c in ys):
      break
    if seen > 1000 * per_class * classes:
      short = [c for c in range(classes) if len(ys[c]) < per_class]
      raise ConfigError(f"criterion grasp_code needs {per_class} training samples of every "
                        f"class; classes {short} have fewer in {seen} samples")
  x = np.concatenate([np.stack(c) for c in xs])
  y = np.concatenate([np.asarray(c) for c in ys]).astype(np.int64)
  half = len(y) // 2
  return [(x[:half], y[:half]), (x[half:], y[half:])]


def grasp_code(model, context: Context) -> List[np.ndarray]:
  """Wang et al. (2020) as its released code runs it (alecwangcq/GraSP, pruner/GraSP.py): the
  network in training mode (its .eval() is commented out: BatchNorm on batch statistics), each
  Dense kernel re-drawn from xavier_normal (N(0, 2 / (fan_in + fan_out)), seeded) for the
  scoring only, g the sum of the two halves' gradients and Hg the sum of their Hessian-gradient
  products (logits / 200). Returns w * Hg, as `grasp`; the entry's keep rule is the code's.
  Every variable (moving statistics, the classifier) is restored bitwise."""
  kernels = _kernels(model)
  with _restored(model):
    for k in kernels:
      if k.shape.rank == 2:
        fan_in, fan_out = k.shape
        std = np.sqrt(2.0 / (fan_in + fan_out))
        k.assign(context.rng.normal(0.0, std, k.shape).astype(k.dtype.as_numpy_dtype))
    _, g = _summed_gradients(model, context.batches, GRASP_TEMPERATURE, training=True)
    hg = _hessian_gradient(model, kernels, g, context.batches, training=True)
    return [(k * h).numpy().astype(np.float64) for k, h in zip(kernels, hg)]


def synflow(model, context: Context) -> List[np.ndarray]:
  """Tanaka et al. (2020): every variable made |v| (BatchNorm statistics too, as its code
  linearises the whole state), then `rounds` times: R = sum of the output for an all-ones
  input (BatchNorm in inference mode; a batch of two equal rows, the gradient halved), scores
  |dR/dw * w| of the masked weights, and a prune to the next density of an exponential
  schedule from the current density to the target.

  Returns scores whose highest under the current masks are exactly the final round's kept
  weights (the others -inf), so one prune to `density` with them sets SynFlow's masks.
  """
  spec, target, rounds = context.spec, float(context.density), int(context.rounds)
  args = {k: v for k, v in spec.kwargs().items() if k not in ("control", "target")}
  pvars = sparsity._pruning_vars(model)  # pylint: disable=protected-access
  start = sparsity.density(model, spec.keep_dense)
  # Two identical all-ones rows, not one: TF 2.21's oneDNN filter-gradient kernel corrupts
  # memory for a batch of 1 at small widths (a width-4 ResNet-20 aborts the process). Two rows
  # give twice every gradient, halved below; the kernels sum the batch in another order, so a
  # score can move by a rounding (<= 4e-7 relative on the quickstart network), and its
  # SynFlow masks at 0.3, 0.1 and 0.03 are the batch-of-1 masks, bitwise.
  ones = tf.ones([2, *model.input_shape[1:]])
  kernels = [w for w, _, _ in pvars]
  with _restored(model):
    for v in model.variables:
      if v.dtype.is_floating:
        v.assign(tf.abs(v))
    for k in range(1, rounds + 1):
      with tf.GradientTape() as tape:
        r = tf.reduce_sum(tf.cast(model(ones, training=False), tf.float32))
      grads = tape.gradient(r, kernels)
      last = [np.abs((0.5 * g * w).numpy()).astype(np.float64) for g, w in zip(grads, kernels)]
      alive = [m.numpy() for _, m, _ in pvars]
      new = sparsity.new_masks(model, start * (target / start) ** (k / rounds), scores=last,
                               **args)
      for (_, mask, _), m in zip(pvars, new):
        mask.assign(m)
  return [np.where(a > 0, s, -np.inf) for a, s in zip(alive, last)]
