"""The evaluation report: per-image values -> means with standard errors and paired gaps (JSON),
and a Markdown page with the tables and the picture grid."""

from __future__ import annotations

import json
import math
import statistics
from collections.abc import Mapping, Sequence
from pathlib import Path

import torch

from composer.evaluation.fidelity import MEASURES
from composer.evaluation.plots import guidance_plot
from composer.evaluation.runner import ALL, UNCONDITIONAL, EvaluationResult
from composer.inference.grids import grid_image

# A gap is "clear" when the paired mean difference exceeds this many standard errors (p < 0.003
# under a normal approximation) and favours the conditioned run.
CLEAR_STANDARD_ERRORS = 3.0


def mean_sem(values: torch.Tensor) -> dict[str, float]:
    """Mean and standard error over the values that are not NaN (NaN: nothing to measure there)."""
    values = values.double()
    values = values[~values.isnan()]
    sem = values.std().item() / math.sqrt(len(values)) if len(values) > 1 else float("nan")
    return {"mean": values.mean().item() if len(values) else float("nan"), "sem": sem}


def gap(better: torch.Tensor, baseline: torch.Tensor, higher_is_better: bool) -> dict[str, float | bool]:
    """The paired difference `better - baseline` (sign flipped where lower is better), and whether it is clear."""
    difference = (better - baseline) if higher_is_better else (baseline - better)  # NaN pairs drop out
    summary = mean_sem(difference)
    summary["clear"] = bool(summary["mean"] > 0 and summary["mean"] > CLEAR_STANDARD_ERRORS * summary["sem"])
    return summary


# What judges all conditions together: reconstruction of the whole source and its palette.
ALL_MEASURES = ("psnr", "histogram_intersection")


def all_conditions(result: EvaluationResult) -> dict:
    """`{measure: {all, unconditional, other_scene, source}}` for ALL_MEASURES."""
    return {measure: {"all": mean_sem(result.runs[ALL][measure]),
                      "unconditional": mean_sem(result.runs[UNCONDITIONAL][measure]),
                      "other_scene": mean_sem(result.other[ALL][measure]),
                      "source": mean_sem(result.source[measure])}
            for measure in ALL_MEASURES if measure in result.runs.get(ALL, {})}


def sweep_rows(result: EvaluationResult, metrics: Mapping[str, Sequence[str]]) -> dict:
    """The guidance sweep: per run (all, each condition alone) and measure, the mean at every
    guidance and the guidance that does best."""
    if not result.sweep:
        return {}
    guidances = sorted(result.sweep)
    wanted = [(ALL, measure) for measure in ALL_MEASURES]
    wanted += [(condition, measure) for condition, measures in metrics.items() for measure in measures]
    rows = []
    for run, measure in wanted:
        if any(measure not in result.sweep[g].get(run, {}) for g in guidances):
            continue
        cells = [mean_sem(result.sweep[g][run][measure]) for g in guidances]
        means = [cell["mean"] for cell in cells]
        best = max(means) if MEASURES[measure] else min(means)
        rows.append({"run": run, "metric": measure, "higher_is_better": MEASURES[measure], "values": cells,
                     "best_guidance": guidances[means.index(best)]})
    return {"guidance": guidances, "sources": len(next(iter(result.sweep[guidances[0]][ALL].values()))),
            "rows": rows, "suggested": suggested_guidance(rows, metrics)}


def suggested_guidance(rows: Sequence[dict], metrics: Mapping[str, Sequence[str]]) -> dict[str, float]:
    """The defaults the sweep supports (docs/design.md#guidance-from-data): `guidance_all`, the best
    guidance for all conditions on the first of ALL_MEASURES; `guidance`, the median over the
    conditions alone of the best guidance on each one's first measure."""
    best = {(row["run"], row["metric"]): row["best_guidance"] for row in rows}
    suggested = {}
    if (ALL, ALL_MEASURES[0]) in best:
        suggested["guidance_all"] = best[ALL, ALL_MEASURES[0]]
    singles = [best[condition, measures[0]] for condition, measures in metrics.items()
               if measures and (condition, measures[0]) in best]
    if singles:
        suggested["guidance"] = statistics.median(singles)
    return suggested


