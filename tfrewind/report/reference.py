"""The published results, shipped inside the package (tfrewind/reference/).

Renda et al.'s trials are the CIFAR-10 and ImageNet rows of the study's released
vision/plot/pruned_dataframe.pkl and bases_dataframe.pkl (github
lottery-ticket/rewinding-iclr20-public), as CSV (tfrewind/reference/README.md); GNMT's are left
out.
"""

import os

import pandas as pd

from tfrewind.report import stats

_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "reference")
_STRUCTURES = {"Unstructured": "unstructured", "Structured-A": "structured_a",
               "Structured-B": "structured_b"}


def path(name: str) -> str:
  return os.path.join(_DIR, name)


# The released trials' datasets: file stem -> tfrewind's dataset name.
DATASETS = {"cifar10": "cifar10", "imagenet": "imagenet2012"}


def renda_trials() -> pd.DataFrame:
  frames = []
  for stem, dataset in DATASETS.items():
    df = pd.read_csv(path(f"renda2020_{stem}_trials.csv"))
    df["structure"] = df["structure"].map(_STRUCTURES)
    df["dataset"] = dataset
    frames.append(df)
  return pd.concat(frames, ignore_index=True)


def renda_dense() -> pd.DataFrame:
  return pd.concat([pd.read_csv(path(f"renda2020_{stem}_dense.csv")) for stem in DATASETS],
                   ignore_index=True)


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
