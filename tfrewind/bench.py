"""`tfrewind bench`: throughput of pruned against dense training, interleaved in one process.

  tfrewind bench                                   # CPU: short runs of resnet20, resnet56, wrn16_8
  tfrewind bench --bench_batch=128 --bench_steps=50  # a GPU

Each repeat times, in turn (ABBA), dense tf_keras training, tfrewind training at density
0.2 (masks from a global prune, RewindCallback active) and the input pipeline alone, so that
machine noise hits all three alike. Steps are timed inside fit() by a callback, from one
batch start to the next (fit's own start-up and shut-down are excluded); a repeat's
throughput is batch / its median step, and the table shows min/median/max over repeats.
It also times inference of channel-pruned ResNets masked against `tfrewind.slim`, one whole
quickstart cycle, the global threshold of WRN-16-8, checkpoint save/restore, and relates
dense ResNet-20 to the machine's measured matmul rate.
"""

import os
import statistics
import tempfile
import time
from typing import Dict, List, Tuple

import tensorflow as tf

import tf_keras as keras
from tfrewind import data as data_lib
from tfrewind import macs as flops_lib
from tfrewind import rewind
from tfrewind import store
from tfrewind.models import registry
from tfrewind.pruning import masks as masks_lib
from tfrewind.pruning import schedules, sparsity


class StepTimer(keras.callbacks.Callback):
  """The wall time of every step after `warmup`: from one batch start to the next.

  A step's time so includes every callback's hooks (the RewindCallback's too).
  The median step, not the mean, is what the bench reports: a machine hiccup
  lengthens a few steps, not the median.
  """

  def __init__(self, warmup: int):
    super().__init__()
    self.warmup = warmup
    self.steps: List[float] = []
    self._last = None

  def on_train_batch_begin(self, batch, logs=None):
    now = time.perf_counter()
    if self._last is not None:
      self.steps.append(now - self._last)
    self._last = now if batch >= self.warmup else None

  def on_train_batch_end(self, batch, logs=None):
    if batch >= self.warmup:
      # Keras returns before the step finishes on an accelerator: wait for its result.
      if logs and "loss" in logs:
        float(logs["loss"])


def _compiled(name, pruned):
  model = registry.build_model(name, input_shape=(32, 32, 3))
  callbacks = []
  if pruned:
    model = sparsity.prunable(model)
  model.compile(keras.optimizers.SGD(0.01, momentum=0.9, nesterov=True),
                keras.losses.SparseCategoricalCrossentropy(from_logits=True))
  if pruned:
    callbacks.append(rewind.RewindCallback(
        method="lr_rewind", schedule=schedules.OneShot(0.2), cycle_steps=10**9,
        dense_trained=True, start_step=0, split_fit=True, verbose=0))
  return model, callbacks


def _naive_tfmot(name, batch):
  """TF-MOT's documented recipe: prune_low_magnitude + UpdatePruningStep, for comparison."""
  import tensorflow_model_optimization as tfmot  # pylint: disable=g-import-not-at-top
  schedule = tfmot.sparsity.keras.ConstantSparsity(0.8, begin_step=0, frequency=100)
  model = tfmot.sparsity.keras.prune_low_magnitude(
      registry.build_model(name, input_shape=(32, 32, 3)), pruning_schedule=schedule)
  model.compile(keras.optimizers.SGD(0.01, momentum=0.9, nesterov=True),
                keras.losses.SparseCategoricalCrossentropy(from_logits=True))
  return model, [tfmot.sparsity.keras.UpdatePruningStep()]


def _time_fit(model, callbacks, ds, warmup, steps, batch, pool=None):
  """Images/s of the median step of one fit() of `warmup + steps` steps.

  pool: a list that receives every timed step's seconds.
  """
  timer = StepTimer(warmup)
  model.fit(ds, epochs=1, steps_per_epoch=warmup + steps, verbose=0,
            callbacks=[*callbacks, timer])
  if pool is not None:
    pool.extend(timer.steps)
  return batch / statistics.median(timer.steps)


