"""Tables from run folders and from the published results: pure pandas, no training code.

Statistics over seeds (trials): the median, an 80% interval (the 10th and 90th
percentiles, linear interpolation; Mikler reports 80% intervals) and min/max
(Renda's error bars). The selection rule of Renda et al.: for each (network,
structure, schedule, method, density) keep the retraining budget whose median
validation accuracy is highest (ties: the longer budget), and report the
median test accuracy of that budget.
"""

import functools
import glob
import json
import os
from typing import List, Tuple

import numpy as np
import pandas as pd

from tfrewind import hparams as hp_lib
from tfrewind import names
from tfrewind import plan
from tfrewind import registries

from tfrewind.report.stats import RUN_KEYS, select_budget, stats
from tfrewind.errors import ConfigError


def _read(path, counts=None):
  """The JSON in `path`, or None; a file that is there but cannot be read whole (torn or
  damaged) is listed in counts["unreadable"]."""
  try:
    with open(path, encoding="utf-8") as f:
      return json.load(f)
  except (OSError, ValueError):
    if counts is not None and os.path.exists(path):
      counts["unreadable"].append(path)
    return None


METRICS = ("final", "best")


def collect(root: str, metric: str = "final") -> Tuple[pd.DataFrame, pd.DataFrame, dict]:
  """(pruned runs, dense runs, counts) of every finished run folder under `root`.

  metric: "final", the test accuracy at the end of training, or "best", the best
    epoch-end test accuracy (the reproduction's ACC; runs evaluated on a validation set,
    or written before tfrewind kept it, fall back to final and are counted).
  counts: {"finished", "unfinished", "failed": [folder names], "no_best": count}.
  """
  if metric not in METRICS:
    raise ConfigError(f"unknown metric {metric!r}: use final or best")
  rows, dense = [], {}
  counts = {"finished": 0, "unfinished": 0, "failed": [], "no_best": 0, "unreadable": []}
  for folder in sorted(glob.glob(os.path.join(root, "*", ""))):
    name = os.path.basename(os.path.dirname(folder))
    if name.startswith("."):
      continue  # multi-worker copies
    meta = _read(os.path.join(folder, "hparams.json"), counts)
    if meta is None:
      continue
    result = _read(os.path.join(folder, "result.json"), counts)
    if result is None:  # a finished rerun of a failed run counts as finished
      if os.path.exists(os.path.join(folder, "failed.json")):
        counts["failed"].append(name)
      else:
        counts["unfinished"] += 1
      continue
    counts["finished"] += 1
    hp = meta["hparams"]
    accuracy = result["test_accuracy"]
    if metric == "best":
      if result.get("best_test_accuracy") is None:
        counts["no_best"] += 1
      else:
        accuracy = result["best_test_accuracy"]
    row = {"run": name, "network": hp["model"], "dataset": hp["dataset"],
           "structure": hp["structure"], "schedule": hp["schedule"], "seed": hp["seed"],
           "test_acc": accuracy, "val_acc": result.get("val_accuracy"),
           "measured_density": result["density"]}
    if meta["kind"] == "dense":
      dense[name] = row
      continue
    # Another criterion (a random control, SNIP at initialisation, a user's), a control, a
    # scoring step, or a gradual run's budget: each is its own series (hparams.series).
    method = names.series(hp_lib.HParams.from_json(hp), meta.get("total_steps"))
    schedule = registries.SCHEDULES.get(hp["schedule"])
    row["schedule_name"] = hp["schedule"]
    if schedule is not None and schedule.figure:  # a gradual run, in the one-shot figure
      row["schedule"] = schedule.figure
    density = meta["density_target"]
    if density is None:  # structured_a/b: the published density of its level (same counts)
      density = level_density(hp["model"], hp["structure"], hp["level"], result["density"])
    row.update(method=method, density=round(density, 4),
               protocol=hp.get("protocol", "text"),
               round=meta["round"], dense_run=meta.get("dense_run"),
               retrain_epochs=meta.get("steps", 0) / meta.get("epoch_steps", 1),
               total_steps=meta.get("total_steps"),
               flops_speedup=result.get("flops_speedup"),
               # how the MACs were counted: "slim" (what the slim network computes) or
               # "sparse" (theoretical: only sparse kernels skip the zeros); older runs: unknown
               macs_count=result.get("macs_count"),
               stripped_gzip_bytes=result.get("stripped_gzip_bytes"))
    rows.append(row)
  runs = pd.DataFrame(rows)
  dense_df = pd.DataFrame(list(dense.values()))
  if not runs.empty:
    base = {k: v["test_acc"] for k, v in dense.items()}
    runs["dense_acc"] = runs["dense_run"].map(base)
    # A gradual run of a budget no dense network was trained for (--train_budgets): the one
    # dense network of its network, dataset and seed, where there is exactly one.
    alone = {}
    for v in dense.values():
      alone.setdefault((v["network"], v["dataset"], v["seed"]), []).append(v["test_acc"])
    missing = runs["dense_acc"].isna() & runs["schedule_name"].map(
        lambda s: bool(registries.SCHEDULES.get(s) and registries.SCHEDULES[s].from_scratch))
    for i in runs.index[missing]:
      found = alone.get((runs.at[i, "network"], runs.at[i, "dataset"], runs.at[i, "seed"]), [])
      if len(found) == 1:
        runs.at[i, "dense_acc"] = found[0]
  runs = runs.drop(columns=["schedule_name"], errors="ignore")
  return runs, dense_df, counts


