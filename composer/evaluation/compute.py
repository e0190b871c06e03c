"""Quality against compute: the evaluation's main numbers for runs of one recipe trained for
different lengths, as a markdown table and a plot against training minutes.

    python -m composer.evaluation.compute default=19.3:runs/shipped-at-1750 long=60.0:runs/shipped-at-6500 \\
        shipped=81.0:runs/zoo-composer/evaluation --plot docs/images/quality-compute.png

Each `NAME=MINUTES:RUN` names a run (or its evaluation folder, or a `report.json`) from
`python -m composer.evaluation` and the minutes its training took. The table goes to stdout.
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

from composer.evaluation.runner import PLANNED, UNCONDITIONAL

# The numbers a researcher asks first: reconstruction from everything, each condition alone by
# each of its measures, the planned layouts, and unconditional image quality.
PLANNED_MEASURES = ("named_present", "count_right", "relation_right")


def read_report(path: Path) -> dict:
    """A run folder, its `evaluation/` folder or a `report.json` -> the report."""
    for candidate in (path, path / "report.json", path / "evaluation" / "report.json"):
        if candidate.is_file():
            return json.loads(candidate.read_text())
    raise ValueError(f"{str(path)!r} holds no evaluation report: run python -m composer.evaluation checkpoint={path}")


def main_numbers(report: dict) -> dict[str, tuple[float, bool]]:
    """`{measure: (mean, higher_is_better)}`: all conditions' PSNR, each condition alone by each of
    its measures, the planned layouts' checks and the unconditional samples' Fréchet distance."""
    numbers = {"all: PSNR": (report["all_conditions"]["psnr"]["all"]["mean"], True)}
    for row in report["fidelity"]:
        condition, measure = row["metric"].split("/", 1)
        numbers[f"{condition} alone: {measure}"] = (row["alone"]["mean"], row["higher_is_better"])
    planned = report.get("captions_only", {}).get(PLANNED, {})
    for measure in PLANNED_MEASURES:
        if measure in planned:
            numbers[f"planned layout: {measure}"] = (planned[measure]["mean"], True)
    frechet = report.get("frechet", {}).get("runs", {}).get(UNCONDITIONAL)
    if frechet is not None:
        numbers["unconditional: Fréchet"] = (frechet, False)
    return numbers


def measures(rows: dict[str, tuple[float, dict]]) -> dict[str, bool]:
    """Every measure some run of `{name: (minutes, numbers)}` has, in order, with whether higher is better."""
    found = {}
    for _, numbers in rows.values():
        for measure, (_, higher) in numbers.items():
            found.setdefault(measure, higher)
    return found


def table(rows: dict[str, tuple[float, dict]]) -> str:
    """`{name: (minutes, numbers)}` -> a markdown table, one column per run."""
    names = list(rows)
    lines = ["| measure | " + " | ".join(f"{name} ({rows[name][0]:g} min)" for name in names) + " |",
             "| --- |" + " ---: |" * len(names)]
    for measure, higher in measures(rows).items():
        cells = [f"{rows[name][1][measure][0]:.3f}" if measure in rows[name][1] else "-" for name in names]
        lines.append(f"| {measure} {'↑' if higher else '↓'} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def plot(rows: dict[str, tuple[float, dict]], path: Path) -> None:
    """One panel per measure: its value against training minutes, each run a labelled point."""
    import matplotlib

    matplotlib.use("Agg")  # files only
    import matplotlib.pyplot as plt

    found = measures(rows)
    columns = min(4, len(found))
    lines = math.ceil(len(found) / columns)
    figure, axes = plt.subplots(lines, columns, figsize=(3.0 * columns, 2.3 * lines), squeeze=False)
    ordered = sorted(rows.items(), key=lambda item: item[1][0])
    for axis, (measure, higher) in zip(axes.flat, found.items(), strict=False):
        points = [(minutes, numbers[measure][0], name) for name, (minutes, numbers) in ordered if measure in numbers]
        axis.plot([p[0] for p in points], [p[1] for p in points], marker="o")
        for minutes, value, name in points:
            axis.annotate(name, (minutes, value), fontsize=6, xytext=(2, 2), textcoords="offset points")
        axis.set_title(f"{measure} {'↑' if higher else '↓'}", fontsize=8)
        axis.set_xlabel("training minutes", fontsize=7)
        axis.tick_params(labelsize=6)
    for axis in list(axes.flat)[len(found):]:
        axis.axis("off")
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)


def parse_run(argument: str) -> tuple[str, float, Path]:
    """`NAME=MINUTES:PATH` -> its parts, or a ValueError naming the argument."""
    name, equals, rest = argument.partition("=")
    minutes, colon, path = rest.partition(":")
    try:
        value = float(minutes)
    except ValueError:
        value = -1.0
    if not (name and equals and colon and path) or value < 0:
        raise ValueError(f"{argument!r}: expected NAME=MINUTES:RUN, e.g. default=19:runs/default")
    return name, value, Path(path)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m composer.evaluation.compute", description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", help="NAME=MINUTES:RUN for each run")
    parser.add_argument("--plot", type=Path, help="also write the plot to this PNG")
    args = parser.parse_args(argv)
    try:
        rows = {name: (minutes, main_numbers(read_report(path)))
                for name, minutes, path in map(parse_run, args.runs)}
    except ValueError as error:
        parser.error(str(error))
    print(table(rows))
    if args.plot:
        plot(rows, args.plot)


if __name__ == "__main__":
    main()