def _time_pipeline(ds, batches, batch):
  it = iter(ds)
  next(it)
  t0 = time.perf_counter()
  for _ in range(batches):
    next(it)
  return batches * batch / (time.perf_counter() - t0)


def _summary(values: List[float], digits=1) -> str:
  return (f"{min(values):9.{digits}f} {statistics.median(values):9.{digits}f} "
          f"{max(values):9.{digits}f}")


_matmul = tf.function(tf.linalg.matmul)


def matmul_gflops(n=2048, repeats=5) -> float:
  """The machine's measured float32 matmul rate (best of `repeats`)."""
  a = tf.random.normal([n, n])
  b = tf.random.normal([n, n])
  mm = _matmul
  mm(a, b).numpy()
  best = 0.0
  for _ in range(repeats):
    t0 = time.perf_counter()
    mm(a, b).numpy()
    best = max(best, 2 * n ** 3 / (time.perf_counter() - t0) / 1e9)
  return best


def threshold_seconds(name="wrn16_8", repeats=3) -> Tuple[float, int]:
  """(median seconds of one global threshold over all kernels of `name`, kernel weights)."""
  model = registry.build_model(name, input_shape=(32, 32, 3))
  kernels = [k.numpy() for k in registry.prunable_kernels(model)]
  times = []
  for _ in range(repeats):
    t0 = time.perf_counter()
    masks_lib.compute_masks(kernels, 0.2)
    times.append(time.perf_counter() - t0)
  keras.backend.clear_session()
  return statistics.median(times), sum(k.size for k in kernels)


def checkpoint_seconds(name="resnet20", repeats=3):
  model, _ = _compiled(name, pruned=True)
  model.optimizer.build(model.trainable_variables)
  ckpt = tf.train.Checkpoint(model=model, optimizer=model.optimizer)
  saves, restores = [], []
  with tempfile.TemporaryDirectory() as d:
    for i in range(repeats):
      t0 = time.perf_counter()
      path = ckpt.write(os.path.join(d, f"c{i}"))
      saves.append(time.perf_counter() - t0)
      t0 = time.perf_counter()
      ckpt.read(path).assert_existing_objects_matched()
      restores.append(time.perf_counter() - t0)
  keras.backend.clear_session()
  return statistics.median(saves), statistics.median(restores)