def level_density(network: str, structure: str, level: int, measured: float) -> float:
  """The density on the published axis of a structured_a/b level: Renda et al.'s released
  trials have five levels, whose densities are the released ones in decreasing order
  (they count the next conv's inputs of a removed filter as removed, Li et al.'s count).
  A level they did not release keeps the run's own measured density."""
  published = _published_levels().get((network, structure), ())
  return float(published[level - 1]) if 1 <= level <= len(published) else float(measured)


@functools.lru_cache(maxsize=1)
def _published_levels():
  from tfrewind.report import reference  # pylint: disable=g-import-not-at-top
  trials = reference.renda_trials()
  return {key: tuple(sorted(group["density"].unique(), reverse=True))
          for key, group in trials.groupby(["network", "structure"])}


def summarize(runs: pd.DataFrame) -> pd.DataFrame:
  """One row per setting: median, 80% interval, min/max over seeds, change vs dense."""
  if runs.empty:
    return pd.DataFrame()
  chosen = select_budget(runs, keys=RUN_KEYS)
  out = []
  for key, group in chosen.groupby(RUN_KEYS, dropna=False):
    row = dict(zip(RUN_KEYS, key))
    s = stats(group["test_acc"])
    dense = stats(group["dense_acc"].dropna()) if group["dense_acc"].notna().any() else None
    row.update(s, compression=1.0 / row["density"], sparsity=1.0 - row["density"],
               retrain_epochs=float(group["retrain_epochs"].iloc[0]),
               total_steps=group["total_steps"].max() if "total_steps" in group else np.nan,
               seeds=",".join(str(x) for x in sorted(group["seed"])),
               flops_speedup=float(group["flops_speedup"].median())
               if group["flops_speedup"].notna().any() else np.nan,
               macs_count=",".join(sorted(set(group["macs_count"].dropna())))
               if "macs_count" in group else "",
               dense_median=dense["median"] if dense else np.nan)
    row["change_pt"] = 100 * (row["median"] - row["dense_median"])
    # The figures' bars: min-max over trials, as the published curves beside them
    # (reference.renda_table); the tables and claims use the 80% interval.
    row["change_low_pt"] = 100 * (row["min"] - row["dense_median"])
    row["change_high_pt"] = 100 * (row["max"] - row["dense_median"])
    out.append(row)
  return pd.DataFrame(out).sort_values(RUN_KEYS).reset_index(drop=True)


