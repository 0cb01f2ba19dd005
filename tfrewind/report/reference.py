"""The published results, shipped inside the package (tfrewind/reference/)."""

import os

import pandas as pd

from tfrewind.report import stats

_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "reference")
_STRUCTURES = {"Unstructured": "unstructured", "Structured-A": "structured_a",
               "Structured-B": "structured_b"}


def path(name: str) -> str:
  return os.path.join(_DIR, name)


def renda_trials() -> pd.DataFrame:
  df = pd.read_csv(path("renda2020_cifar10_trials.csv"))
  df["structure"] = df["structure"].map(_STRUCTURES)
  df["dataset"] = "cifar10"
  return df


def renda_dense() -> pd.DataFrame:
  return pd.read_csv(path("renda2020_cifar10_dense.csv"))


def mikler_tables() -> pd.DataFrame:
  return pd.read_csv(path("mikler2021_tables.csv"))


def renda_table() -> pd.DataFrame:
  """Renda et al.'s curves: selection rule applied, median and spread, change vs dense."""
  trials = renda_trials()
  chosen = stats.select_budget(trials)
  dense = renda_dense().groupby("network")["test_acc"].median()
  rows = []
  for key, group in chosen.groupby(stats.KEYS):
    row = dict(zip(stats.KEYS, key))
    row.update(stats.stats(group["test_acc"]), retrain_epochs=int(group["retrain_epochs"].iloc[0]),
               compression=1.0 / row["density"], dense_median=float(dense.get(row["network"])))
    row["change_pt"] = 100 * (row["median"] - row["dense_median"])
    row["change_low_pt"] = 100 * (row["min"] - row["dense_median"])
    row["change_high_pt"] = 100 * (row["max"] - row["dense_median"])
    rows.append(row)
  return pd.DataFrame(rows).sort_values(stats.KEYS).reset_index(drop=True)


def mikler_points() -> pd.DataFrame:
  """Mikler's retrained results (Table 5) with the dense baseline of Table 1: change in points."""
  t = mikler_tables()
  dense = t[t.retraining == "none"].set_index(["network", "dataset"])["test_acc"]
  pruned = t[t.retraining != "none"].copy()
  pruned["method"] = pruned["retraining"]
  pruned["density"] = (1 - pruned["sparsity"]).round(4)
  pruned["compression"] = 1 / pruned["density"]
  pruned["dense_median"] = [dense.get((n, d)) for n, d in zip(pruned.network, pruned.dataset)]
  pruned["change_pt"] = 100 * (pruned["test_acc"] - pruned["dense_median"])
  return pruned