def inference_speedups(names=("resnet20", "resnet56"), densities=(0.5, 0.25), batch=128,
                       repeats=4, seconds=0.5,
                       structures=("channel", "channel_group", "channel_group_mean", "n_m")):
  """Inference images/s of pruned networks, masked against what they deploy as, interleaved.

  channel: every conv keeps `density` of its output channels (layerwise), so that each
  layer's width is what the density says; slim removes what it can. channel_group: the
  coupled groups pruned to `density` of the kernel weights (its --density), and again to the
  MACs fraction that channel reached (--target=macs, the row "group@ch MACs"), so that the
  two compare at equal MACs. channel_group_mean: the normalised groups at `density`. n_m: 2:4
  (density unused), against its stripped model: the same shapes, whose zeros only sparse
  kernels could skip. Rows: (network, structure, density, masked, deployed images/s,
  speed-up, MACs ratio, parameters deployed, parameters, kept channels of each residual
  stage: the groups that several convs write).
  """
  from tfrewind.pruning import channels  # pylint: disable=g-import-not-at-top
  from tfrewind.pruning import slim as slim_lib  # pylint: disable=g-import-not-at-top
  from tfrewind.pruning import target as target_lib  # pylint: disable=g-import-not-at-top
  from tfrewind.pruning.spec import PruneSpec  # pylint: disable=g-import-not-at-top
  rows = []
  x = tf.random.stateless_normal([batch, 32, 32, 3], seed=[0, 0])
  variants = [(s, None) for s in structures]
  if "channel" in structures and "channel_group" in structures:
    variants.insert(structures.index("channel_group") + 1, ("channel_group", "macs"))
  for name in names:
    reached = {}
    for structure, target in variants:
      keras.backend.clear_session()
      keras.utils.set_random_seed(0)  # the same network, so the same channels, in every run
      masked = sparsity.prunable(registry.build_model(name, input_shape=(32, 32, 3)),
                                 structure=structure)
      stages = [g for g in channels.groups(masked, strict=False) if len(g.writers) > 1]
      for density in (densities if structure != "n_m" else (0.5,)):
        if structure == "channel":
          sparsity.prune(masked, density, scope="layerwise", structure="channel")
        elif target:
          target_lib.prune(masked, reached[density], PruneSpec(structure=structure,
                                                               target="macs"))
        else:
          sparsity.prune(masked, 0.5 if structure == "n_m" else density, structure=structure)
        small = slim_lib.slim(masked) if structure != "n_m" else sparsity.strip(masked)
        # autograph=False: a lambda's source cannot be parsed back (a warning per row).
        per = _interleaved({k: tf.function(lambda t, m=m: m(t, training=False), autograph=False)
                            for k, m in (("masked", masked), ("slim", small))},
                           x, repeats, seconds)
        counts = flops_lib.flops(masked)
        if structure == "channel":
          reached[density] = counts["pruned_macs"] / counts["dense_macs"]
        plan = channels.plan(masked)
        widths = "/".join(str(int(plan.outputs[g.writers[0]].sum())) for g in stages)
        rows.append((name, "group@ch MACs" if target else structure, density,
                     batch * per["masked"], batch * per["slim"], per["slim"] / per["masked"],
                     counts["dense_macs"] / counts["pruned_macs"], small.count_params(),
                     sparsity.strip(masked).count_params(), widths))
  return rows


_conv = tf.function(lambda x, k: tf.nn.conv2d(x, k, 1, "SAME"))


def conv_rates(widths=(64, 32, 16, 8), batch=128, size=32, repeats=4, seconds=0.3):
  """{width: GMAC/s} of one 3x3 conv, width -> width channels, on batch x size x size: how
  fast this machine runs the thin layers that pruning leaves, against wide ones."""
  fns, macs = {}, {}
  x = {w: tf.random.stateless_normal([batch, size, size, w], seed=[0, w]) for w in widths}
  k = {w: tf.random.stateless_normal([3, 3, w, w], seed=[1, w]) for w in widths}
  for w in widths:
    fns[w] = lambda _, w=w: _conv(x[w], k[w])
    macs[w] = batch * size * size * 9 * w * w
  per = _interleaved(fns, None, repeats, seconds)
  return {w: per[w] * macs[w] / 1e9 for w in widths}


def _interleaved(fns, x, repeats, seconds):
  """{variant: calls per second}, the median call, variants interleaved (ABBA)."""
  for fn in fns.values():
    fn(x).numpy()
  t0 = time.perf_counter()
  next(iter(fns.values()))(x).numpy()
  calls = max(2, int(seconds / (time.perf_counter() - t0)))
  times = {k: [] for k in fns}
  for repeat in range(repeats):
    for variant in (list(fns) if repeat % 2 == 0 else list(fns)[::-1]):
      for _ in range(calls):
        t0 = time.perf_counter()
        fns[variant](x).numpy()
        times[variant].append(time.perf_counter() - t0)
  return {k: 1.0 / statistics.median(v) for k, v in times.items()}


