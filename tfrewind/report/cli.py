"""`tfrewind report --root=runs --out=report`: did we reproduce it?

Writes results.csv (one row per setting), report.md (tables, claims, figures) and one figure
per (network, dataset, schedule, structure) as PNG and SVG, with the published curves beside
ours; `--reference_only` draws the published curves alone.
"""

import glob
import os
import shutil

import pandas as pd

from tfrewind.report import aggregate, figures, reference
from tfrewind.store import atomic_write

COLUMNS = ["network", "dataset", "structure", "schedule", "protocol", "method", "density",
           "compression",
           "flops_speedup", "macs_count",
           "retrain_epochs", "total_steps", "trials", "seeds", "median", "low80", "high80", "min", "max",
           "dense_median", "change_pt", "published_median", "published_change_pt",
           "diff_vs_published_pt"]


def _with_reference(table, ref):
  if table.empty:
    return table
  keys = ["network", "dataset", "structure", "schedule", "method", "density"]
  r = ref[keys + ["median", "change_pt"]].rename(
      columns={"median": "published_median", "change_pt": "published_change_pt"})
  merged = table.merge(r, on=keys, how="left")
  merged["diff_vs_published_pt"] = merged["change_pt"] - merged["published_change_pt"]
  return merged


def _md_table(df, columns):
  fmt = lambda v: (f"{v:.4g}" if isinstance(v, float) else str(v))  # noqa: E731
  lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
  for _, row in df.iterrows():
    lines.append("| " + " | ".join("" if pd.isna(row.get(c)) else fmt(row.get(c))
                                   for c in columns) + " |")
  return "\n".join(lines)


def _stability_section(folder: str, out: str):
  """A `tfrewind stability` folder under the root: its summary line, table and figures."""
  name = os.path.basename(folder)
  barriers = pd.read_csv(os.path.join(folder, "barriers.csv"))
  md = [f"## Instability analysis ({name})", "", aggregate.earliest_stable(barriers) + ".", "",
        "Median barrier (points) over seeds:", "", aggregate.barrier_table(barriers), ""]
  for png in sorted(glob.glob(os.path.join(folder, "*.png"))):
    target = f"{name}_{os.path.basename(png)}"
    shutil.copyfile(png, os.path.join(out, target))
    md.append(f"![]({target})")
  return md + [""]


def main(root: str, out: str, reference_only: bool = False, metric: str = "final") -> int:
  ref = reference.renda_table()
  mikler = reference.mikler_points()
  md = ["# tfrewind report", ""]
  files = []
  if reference_only:
    os.makedirs(out, exist_ok=True)
    md += ["Published curves only (Renda et al. 2020, released trials, selection rule applied; "
           "stars: Mikler 2021 Table 5).", ""]
    for (net, data, sched, struct, _), group in aggregate.figure_groups(ref):
      stem = os.path.join(out, f"{net}_{data}_{sched}_{struct}_published")
      points = mikler[(mikler.network == net) & (mikler.dataset == data)] if (
          sched == "one_shot" and struct == "unstructured") else None
      files += figures.draw(f"{net} {data} {sched} {struct} (published)", None, group, stem,
                            points)
      md += [f"## {net} · {data} · {sched} · {struct}", "", f"![]({os.path.basename(stem)}.png)",
             ""]
    ref.to_csv(os.path.join(out, "published.csv"), index=False)
    atomic_write(os.path.join(out, "report.md"), ("\n".join(md) + "\n").encode())
    print(f"wrote {len(files) // 2} published figures and report.md to {out}/")
    return 0

  runs, dense, counts = aggregate.collect(root, metric)
  for path in counts["unreadable"]:
    print(f"skipped {path}: it cannot be read whole; tfrewind run sets it aside and redoes "
          f"that run")
  if not (counts["finished"] or counts["unfinished"] or counts["failed"]):
    print(f"no run folders under {root}: nothing to report (tfrewind run --root={root} "
          f"writes them)")
    return 0
  os.makedirs(out, exist_ok=True)
  table = _with_reference(aggregate.summarize(runs), ref)
  md.append(f"Root `{root}`: {counts['finished']} finished runs ({len(dense)} dense); "
            f"{counts['unfinished']} unfinished ignored; {len(counts['failed'])} failed excluded"
            + (f" ({', '.join(counts['failed'])})" if counts["failed"] else "") + ".")
  md += ["", "Accuracy: " + (
      "the final test accuracy (--metric=final)." if metric == "final" else
      "the best epoch-end test accuracy (--metric=best, the reproduction's reported ACC)"
      + (f"; {counts['no_best']} runs without it (evaluated on a validation set, or older) use "
         f"their final accuracy." if counts["no_best"] else "."))]
  md += ["", "Median over seeds; 80% interval = 10th-90th percentile; change in points vs the "
         "median dense network of the same seeds. Published: Renda et al. (2020) medians after "
         "their selection rule; diff = our change minus theirs.", ""]
  if not dense.empty:
    md += ["## Dense networks", "", _md_table(
        dense.groupby(["network", "dataset"])["test_acc"].agg(["count", "median", "min", "max"])
        .reset_index(), ["network", "dataset", "count", "median", "min", "max"]), ""]
  for (net, data, sched, struct, protocol), group in aggregate.figure_groups(table):
    # The default protocol keeps the plain names; another one is named in files and titles.
    tag = "" if protocol == "text" else f"_{protocol}"
    stem = os.path.join(out, f"{net}_{data}_{sched}_{struct}{tag}")
    theirs = ref[(ref.network == net) & (ref.dataset == data) & (ref.schedule == sched)
                 & (ref.structure == struct)]
    points = mikler[(mikler.network == net) & (mikler.dataset == data)] if (
        sched == "one_shot" and struct == "unstructured") else None
    title = f"{net} {data} {sched} {struct}" + (f" ({protocol})" if tag else "")
    files += figures.draw(title, group, theirs, stem, points)
    files += figures.draw(title, group, None, stem + "_speedup", x="flops_speedup")
    md += [f"## {net} · {data} · {sched} · {struct}" + (f" · protocol {protocol}" if tag else ""),
           "",
           f"**Claims:** {aggregate.claims(group)}.", "", f"![]({os.path.basename(stem)}.png)",
           f"![]({os.path.basename(stem)}_speedup.png)",
           "", _md_table(group, ["method", "density", "compression", "total_steps", "trials",
                                 "median", "low80",
                                 "high80", "min", "max", "change_pt", "flops_speedup", "macs_count",
                                 "published_change_pt",
                                 "diff_vs_published_pt"]), ""]
  for folder in sorted(glob.glob(os.path.join(root, "*", "barriers.csv"))):
    md += _stability_section(os.path.dirname(folder), out)
  csv = table.reindex(columns=COLUMNS).to_csv(index=False) if not table.empty else (
      ",".join(COLUMNS) + "\n")
  atomic_write(os.path.join(out, "results.csv"), csv.encode())
  atomic_write(os.path.join(out, "report.md"), ("\n".join(md) + "\n").encode())
  print(f"{counts['finished']} finished runs, {counts['unfinished']} unfinished ignored, "
        f"{len(counts['failed'])} failed excluded")
  print(f"wrote results.csv, report.md and {len(files) // 2} figures to {out}/")
  return 0