def summarize(result: EvaluationResult, settings: dict, metrics: Mapping[str, Sequence[str]],
              quality: dict | None = None, *, frechet: dict | None = None) -> dict:
    """Everything the report shows, JSON-ready. `metrics[condition]` lists the measures that judge
    it (its YAML's `metrics:`); one row per condition and measure the readers could take."""
    fidelity = fidelity_rows(result, metrics)
    measured = {row["condition"] for row in fidelity}
    # Conditions the model has that no metric here reads back (a new condition, or a reader missing
    # for this data): named, never silently left out.
    not_measured = [name for name in result.runs if name not in (UNCONDITIONAL, ALL) and name not in measured]
    summary = {"settings": settings, "all_conditions": all_conditions(result), "fidelity": fidelity,
               "not_measured": not_measured}
    if frechet is not None:
        summary["frechet"] = frechet
    if result.sweep:
        summary["sweep"] = sweep_rows(result, metrics)
    if result.recombination:
        summary["recombination"] = recombination_summary(result)
    if result.editing:
        summary["editing"] = {"max_change_outside": result.editing["max_change_outside"].max().item(),
                              "mean_change_inside": mean_sem(result.editing["mean_change_inside"])}
    if result.captions_only:
        summary["captions_only"] = {run: {measure: mean_sem(values) for measure, values in measures.items()}
                                    for run, measures in result.captions_only.items()}
    if quality is not None:
        summary["quality"] = quality
    recombination = summary.get("recombination")
    summary["goal"] = {
        "every_single_condition_beats_unconditional": all(
            row["gap_vs_unconditional"]["clear"] for row in fidelity),
        "recombination_follows_a_and_b": bool(
            recombination and recombination["follows_a"]["clear"] and recombination["follows_b"]["clear"]),
        "editing_exact_outside_mask": summary.get("editing", {}).get("max_change_outside") == 0.0,
    }
    return summary


def fidelity_rows(result: EvaluationResult, metrics: Mapping[str, Sequence[str]]) -> list[dict]:
    """One row per condition and measure: alone, all, unconditional, other scene, source, and the
    paired gaps to the baselines."""
    for condition, measures in metrics.items():
        for measure in measures:
            if measure not in MEASURES:
                raise ValueError(
                    f"condition {condition!r} names an unknown metric {measure!r}; known: {sorted(MEASURES)}"
                )
    rows = []
    for condition, measures in metrics.items():
        for metric in measures:
            if condition not in result.runs or metric not in result.runs[condition]:
                continue  # the model lacks the condition, or the data/readers cannot measure it
            higher = MEASURES[metric]
            alone, unconditional = result.runs[condition][metric], result.runs[UNCONDITIONAL][metric]
            rows.append({
                "metric": f"{condition}/{metric}", "condition": condition, "higher_is_better": higher,
                "alone": mean_sem(alone),
                "all": mean_sem(result.runs[ALL][metric]),
                "unconditional": mean_sem(unconditional),
                "other_scene": mean_sem(result.other[condition][metric]),
                "source": mean_sem(result.source[metric]),
                "gap_vs_unconditional": gap(alone, unconditional, higher),
                "gap_vs_other_scene": gap(alone, result.other[condition][metric], higher),
            })
    return rows