def quickstart_cycle(method="lr_rewind", extra=()):
  """Seconds of one whole one-shot cycle of the quickstart (dense, prune, retrain), or None.

  Runs `tfrewind run --flagfile=flags/quickstart.flags --methods=METHOD` at one density
  (0.1) and one seed in a fresh process and root, as a user would; returns (wall seconds, seconds inside the runs
  from their result.json files, steps). None outside a checkout (no flags/ folder).
  """
  import glob  # pylint: disable=g-import-not-at-top
  import subprocess  # pylint: disable=g-import-not-at-top
  import sys  # pylint: disable=g-import-not-at-top
  flagfile = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "flags",
                          "quickstart.flags")
  if not os.path.exists(flagfile):
    return None
  with tempfile.TemporaryDirectory() as root:
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-m", "tfrewind", "run", f"--flagfile={flagfile}",
                    f"--methods={method}", "--densities=0.1", "--seeds=1", f"--root={root}",
                    "--verbose=0", *extra], check=True,
                   capture_output=True, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
    wall = time.perf_counter() - t0
    results = [store.read_json(p) for p in glob.glob(os.path.join(root, "*", "result.json"))]
  # optimizer.iterations keeps counting through retraining: the branch's count is the total.
  return wall, sum(r["wall_time_s"] for r in results), max(r["steps"] for r in results)


