"""The report: exact aggregation over fake run folders, files written, reference overlay."""

import json
import os

import numpy as np
import pandas as pd
import pytest

from tfrewind.report import figures, aggregate, reference
from tfrewind.report import cli as report_cli


def _run(root, name, kind, method=None, density=1.0, seed=1, acc=0.9, val=None, steps=100,
         epoch_steps=10, dense_run=None, failed=False, finished=True, model="resnet20",
         best=None):
  d = os.path.join(root, name)
  os.makedirs(d)
  hp = {"model": model, "dataset": "cifar10", "structure": "unstructured",
        "schedule": "one_shot", "seed": seed, "method": method or "lr_rewind"}
  meta = {"kind": kind, "round": 1 if kind == "prune" else 0, "hparams": hp,
          "density_target": density, "dense_run": dense_run, "steps": steps,
          "epoch_steps": epoch_steps}
  with open(os.path.join(d, "hparams.json"), "w") as f:
    json.dump(meta, f)
  if failed:
    with open(os.path.join(d, "failed.json"), "w") as f:
      json.dump({"reason": "loss became NaN or Inf", "step": 5}, f)
  elif finished:
    with open(os.path.join(d, "result.json"), "w") as f:
      json.dump({"test_accuracy": acc, "val_accuracy": val, "density": density,
                 "kind": kind, **({"best_test_accuracy": best} if best is not None else {})},
                f)


@pytest.fixture
def root(tmp_path):
  r = str(tmp_path / "runs")
  dense_acc = {1: 0.92, 2: 0.93, 3: 0.94}
  for seed, acc in dense_acc.items():
    _run(r, f"dense_s{seed}", "dense", seed=seed, acc=acc)
  accs = {"finetune": [0.90, 0.91, 0.95], "weight_rewind": [0.92, 0.93, 0.97],
          "lr_rewind": [0.93, 0.94, 0.96]}
  for method, values in accs.items():
    for seed, acc in zip((1, 2, 3), values):
      _run(r, f"{method}_s{seed}", "prune", method, 0.1074, seed, acc, dense_run=f"dense_s{seed}")
  _run(r, "unfinished", "prune", "lr_rewind", 0.2, finished=False, dense_run="dense_s1")
  _run(r, "diverged", "prune", "lr_rewind", 0.2, failed=True, dense_run="dense_s1")
  return r


def test_aggregation_is_exact(root):
  runs, dense, counts = aggregate.collect(root)
  assert counts == {"finished": 12, "unfinished": 1, "failed": ["diverged"], "no_best": 0,
                    "unreadable": []}
  assert len(dense) == 3 and len(runs) == 9
  table = aggregate.summarize(runs).set_index("method")
  ft = table.loc["finetune"]
  assert ft["median"] == 0.91 and ft["min"] == 0.90 and ft["max"] == 0.95 and ft["trials"] == 3
  assert ft["low80"] == pytest.approx(np.percentile([0.90, 0.91, 0.95], 10))
  assert ft["high80"] == pytest.approx(0.91 + 0.8 * 0.04)
  assert ft["dense_median"] == 0.93 and ft["change_pt"] == pytest.approx(-2.0)
  assert ft["compression"] == pytest.approx(1 / 0.1074) and ft["seeds"] == "1,2,3"
  assert table.loc["lr_rewind", "change_pt"] == pytest.approx(1.0)


def test_the_macs_axis_says_whether_its_count_is_theoretical(root):
  """result.json's macs_count reaches the table and names the speed-up axis: a slim network's
  MACs (channel structures) or a theoretical count (unstructured, N:M)."""
  for name in os.listdir(root):
    path = os.path.join(root, name, "result.json")
    if name.startswith("lr_rewind") and os.path.exists(path):
      result = json.load(open(path))
      json.dump({**result, "macs_count": "sparse", "flops_theoretical": True}, open(path, "w"))
  runs, _, _ = aggregate.collect(root)
  table = aggregate.summarize(runs).set_index("method")
  assert table.loc["lr_rewind", "macs_count"] == "sparse"
  assert table.loc["finetune", "macs_count"] == ""  # written before the count was recorded
  sparse = table.loc[["lr_rewind"]].reset_index()
  assert "theoretical: sparse kernels" in figures.speedup_label(sparse)
  sparse["macs_count"] = "slim"
  assert "the slim network's MACs" in figures.speedup_label(sparse)
  sparse["macs_count"] = "slim,sparse"
  assert "theoretical where unstructured or N:M" in figures.speedup_label(sparse)


def test_selection_rule_picks_the_budget_with_best_median_validation():
  df = pd.DataFrame({
      "network": "n", "dataset": "d", "structure": "s", "schedule": "o", "method": "m",
      "density": 0.5, "retrain_epochs": [10, 10, 10, 40, 40, 40],
      "val_acc": [0.80, 0.95, 0.81, 0.90, 0.90, 0.70],  # medians: 0.81 vs 0.90
      "test_acc": [0.1, 0.2, 0.3, 0.4, 0.5, 0.6]})
  chosen = aggregate.select_budget(df)
  assert sorted(chosen["retrain_epochs"]) == [40, 40, 40]
  assert aggregate.stats(chosen["test_acc"])["median"] == 0.5


