"""The papers' figure: accuracy change versus compression ratio, one line per method."""

import os
import re
import zlib

import matplotlib
import matplotlib.ticker

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  pylint: disable=wrong-import-position

from tfrewind import plan  # noqa: E402  pylint: disable=wrong-import-position
from tfrewind import registries  # noqa: E402  pylint: disable=wrong-import-position

def style(series: str):
  """(label, colour, dashed) of a series (tfrewind.hparams.series): a method of
  tfrewind.plan.METHODS, with the criterion, control and scoring step that name it apart
  (controls: grey, dashed), or a gradual run, `gradual@<total steps>`."""
  if "@" in series:
    name, steps = series.split("@", 1)
    entry = registries.SCHEDULES.get(name)
    # Budgets of one schedule apart by colour (a stable pick, not Python's salted hash).
    colour = ("black", "saddlebrown", "darkslateblue", "darkgreen")[zlib.crc32(steps.encode()) % 4]
    return f"{entry.label if entry else name}, {steps} steps", colour, False
  if series in plan.METHODS:
    m = plan.METHODS[series]
    return m.label or m.name, m.colour, False
  for name in sorted(plan.METHODS, key=len, reverse=True):
    if series.startswith(name + "_"):
      m = plan.METHODS[name]
      labels, colour, control = _parts(series[len(name) + 1:])
      return f"{m.label or m.name} ({', '.join(labels)})", colour or (
          "grey" if control else m.colour), True
  return series, "black", False


def _parts(rest: str):
  """(labels, colour, is a control) of a series' suffix: criteria, controls, fromSTEP."""
  labels, colour, control = [], "", False
  while rest:
    for table in (registries.CRITERIA, registries.CONTROLS):
      hit = max((k for k in table if rest == k or rest.startswith(k + "_")), key=len, default=None)
      if hit:
        entry = table[hit]
        labels.append(entry.label)
        control |= table is registries.CONTROLS or entry.control
        colour = entry.colour or colour
        rest = rest[len(hit) + 1:]
        break
    else:
      step = re.match(r"from(\d+)(?:_|$)", rest)
      if step is None:
        return labels + [rest], colour, True  # a name this version does not know
      labels.append("at initialisation" if step.group(1) == "0" else
                    f"scored at step {step.group(1)}")
      rest = rest[step.end():]
  return labels, colour, control


def _order(series: str) -> int:
  methods = list(plan.METHODS)
  base = max((m for m in methods if series == m or series.startswith(m + "_")), key=len,
             default=None)
  return methods.index(base) if base else len(methods)


def _line(ax, table, method, dashed, suffix, x="compression"):
  if x not in table or table[x].isna().all():
    return
  t = table[table["method"] == method].sort_values(x)
  if t.empty:
    return
  low = t["change_pt"] - t["change_low_pt"]
  high = t["change_high_pt"] - t["change_pt"]
  label, color, control = style(method)
  ax.errorbar(t[x], t["change_pt"], yerr=[low.clip(lower=0), high.clip(lower=0)],
              color=color, linestyle="--" if dashed or control else "-",
              marker="o" if not dashed else "s", markersize=3, capsize=2, linewidth=1.2,
              alpha=0.6 if dashed else 1.0, label=f"{label} {suffix}")


def speedup_label(table) -> str:
  """The MACs axis, named by how its runs counted them (result.json's macs_count): the slim
  network's MACs (channel structures: what really runs) or a theoretical count (unstructured,
  N:M: only sparse kernels skip the zeros)."""
  counts = set() if table is None or "macs_count" not in table else {
      c for v in table["macs_count"].dropna() for c in str(v).split(",") if c}
  kind = {frozenset({"slim"}): "the slim network's MACs",
          frozenset({"sparse"}): "theoretical: sparse kernels"}.get(
              frozenset(counts), "theoretical where unstructured or N:M, slim where channels")
  return f"MACs speed-up (dense / pruned MACs; {kind}), log scale"