def recombination_summary(result: EvaluationResult) -> dict:
    """How far the recombination follows A's local condition and B's global one."""
    r, ((local, local_metric), (global_, global_metric)) = result.recombination, result.recombined
    # Differences oriented so that positive = follows A's local condition / B's global one.
    a_sign, b_sign = (1 if MEASURES[local_metric] else -1), (1 if MEASURES[global_metric] else -1)
    return {
        "a": {"condition": local, "metric": local_metric, "higher_is_better": MEASURES[local_metric]},
        "b": {"condition": global_, "metric": global_metric, "higher_is_better": MEASURES[global_metric]},
        **{key: mean_sem(values) for key, values in r.items()},
        "a_closer_to_a": (a_sign * (r["a_vs_a"] - r["a_vs_b"]) > 0).double().mean().item(),
        "b_closer_to_b": (b_sign * (r["b_vs_b"] - r["b_vs_a"]) > 0).double().mean().item(),
        "follows_a": gap(r["a_vs_a"], r["a_vs_b"], MEASURES[local_metric]),
        "follows_b": gap(r["b_vs_b"], r["b_vs_a"], MEASURES[global_metric]),
    }


def _cell(value: dict[str, float]) -> str:
    return f"{value['mean']:.3f} ± {value['sem']:.3f}"


def _boxes(fraction: float | None, energy: dict | None = None) -> str:
    said = "every step" if fraction is None else f"the first {fraction:.0%} of the steps"
    if energy and energy.get("scale"):
        said += f" with box-energy guidance {energy['scale']:g} on the first {energy['fraction']:.0%}"
    return said


def _all_conditions_lines(summary: dict) -> list[str]:
    table = summary.get("all_conditions") or {}
    if not table:
        return []
    lines = ["## All conditions together", "", "| metric | all | unconditional | other scene | source |",
             "|---|---|---|---|---|"]
    for measure, cells in table.items():
        arrow = "↑" if MEASURES[measure] else "↓"
        lines.append(f"| {measure} {arrow} | {_cell(cells['all'])} | {_cell(cells['unconditional'])} | "
                     f"{_cell(cells['other_scene'])} | {_cell(cells['source'])} |")
    return lines + [""]


def _frechet_lines(summary: dict) -> list[str]:
    frechet = summary.get("frechet")
    if not frechet:
        return []
    lines = ["", "## In-domain Fréchet distance ↓ (scene parser features)", "",
             f"Outputs of the first {frechet['images_per_side']} sources against the other "
             f"{frechet['images_per_side']} sources, on the scene parser's features (in-domain, as FID on MNIST "
             "uses a digit classifier; not comparable with Inception FID). *real* compares the two halves of the "
             "sources: the floor at this sample size.", "", "| run | distance |", "|---|---|",
             f"| real (floor) | {frechet['real_floor']:.3f} |"]
    lines += [f"| {run} | {value:.3f} |" for run, value in frechet["runs"].items()]
    return lines


def _cascade_lines(summary: dict) -> list[str]:
    cascade = summary.get("cascade")
    if not cascade:
        return []
    measures = ("psnr", "edge_f1", "foreground_iou")
    lines = ["", f"## The cascade: all-conditions outputs enlarged to {cascade['size']} px ↑", "",
             f"By bicubic and by the upsampler `{cascade['upsampler']}` (level {cascade['level']}, "
             f"{cascade['samples']} samples of {cascade['steps']} steps averaged), against the scenes rendered at "
             f"{cascade['size']} px; *true render*: the render read against itself (the ceiling). Paired differences "
             "to bicubic in brackets.", "",
             "| method | PSNR (dB) | sketch edge F1 | foreground IoU |", "|---|---|---|---|"]
    for method, values in cascade["methods"].items():
        cells = []
        for measure in measures:
            cell = _cell(values[measure])
            gap = values.get(f"{measure}_minus_bicubic")
            cells.append(cell + (f" ({gap['mean']:+.3f} ± {gap['sem']:.3f})" if gap else ""))
        lines.append(f"| {method} | " + " | ".join(cells) + " |")
    return lines