def test_published_table_applies_renda_selection_rule_exactly():
  trials = reference.renda_trials()
  sel = trials[(trials.network == "resnet56") & (trials.schedule == "one_shot")
               & (trials.structure == "unstructured") & (trials.method == "lr_rewind")
               & (trials.density == 0.1074)]
  medians = sel.groupby("retrain_epochs")["val_acc"].median()
  best = medians[medians == medians.max()].index.max()
  expected = float(np.median(sel[sel.retrain_epochs == best]["test_acc"]))
  table = reference.renda_table()
  row = table[(table.network == "resnet56") & (table.schedule == "one_shot")
              & (table.structure == "unstructured") & (table.method == "lr_rewind")
              & (table.density == 0.1074)].iloc[0]
  assert row["retrain_epochs"] == best and row["median"] == expected
  mikler = reference.mikler_points()
  lr = mikler[mikler.method == "lr_rewind"].iloc[0]
  assert lr["density"] == 0.107 and lr["change_pt"] == pytest.approx(100 * (0.9374 - 0.9429))


def test_report_writes_tables_and_figures_and_says_what_it_excluded(root, tmp_path, capsys):
  out = str(tmp_path / "report")
  assert report_cli.main(root, out) == 0
  for name in ("results.csv", "report.md", "resnet20_cifar10_one_shot_unstructured.png",
               "resnet20_cifar10_one_shot_unstructured.svg"):
    assert os.path.getsize(os.path.join(out, name)) > 0, name
  md = open(os.path.join(out, "report.md")).read()
  assert "1 unfinished ignored" in md and "1 failed excluded (diverged)" in md
  assert "fine-tuning below both rewinding methods at 1/1" in md
  assert "LR rewinding matches or beats weight rewinding at 1/1" in md
  csv = pd.read_csv(os.path.join(out, "results.csv"))
  assert len(csv) == 3 and set(csv["method"]) == {"finetune", "weight_rewind", "lr_rewind"}
  published = csv.set_index("method")["published_change_pt"]
  assert published.notna().all()  # resnet20 at 0.1074 is in Renda's released trials
  diff = csv.set_index("method")["diff_vs_published_pt"]
  assert diff["lr_rewind"] == pytest.approx(1.0 - published["lr_rewind"])
  assert "1 failed excluded" in capsys.readouterr().out


@pytest.mark.slow
def test_reference_only_draws_every_published_curve(tmp_path):
  out = str(tmp_path / "ref")
  assert report_cli.main("unused", out, reference_only=True) == 0
  pngs = [f for f in os.listdir(out) if f.endswith(".png")]
  # CIFAR-10: 3 networks x (one-shot, iterative) + 4 structured settings; ImageNet: ResNet-50
  # one-shot and iterative, ResNet-34 structured A and B
  assert len(pngs) == 14
  assert {"resnet50_imagenet2012_one_shot_unstructured_published.png",
          "resnet50_imagenet2012_iterative_unstructured_published.png",
          "resnet34_imagenet2012_one_shot_structured_a_published.png",
          "resnet34_imagenet2012_one_shot_structured_b_published.png"} <= set(pngs)
  assert os.path.exists(os.path.join(out, "published.csv"))


def test_claims_use_intervals():
  t = pd.DataFrame({"method": ["finetune", "weight_rewind", "lr_rewind"], "density": 0.2,
                    "median": [0.90, 0.92, 0.80], "low80": [0.89, 0.91, 0.70],
                    "high80": [0.91, 0.93, 0.85]})
  text = aggregate.claims(t)
  assert "below both rewinding methods at 0/1" in text
  assert "LR rewinding matches or beats weight rewinding at 0/1 (clearly worse at density 0.2)" in text


def test_metric_best_takes_the_best_epoch_end_test_accuracy_and_counts_runs_without_it(tmp_path):
  r = str(tmp_path / "runs")
  _run(r, "dense_s1", "dense", acc=0.90, best=0.92)
  _run(r, "ft_s1", "prune", "finetune", 0.1, 1, acc=0.80, best=0.85, dense_run="dense_s1")
  _run(r, "wr_s1", "prune", "weight_rewind", 0.1, 1, acc=0.88, dense_run="dense_s1")  # no best
  runs, dense, counts = aggregate.collect(r, metric="best")
  assert dense.test_acc.tolist() == [0.92] and counts["no_best"] == 1
  assert dict(zip(runs.method, runs.test_acc)) == {"finetune": 0.85, "weight_rewind": 0.88}
  final, _, _ = aggregate.collect(r)
  assert dict(zip(final.method, final.test_acc)) == {"finetune": 0.80, "weight_rewind": 0.88}
  with pytest.raises(ValueError, match="unknown metric"):
    aggregate.collect(r, metric="median")
  out = str(tmp_path / "report")
  assert report_cli.main(r, out, metric="best") == 0
  md = open(os.path.join(out, "report.md")).read()
  assert "best epoch-end test accuracy (--metric=best" in md and "1 runs without it" in md


def test_a_damaged_result_or_hparams_file_is_skipped_with_one_line(root, tmp_path, capsys):
  results_path = os.path.join(root, "finetune_s1", "result.json")
  hparams_path = os.path.join(root, "lr_rewind_s2", "hparams.json")
  for path in (results_path, hparams_path):
    with open(path, "r+b") as f:
      f.truncate(os.path.getsize(path) // 2)
  assert report_cli.main(root, str(tmp_path / "rep")) == 0
  out = capsys.readouterr().out
  skipped = [l for l in out.splitlines() if l.startswith("skipped ")]
  assert skipped == [f"skipped {p}: it cannot be read whole; tfrewind run sets it aside and "
                     f"redoes that run" for p in sorted((hparams_path, results_path))], out
  assert "10 finished runs, 2 unfinished ignored, 1 failed excluded" in out
