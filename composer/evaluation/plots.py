"""The guidance sweep as a picture: one panel per run, each of its metrics against guidance."""

from __future__ import annotations

import math
from pathlib import Path


def guidance_plot(sweep: dict, path: Path) -> None:
    """`sweep` as `report.sweep_rows` makes it -> a PNG at `path` (means with standard errors; the
    best guidance of each metric marked)."""
    import matplotlib

    matplotlib.use("Agg")  # files only: no display here or on a training node
    import matplotlib.pyplot as plt

    runs = list(dict.fromkeys(row["run"] for row in sweep["rows"]))
    columns = min(4, len(runs))
    lines = math.ceil(len(runs) / columns)
    figure, axes = plt.subplots(lines, columns, figsize=(3.2 * columns, 2.6 * lines), squeeze=False)
    guidances = sweep["guidance"]
    for axis, run in zip(axes.flat, runs, strict=False):
        for row in (row for row in sweep["rows"] if row["run"] == run):
            means = [cell["mean"] for cell in row["values"]]
            errors = [0 if math.isnan(cell["sem"]) else cell["sem"] for cell in row["values"]]
            label = f"{row['metric']} {'↑' if row['higher_is_better'] else '↓'}"
            line = axis.errorbar(guidances, means, yerr=errors, marker="o", markersize=3, capsize=2, label=label)
            best = guidances.index(row["best_guidance"])
            axis.plot([guidances[best]], [means[best]], "*", markersize=11, color=line[0].get_color())
        axis.set_title(run if run != "all" else "all conditions", fontsize=9)
        axis.set_xlabel("guidance", fontsize=8)
        axis.tick_params(labelsize=7)
        axis.legend(fontsize=6)
    for axis in list(axes.flat)[len(runs):]:
        axis.axis("off")
    figure.suptitle(f"guidance sweep ({sweep['sources']} sources; ★ best)", fontsize=10)
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)