def draw(title, ours, theirs, out_stem, points=None, x="compression"):
  """Writes out_stem.png and out_stem.svg; `ours`/`theirs` are summary tables or None.

  x: "compression" (prunable weights / remaining) or "flops_speedup" (dense / pruned MACs).
  """
  fig, ax = plt.subplots(figsize=(6.4, 4.2))
  for table, dashed, suffix in ((theirs, True, "(published)"), (ours, False, "(ours)")):
    if table is None or table.empty:
      continue
    for method in sorted(table["method"].unique(), key=_order):
      _line(ax, table, method, dashed, suffix, x)
  if points is not None and not points.empty and x == "compression":
    for _, p in points.iterrows():
      ax.scatter([p["compression"]], [p["change_pt"]], marker="*", s=80,
                 color=style(p["method"])[1], edgecolor="black", linewidth=0.5,
                 label=f"{style(p['method'])[0]} (Mikler)", zorder=5)
  ax.set_xscale("log")
  ax.xaxis.set_major_locator(matplotlib.ticker.FixedLocator(
      [1.25, 1.5, 2, 3, 4, 6, 10, 15, 25, 50, 100]))
  ax.xaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(lambda v, _: f"{v:g}x"))
  ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
  ax.axhline(0, color="black", linewidth=0.6)
  ax.set_xlabel("compression ratio (prunable weights / remaining), log scale"
                if x == "compression" else speedup_label(ours))
  ax.set_ylabel("test accuracy change vs dense (points)")
  ax.set_title(title)
  ax.text(0.99, 0.01, "median over trials; bars: min-max", transform=ax.transAxes,
          ha="right", va="bottom", fontsize=7, color="dimgray")
  ax.grid(True, which="both", alpha=0.3)
  if ax.get_legend_handles_labels()[0]:
    ax.legend(fontsize=7, loc="lower left")
  fig.tight_layout()
  os.makedirs(os.path.dirname(out_stem) or ".", exist_ok=True)
  for ext in ("png", "svg"):
    fig.savefig(f"{out_stem}.{ext}", dpi=120)
  plt.close(fig)
  return [f"{out_stem}.png", f"{out_stem}.svg"]


def draw_stability(stability, barriers, out_dir):
  """accuracy_d<density>.png (test accuracy along the path, a line per K, median over seeds)
  and barriers.png (barrier against K, a line per density, median and seed range)."""
  files = []
  for density, group in stability.groupby("density"):
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    for k, g in group.groupby("rewind_step"):
      curve = g.groupby("alpha")["test_accuracy"].median()
      ax.plot(curve.index, 100 * curve.values, marker="o", markersize=2, label=f"K={k}")
    ax.set_xlabel("alpha (0: copy A, 1: copy B)")
    ax.set_ylabel("test accuracy (%)")
    ax.set_title(f"linear interpolation, density {density:.4g}")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    path = os.path.join(out_dir, f"accuracy_d{density:.4g}.png")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    files.append(path)
  fig, ax = plt.subplots(figsize=(6.4, 4.2))
  for density, group in sorted(barriers.groupby("density"), key=lambda g: -g[0]):
    stats = group.groupby("rewind_step")["barrier_pt"].agg(["median", "min", "max"])
    ax.errorbar(stats.index, stats["median"], yerr=[stats["median"] - stats["min"],
                                                    stats["max"] - stats["median"]],
                marker="o", markersize=3, capsize=2, label=f"density {density:.4g}")
  ax.axhline(2.0, color="grey", linestyle=":", linewidth=1, label="stable below 2 pt")
  ax.set_xlabel("rewind step K (iterations)")
  ax.set_ylabel("error barrier (points)")
  ax.set_title("instability: barrier along the path between two copies")
  ax.grid(alpha=0.3)
  ax.legend(fontsize=8)
  path = os.path.join(out_dir, "barriers.png")
  fig.tight_layout()
  fig.savefig(path, dpi=110)
  plt.close(fig)
  return files + [path]