def claims(table: pd.DataFrame) -> str:
  """The papers' claims for one figure's table, judged with the 80% intervals.

  "clearly below": the whole interval lies below the other's. "matches or beats": the
  intervals overlap or the first is clearly above.
  """
  pivot = {m: g.set_index("density") for m, g in table.groupby("method")}
  parts = []
  if {"finetune", "weight_rewind", "lr_rewind"} <= set(pivot):
    ft, wr, lr = pivot["finetune"], pivot["weight_rewind"], pivot["lr_rewind"]
    shared = sorted(set(ft.index) & set(wr.index) & set(lr.index), reverse=True)
    below = sum(ft.loc[d, "median"] < min(wr.loc[d, "median"], lr.loc[d, "median"])
                for d in shared)
    clearly = sum(ft.loc[d, "high80"] < min(wr.loc[d, "low80"], lr.loc[d, "low80"])
                  for d in shared)
    parts.append(f"fine-tuning below both rewinding methods at {below}/{len(shared)} densities "
                 f"(clearly, intervals apart, at {clearly})")
  if {"weight_rewind", "lr_rewind"} <= set(pivot):
    wr, lr = pivot["weight_rewind"], pivot["lr_rewind"]
    shared = sorted(set(wr.index) & set(lr.index), reverse=True)
    ok = [d for d in shared if lr.loc[d, "high80"] >= wr.loc[d, "low80"]]
    worse = [f"{d:.3g}" for d in shared if d not in ok]
    parts.append(f"LR rewinding matches or beats weight rewinding at {len(ok)}/{len(shared)}"
                 + (f" (clearly worse at density {', '.join(worse)})" if worse else ""))
  # Retraining the trained weights with a large LR: the claim of Renda et al. and of Le & Hua.
  large = [m for m, e in plan.METHODS.items() if e.family == "large_lr" and m in pivot]
  if "finetune" in pivot and large:
    ft = pivot["finetune"]
    shared = sorted(set(ft.index) & set().union(*(pivot[m].index for m in large)), reverse=True)
    beats = [d for d in shared
             if max(pivot[m].loc[d, "median"] for m in large if d in pivot[m].index)
             > ft.loc[d, "median"]]
    every = "at every density" if len(beats) == len(shared) else "not at every density"
    parts.append(f"a large-LR schedule ({'/'.join(large)}) beats fine-tuning {every} "
                 f"({len(beats)}/{len(shared)}, best median)")
  if parts and "trials" in table and (table["trials"] < 2).any():
    parts.append("a single seed somewhere: its interval is a point, so 'clearly' means little")
  return "; ".join(parts) if parts else "too few methods for the papers' claims"


def figure_groups(table: pd.DataFrame) -> List[Tuple[tuple, pd.DataFrame]]:
  """One figure per (network, dataset, schedule, structure, protocol): keys of 5, the
  protocol "text" for a table without one (the published curves)."""
  if table.empty:
    return []
  keys = ["network", "dataset", "schedule", "structure"]
  if "protocol" not in table:
    return [(key + ("text",), g) for key, g in table.groupby(keys)]
  return list(table.groupby(keys + ["protocol"]))


def barrier_table(barriers: pd.DataFrame) -> str:
  """Markdown: the median barrier (points) over seeds, one row per density, one column per K."""
  pivot = barriers.pivot_table(index="density", columns="rewind_step", values="barrier_pt",
                               aggfunc="median").sort_index(ascending=False)
  head = "| density | " + " | ".join(f"K={k}" for k in pivot.columns) + " |"
  lines = [head, "|" + "---|" * (len(pivot.columns) + 1)]
  for density, row in pivot.iterrows():
    lines.append(f"| {density:.4g} | " + " | ".join(f"{v:.2f}" for v in row) + " |")
  return "\n".join(lines)


def earliest_stable(barriers: pd.DataFrame) -> str:
  """One line: per density, the earliest rewind step at which every seed is stable."""
  parts = []
  for density, group in sorted(barriers.groupby("density"), key=lambda g: -g[0]):
    steps = group.groupby("rewind_step")
    stable = [k for k, g in steps if bool(g["stable"].all())]
    if stable:
      parts.append(f"density {density:.4g}: K={min(stable)}")
    else:
      medians = steps["barrier_pt"].median()
      parts.append(f"density {density:.4g}: none up to K={max(medians.index)} (lowest median "
                   f"barrier {medians.min():.2f} pt at K={medians.idxmin()})")
  return "earliest stable rewind step (every seed): " + "; ".join(parts)