def _caption_lines(summary: dict) -> list[str]:
    runs = summary.get("captions_only")
    if not runs:
        return []
    measures = list(dict.fromkeys(measure for values in runs.values() for measure in values))
    lines = ["", "## Generation from captions: alone, through planned layouts (LMD), through the prior", "",
             "The caption alone; the caption and boxes planned from it offline (`composer.scenes.planner`); the "
             "caption and the image embedding the prior predicts from it (`composer/models/prior.py`). Each is checked "
             "against the caption, as the unconditional samples and the sources (the reader's ceiling) are: the "
             "named objects by the scene parser's colors (`composer/scenes/layout_checks.py`), and clip_score, "
             "the cosine of the output's image embedding and the caption's sentence embedding (an in-domain CLIP "
             "score: the image encoder was trained against these caption embeddings).",
             "", "| run | " + " | ".join(f"{measure} ↑" for measure in measures) + " |",
             "|---|" + "---|" * len(measures)]
    lines += [f"| {run} | " + " | ".join(_cell(values[m]) if m in values else "—" for m in measures) + " |"
              for run, values in runs.items()]
    return lines


def _sweep_lines(summary: dict) -> list[str]:
    sweep = summary.get("sweep")
    if not sweep:
        return []
    guidances = sweep["guidance"]
    lines = ["", "## Guidance sweep", "", f"The first {sweep['sources']} sources at each guidance (same noise); "
             "**bold**: the best guidance for that run and metric. Plot: guidance.png.", "",
             "| run | metric | " + " | ".join(f"{g:g}" for g in guidances) + " |",
             "|---|---|" + "---|" * len(guidances)]
    for row in sweep["rows"]:
        arrow = "↑" if row["higher_is_better"] else "↓"
        cells = [f"**{cell['mean']:.3f}**" if g == row["best_guidance"] else f"{cell['mean']:.3f}"
                 for g, cell in zip(guidances, row["values"], strict=True)]
        lines.append(f"| {row['run']} | {row['metric']} {arrow} | " + " | ".join(cells) + " |")
    suggested, settings = sweep.get("suggested", {}), summary["settings"]
    if suggested:
        chosen = ", ".join(f"`{name}={value:g}`" for name, value in suggested.items())
        used = ", ".join(f"{settings.get(name, settings['guidance']):g}" for name in suggested)
        lines += ["", f"Suggested by this sweep (all: the best guidance for the first metric; alone: the median "
                  f"of each condition's best guidance for its first metric): {chosen}. This report used {used}."]
    return lines


def markdown(summary: dict, command: str, grid_file: str | None) -> str:
    settings = summary["settings"]
    lines = [
        f"# Evaluation of `{settings['checkpoint']}`",
        "",
        f"`{command}`",
        "",
        f"{settings['n']} held-out sources, {settings['steps']} {settings['scheduler']} steps, guidance "
        f"{settings.get('guidance_all', settings['guidance'])} with all conditions and "
        f"{settings['guidance']} alone, "
        f"boxes on {_boxes(settings.get('grounding_fraction'), settings.get('box_energy'))}, seed {settings['seed']}; "
        f"{settings['seconds']:.0f} s. Values are means ± standard "
        "errors over sources. *alone*: that condition only; *all*: every condition; *unconditional*: no "
        "condition; *other scene*: the same condition-alone outputs measured against another source; "
        "*source*: the source read against itself (the reader's ceiling). A gap is clear (✓) when the paired "
        f"difference to the unconditional run exceeds {CLEAR_STANDARD_ERRORS:g} standard errors.",
        "",
        *_all_conditions_lines(summary),
        *_fidelity_lines(summary),
        *_recombination_lines(summary),
    ]
    if "editing" in summary:
        e = summary["editing"]
        lines += ["", "## Region editing (all conditions; the box of the first object, or the central quarter, "
                      "regenerated)", "",
                  f"Largest change outside the mask: {e['max_change_outside']:.3g} (must be 0). Mean change inside: "
                  f"{_cell(e['mean_change_inside'])}."]
    lines += _caption_lines(summary) + _frechet_lines(summary) + _cascade_lines(summary) + _sweep_lines(summary)
    if "quality" in summary:
        lines += ["", "## Image quality (outputs from all conditions vs sources)", ""]
        lines += [f"- {key}: {value:.4g}" if isinstance(value, float) else f"- {key}: {value}"
                  for key, value in summary["quality"].items()]
    goal = summary["goal"]
    lines += ["", "## Goal", ""] + [f"- {key.replace('_', ' ')}: {'yes' if value else 'no'}"
                                    for key, value in goal.items()]
    if grid_file:
        lines += ["", "## Samples", "", "Rows: the sources, what was read from them, then the outputs of each run "
                  "(the same noise in every row).", "", f"![samples]({grid_file})"]
    return "\n".join(lines) + "\n"


