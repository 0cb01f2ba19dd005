"""The statistics the report shares with the published reference: settings' keys, median and
intervals over trials, and Renda et al.'s budget selection. Pure pandas; imports nothing of
the report, so that aggregate and reference both build on it."""

import numpy as np
import pandas as pd

KEYS = ["network", "dataset", "structure", "schedule", "method", "density"]
# Our runs also differ by protocol (tfrewind.protocols): never pooled across protocols.
RUN_KEYS = KEYS + ["protocol"]


def stats(values) -> dict:
  v = np.asarray(values, dtype=float)
  return {"trials": len(v), "median": float(np.median(v)), "low80": float(np.percentile(v, 10)),
          "high80": float(np.percentile(v, 90)), "min": float(v.min()), "max": float(v.max())}


def select_budget(df: pd.DataFrame, keys=KEYS) -> pd.DataFrame:
  """Renda's rule: per `keys`, the rows of the budget with the best median val_acc."""
  if "retrain_epochs" not in df or df["retrain_epochs"].nunique() <= 1 or df["val_acc"].isna().all():
    return df
  med = df.groupby(keys + ["retrain_epochs"], dropna=False)["val_acc"].median().reset_index()
  med = med.sort_values(keys + ["val_acc", "retrain_epochs"])
  best = med.groupby(keys, dropna=False).tail(1)[keys + ["retrain_epochs"]]
  return df.merge(best, on=keys + ["retrain_epochs"])