def main(models=("resnet20", "resnet56", "wrn16_8"), repeats=4, steps=6, batch=128,
         dataset="synthetic", warmup=2, inference=("resnet20", "resnet56"),
         quickstart=True, densities=(0.5, 0.25)) -> int:
  from absl import logging  # pylint: disable=g-import-not-at-top
  logging.set_verbosity(logging.WARNING)
  on_gpu = bool(tf.config.list_physical_devices("GPU"))
  arrays = data_lib.load(dataset, synthetic_size=max(2000, batch * 4))
  print(f"tfrewind bench: {'GPU' if on_gpu else 'CPU'}, batch {batch}, at least {steps} timed "
        f"steps after {warmup} warm-up, {repeats} interleaved repeats, data {dataset}")
  print(f"{'network':<10} {'variant':<22} {'min':>9} {'median':>9} {'max':>9}  images/s")
  ratios: Dict[str, float] = {}
  full_batch = batch
  gflops = matmul_gflops()
  for name in models:
    keras.backend.clear_session()
    # WRN-16-8 takes ~4 s per batch-128 step on 2 CPU cores: a smaller batch keeps the
    # whole bench within 5 minutes there. Not smaller than 32: the mask's two elementwise
    # passes over 11M kernel weights (~6 ms each here) are a fixed cost per step, 2% of a
    # batch-16 step, 1% of a batch-32 one, 0.3% at the papers' 128.
    batch = full_batch if on_gpu or name != "wrn16_8" else min(full_batch, 32)
    bundle = data_lib.make(dataset, batch, arrays=arrays)
    dense, dense_cb = _compiled(name, pruned=False)
    pruned, pruned_cb = _compiled(name, pruned=True)
    macs = flops_lib.flops(dense)["dense_macs"]
    # About 1.5 s of timing per variant and repeat, from the FLOP bound: a CPU reaches
    # roughly 60% of it, a GPU is capped at 20x the minimum.
    predicted = 0.6 * gflops * 1e9 / (3 * 2 * macs)
    n = int(min(max(steps, 1.5 * predicted / batch), 20 * steps))
    results = {"dense tf_keras": [], "tfrewind pruned 0.2": [], "input pipeline": []}
    pooled: Dict[str, List[float]] = {}
    bound = []
    for repeat in range(repeats):
      # ABBA order, so that neither variant always runs first.
      order = [("dense tf_keras", dense, dense_cb), ("tfrewind pruned 0.2", pruned, pruned_cb)]
      for variant, model, callbacks in (order if repeat % 2 == 0 else order[::-1]):
        results[variant].append(_time_fit(model, callbacks, bundle.train, warmup, n, batch,
                                          pooled.setdefault(variant, [])))
      results["input pipeline"].append(_time_pipeline(bundle.train, 50, batch))
      if name == "resnet20":
        # Training ~ 3 forward passes of 2 flops per MAC, at the matmul rate measured now.
        bound.append(matmul_gflops(repeats=2) * 1e9 / (3 * 2 * macs))
    assert abs(sparsity.density(pruned) - 0.2) < 1e-3
    for variant, values in results.items():
      print(f"{name:<10} {variant:<22} {_summary(values)}")
    print(f"{name:<10} {'(batch, timed steps)':<22} {batch:>9d} {n:>9d}")
    pairs = [p / d for p, d in zip(results["tfrewind pruned 0.2"], results["dense tf_keras"])]
    pipe = [p / d for p, d in zip(results["input pipeline"], results["dense tf_keras"])]
    # The headline ratio compares the median step over all repeats of each variant: a
    # slow stretch of the machine then moves a few of 30+ steps, not one of 4 pairs.
    ratios[name] = (statistics.median(pooled["dense tf_keras"])
                    / statistics.median(pooled["tfrewind pruned 0.2"]))
    print(f"{name:<10} {'ratio pruned/dense':<22} {_summary(pairs, 3)}  (per repeat; all "
          f"{len(pooled['dense tf_keras'])} steps pooled: {ratios[name]:.3f})")
    print(f"{name:<10} {'ratio pipeline/train':<22} {_summary(pipe, 1)}")
    if name == "resnet20":
      naive = _naive_tfmot(name, batch)
      times = [_time_fit(*naive, bundle.train, warmup, n, batch) for _ in range(2)]
      print(f"{name:<10} {'TF-MOT as documented':<22} {_summary(times)}  (ratio to dense "
            f"{statistics.median(times) / statistics.median(results['dense tf_keras']):.3f})")
    if name == "resnet20":
      share = [m / b for m, b in zip(results["dense tf_keras"], bound)]
      gflops = statistics.median(bound) * 3 * 2 * macs / 1e9
      print(f"resnet20   forward {macs / 1e6:.1f}M MACs/image; matmul {gflops:.1f} GFLOP/s "
            f"-> at most {statistics.median(bound):.0f} images/s; dense training reaches "
            f"{_summary([100 * x for x in share], 0)} % of that bound (min median max)")
  print(f"inference, batch {full_batch}, masked vs deployed (slim; n_m: stripped) interleaved; "
        "images/s from the median call; channel: density per conv (layerwise), "
        "channel_group(_mean): of the kernel weights, group@ch MACs: channel_group at "
        "channel's MACs; MACs: dense / pruned (n_m: the sparse count); stage widths: kept "
        "channels of each residual stage")
  print(f"{'network':<10} {'structure':<18} {'density':>7} {'masked':>9} {'deployed':>9} "
        f"{'speedup':>8} {'MACs':>6} {'of MACs':>8} {'parameters':>21}  stage widths")
  for name, structure, d, m, s, speedup, theory, p_slim, p_all, widths in inference_speedups(
      inference, densities, batch=full_batch, repeats=repeats):
    print(f"{name:<10} {structure:<18} {d:>7.2f} {m:>9.1f} {s:>9.1f} {speedup:>7.2f}x "
          f"{theory:>5.2f}x {speedup / theory:>8.2f} {p_all:>10,} -> {p_slim:>8,}  {widths}")
  if inference:
    rates = conv_rates(batch=full_batch, repeats=repeats)
    print(f"one 3x3 conv at 32x32, batch {full_batch}, w -> w channels: " + ", ".join(
        f"w={w} {r:.1f}" for w, r in rates.items()) + " GMAC/s (thin layers run slower per MAC)")
  cycle = quickstart_cycle() if quickstart else None
  if cycle:
    wall, inside, steps = cycle
    print(f"quickstart one-shot cycle (dense, prune 0.1, lr_rewind; {steps} steps): "
          f"{wall:.1f} s wall in a fresh process, {inside:.1f} s inside the runs")
  seconds, count = threshold_seconds()
  print(f"global threshold of wrn16_8 ({count:,} kernel weights): {seconds:.3f} s")
  save, restore = checkpoint_seconds()
  print(f"checkpoint of resnet20 (model + optimizer): save {save * 1e3:.0f} ms, "
        f"restore {restore * 1e3:.0f} ms")
  print("pruned/dense, median step of all repeats: " + ", ".join(f"{k} {v:.3f}" for k, v in ratios.items()))
  return 0