def _fidelity_lines(summary: dict) -> list[str]:
    lines = ["## Each condition", "",
             "| condition | metric | alone | all | unconditional | other scene | source | gap vs unconditional | "
             "clear |",
             "|---|---|---|---|---|---|---|---|---|"]
    for row in summary["fidelity"]:
        arrow = "↑" if row["higher_is_better"] else "↓"
        name = row["metric"].split("/")[1]
        gap_value = row["gap_vs_unconditional"]
        lines.append(
            f"| {row['condition']} | {name} {arrow} | {_cell(row['alone'])} | {_cell(row['all'])} | "
            f"{_cell(row['unconditional'])} | {_cell(row['other_scene'])} | {_cell(row['source'])} | "
            f"{gap_value['mean']:+.3f} ± {gap_value['sem']:.3f} | {'✓' if gap_value['clear'] else '✗'} |")
    if summary.get("not_measured"):
        lines += ["", "Not measured (no fidelity metric reads them back from an output): "
                  + ", ".join(summary["not_measured"]) + "."]
    return lines


def _recombination_lines(summary: dict) -> list[str]:
    if "recombination" not in summary:
        return []
    r = summary["recombination"]
    a, b = r["a"], r["b"]

    def arrow(side: dict) -> str:
        return "↑" if side["higher_is_better"] else "↓"

    return [
        "", f"## Recombination: {a['condition']} of A + {b['condition']} of B", "",
        "| | vs A | vs B |", "|---|---|---|",
        f"| {a['condition']} {a['metric']} {arrow(a)} | {_cell(r['a_vs_a'])} | {_cell(r['a_vs_b'])} |",
        f"| {b['condition']} {b['metric']} {arrow(b)} | {_cell(r['b_vs_a'])} | {_cell(r['b_vs_b'])} |",
        "",
        f"The {a['condition']} is closer to A's in {r['a_closer_to_a']:.0%} of pairs "
        f"({'clear' if r['follows_a']['clear'] else 'not clear'}); the {b['condition']} closer to B's in "
        f"{r['b_closer_to_b']:.0%} ({'clear' if r['follows_b']['clear'] else 'not clear'}).",
    ]


REPORT_FILES = ("report.json", "report.md", "grid.png", "guidance.png")


def write_report(summary: dict, grid: dict[str, torch.Tensor], out: Path, command: str) -> dict[str, Path]:
    """`report.json`, `report.md`, `grid.png` and (with a sweep) `guidance.png` in `out`."""
    out.mkdir(parents=True, exist_ok=True)
    paths = {"json": out / REPORT_FILES[0], "markdown": out / REPORT_FILES[1]}
    grid_file = None
    if grid:
        paths["grid"] = out / REPORT_FILES[2]
        grid_image(grid, label_width=150).save(paths["grid"])
        grid_file = paths["grid"].name
    if summary.get("sweep"):
        paths["guidance"] = out / REPORT_FILES[3]
        guidance_plot(summary["sweep"], paths["guidance"])
    paths["json"].write_text(json.dumps(summary, indent=2) + "\n")
    paths["markdown"].write_text(markdown(summary, command, grid_file))
    return paths
