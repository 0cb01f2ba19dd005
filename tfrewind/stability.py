"""`tfrewind stability`: at which rewind step K is a (pruned) network stable to SGD noise?

  tfrewind stability --flagfile=flags/quickstart.flags --rewind_steps=0,30,100it \
      --densities=1.0,0.1 --seeds=1,2 --alphas=30 --out=runs/stability

Instability analysis (Frankle, Dziugaite, Roy & Carbin, ICML 2020). For a density d (1.0:
dense), a rewind step K and a seed s: copy A is the weight-rewinding run of (d, K, s), i.e. the
dense run's step-K weights under the mask of density d from its final weights, trained to step
N with the LR schedule resumed at K; copy B is the same run with another data order and
augmentation (`data_order=1`). Both are ordinary run folders of the root, reused and resumed
like every run. Along theta(alpha) = (1 - alpha) theta_A + alpha theta_B, BatchNorm statistics
are re-estimated on `--bn_batches` fixed training batches without augmentation (or, with
`--bn=interpolate`, interpolated like the weights), and the test accuracy is measured.
barrier_pt = 100 * (mean(acc(0), acc(1)) - min acc(alpha)); stable: barrier_pt < 2.

Writes OUT/stability.csv (density, rewind_step, seed, alpha, test_accuracy), OUT/barriers.csv
(density, rewind_step, seed, barrier_pt, stable), OUT/accuracy_d<density>.png per density,
OUT/barriers.png, and OUT/summary.md with the earliest stable K per density. `tfrewind
report` adds a stability folder found under its root to the report.
"""

import dataclasses
import os
from typing import List, Sequence

import numpy as np
import pandas as pd

from tfrewind import connectivity
from tfrewind import data as data_lib
from tfrewind import hparams as hp_lib
from tfrewind import store
from tfrewind.sweep import copies  # noqa: F401  (the A/B pair of a setting)
from tfrewind import training
from tfrewind.report import aggregate, figures

STABLE_BELOW_PT = 2.0  # Frankle et al.: stable when the error barrier is under 2 points


def bn_batches(arrays: data_lib.Arrays, batch_size: int, count: int, mean, std):
  """`count` fixed batches of training images, standardised, not augmented."""
  order = np.random.default_rng(0).permutation(len(arrays.train_x))[:count * batch_size]
  ds = data_lib.eval_pipeline(arrays.train_x[order], arrays.train_y[order], batch_size, mean,
                              std)
  return list(ds.take(count))


def path_accuracies(hp: hp_lib.HParams, a: store.RunPaths, b: store.RunPaths,
                    alphas: Sequence[float], bundle: data_lib.Bundle, batches, bn: str,
                    env: training.Env) -> List[float]:
  """Test accuracy of theta(alpha) for every alpha, between the final models of runs a and b."""
  model_a = training.load_final(hp, a, env)
  model_b = training.load_final(hp, b, env)
  path = training.load_final(hp, a, env)
  out = []
  for alpha in alphas:
    connectivity.interpolate(model_a, model_b, alpha, into=path,
                             statistics="interpolate" if bn == "interpolate" else "keep")
    if bn == "reestimate":
      connectivity.reestimate_batchnorm(path, batches)
    out.append(float(path.evaluate(bundle.test, verbose=0, return_dict=True)["accuracy"]))
  return out


def analyse(runner, base: hp_lib.HParams, densities: Sequence[float],
            rewind_steps: Sequence[int], seeds: Sequence[int], n_alphas: int = 30,
            bn: str = "reestimate", n_bn_batches: int = 20,
            stable_below: float = STABLE_BELOW_PT):
  """(stability table, barrier table), training every copy that the root lacks."""
  alphas = connectivity.alphas(n_alphas)
  rows, barriers = [], []
  for seed in seeds:
    for density in densities:
      for step in rewind_steps:
        hp_a, hp_b = copies(dataclasses.replace(base, seed=seed), density, step)
        a, b = runner.branch(hp_a), runner.branch(hp_b)
        bundle = runner.data(hp_a, 1, 0)
        batches = bn_batches(runner.arrays(hp_a), hp_a.batch_size, n_bn_batches, bundle.mean,
                             bundle.std) if bn == "reestimate" else None
        accs = path_accuracies(hp_a, a, b, alphas, bundle, batches, bn, runner.env)
        rows += [{"density": density, "rewind_step": step, "seed": seed, "alpha": float(x),
                  "test_accuracy": acc} for x, acc in zip(alphas, accs)]
        pt = connectivity.barrier(accs)
        barriers.append({"density": density, "rewind_step": step, "seed": seed,
                         "barrier_pt": pt, "stable": pt < stable_below})
        print(f"density {density:.4g} K={step} seed {seed}: barrier {pt:.2f} pt "
              f"({'stable' if pt < stable_below else 'unstable'})", flush=True)
  return pd.DataFrame(rows), pd.DataFrame(barriers)


def write(out: str, stability: pd.DataFrame, barriers: pd.DataFrame) -> str:
  """Writes the CSVs, figures and summary.md (each file atomically); returns the summary line."""
  os.makedirs(out, exist_ok=True)
  store.atomic_write(os.path.join(out, "stability.csv"), stability.to_csv(index=False).encode())
  store.atomic_write(os.path.join(out, "barriers.csv"), barriers.to_csv(index=False).encode())
  figures.draw_stability(stability, barriers, out)
  line = aggregate.earliest_stable(barriers)
  table = aggregate.barrier_table(barriers)
  store.atomic_write(os.path.join(out, "summary.md"), (
      f"# Instability analysis\n\n{line}\n\nMedian barrier (points) over seeds, density x rewind "
      f"step:\n\n{table}\n").encode())
  return line
