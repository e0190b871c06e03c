"""`python -m composer.evaluation` end to end on a model trained by `train.py experiment=smoke`."""

import json

from PIL import Image

from tests.subprocesses import run_app, run_python


def _evaluate(*arguments: str):
    return run_python("-m", "composer.evaluation", *arguments)


def test_evaluate_writes_the_report(trained, tmp_path):
    out = tmp_path / "evaluation"
    result = _evaluate(f"checkpoint={trained}", "n=4", "batch=2", "steps=2", "grid_count=2", f"out={out}",
                       "parser.steps=4", "parser.scenes=32", f"parser.cache={tmp_path / 'cache'}", "sweep=[1,3]")
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads((out / "report.json").read_text())
    conditions = {row["condition"] for row in report["fidelity"]}
    assert conditions == {"caption", "image_embedding", "color", "sketch", "instances", "depth", "intensity",
                          "masked_image", "grounding"}
    for row in report["fidelity"]:
        for column in ("alone", "all", "unconditional", "other_scene", "source"):
            assert set(row[column]) == {"mean", "sem"}, (row["metric"], column)
        if row["metric"] in ("sketch/edge_f1", "color/histogram_intersection", "intensity/correlation",
                             "image_embedding/embedding_similarity"):
            assert row["source"]["mean"] > 0.999  # a source read against itself
    assert report["editing"]["max_change_outside"] == 0.0
    assert report["editing"]["mean_change_inside"]["mean"] > 0  # the edit did change the box
    assert {"a_vs_a", "a_vs_b", "b_vs_a", "b_vs_b"} <= set(report["recombination"])
    recombination = report["recombination"]
    assert recombination["a"]["condition"] == "sketch" and recombination["b"]["metric"] == "embedding_similarity"
    assert report["settings"]["n"] == 4 and report["settings"]["reader"] == "scene parser"
    assert set(report["all_conditions"]) == {"psnr", "histogram_intersection"}
    assert report["all_conditions"]["psnr"]["source"]["mean"] == 100.0  # a source against itself
    frechet = report["frechet"]
    assert frechet["images_per_side"] == 2 and {"unconditional", "all", "caption"} <= set(frechet["runs"])
    sweep = report["sweep"]  # guidance sweep on the first batch (2 sources)
    assert sweep["guidance"] == [1.0, 3.0] and sweep["sources"] == 2
    rows = {(row["run"], row["metric"]): row for row in sweep["rows"]}
    assert {("all", "psnr"), ("sketch", "edge_f1"), ("sketch", "foreground_iou"),
            ("depth", "foreground_iou")} <= set(rows)
    for row in rows.values():
        means = [cell["mean"] for cell in row["values"]]
        best = (max if row["higher_is_better"] else min)(means)
        assert row["best_guidance"] == sweep["guidance"][means.index(best)]
    assert set(sweep["suggested"]) == {"guidance_all", "guidance"} and sweep["suggested"]["guidance_all"] in (1.0, 3.0)
    markdown = (out / "report.md").read_text()
    assert "| color | histogram_intersection ↑ |" in markdown and "![samples](grid.png)" in markdown
    for section in ("## All conditions together", "## In-domain Fréchet distance", "## Guidance sweep",
                    "Suggested by this sweep"):
        assert section in markdown
    # generation from captions: through planned layouts and the prior, with their baselines
    captions = report["captions_only"]
    assert list(captions) == ["caption via planned layout", "caption via layout + prior", "caption via prior",
                              "caption", "unconditional", "source"]
    assert set(captions["source"]) == {"named_present", "count_right", "relation_right", "background_color",
                                       "clip_score"}
    assert all(0 <= cell["mean"] <= 1 for run in captions.values() for name, cell in run.items()
               if name not in ("relation_right", "clip_score"))
    assert all(-1 <= run["clip_score"]["mean"] <= 1 for run in captions.values())
    assert "## Generation from captions: alone, through planned layouts (LMD), through the prior" in markdown
    assert Image.open(out / "guidance.png").width > 300
    grid = Image.open(out / "grid.png")
    # sources and 4 readings; unconditional, all; 9 conditions; 3 from captions, recombination, edit
    rows = 5 + 2 + 9 + 5
    assert grid.height == rows * (96 + 2) and grid.width > 2 * 96
    _check_quality_against_compute(report, out, tmp_path)


def _check_quality_against_compute(report: dict, out, tmp_path):
    """`python -m composer.evaluation.compute` reads the report's main numbers into its table and plot."""
    result = run_python("-m", "composer.evaluation.compute", f"short=2:{out}", f"same=3.5:{out / 'report.json'}",
                        "--plot", str(tmp_path / "compute.png"))
    assert result.returncode == 0, result.stderr[-2000:]
    lines = result.stdout.splitlines()
    assert lines[0] == "| measure | short (2 min) | same (3.5 min) |"
    psnr = f"{report['all_conditions']['psnr']['all']['mean']:.3f}"
    assert f"| all: PSNR ↑ | {psnr} | {psnr} |" in lines
    boxes = next(row for row in report["fidelity"] if row["metric"] == "grounding/objects_found")
    found = f"| grounding alone: objects_found ↑ | {boxes['alone']['mean']:.3f} |"
    assert any(line.startswith(found) for line in lines)
    assert any(line.startswith("| unconditional: Fréchet ↓ |") for line in lines)
    assert any(line.startswith("| planned layout: count_right ↑ |") for line in lines)
    # one row per condition and measure, plus all, the planned layout's three checks, Fréchet
    assert len(lines) == 2 + 1 + len(report["fidelity"]) + 3 + 1
    assert Image.open(tmp_path / "compute.png").width > 300
    bad = run_python("-m", "composer.evaluation.compute", f"nominutes:{out}")
    assert bad.returncode == 2 and "expected NAME=MINUTES:RUN" in bad.stderr


def test_evaluate_bad_input_is_one_line(trained, tmp_path):
    result = _evaluate(f"checkpoint={tmp_path}", "n=4")
    assert result.returncode == 2
    assert result.stderr.strip().startswith("error:") and "not a Composer model" in result.stderr
    result = _evaluate(f"checkpoint={trained}", "n=1")
    assert result.returncode == 2 and result.stderr.strip() == "error: n must be a whole number >= 2, got 1"


def test_evaluate_never_overwrites_a_report_and_checks_numbers(trained, tmp_path):
    out = tmp_path / "evaluation"
    out.mkdir()
    (out / "report.md").write_text("an earlier evaluation")
    result = run_app("composer.evaluation", f"checkpoint={trained}", "n=4", "batch=2", f"out={out}")
    assert result.returncode == 2 and "already holds an evaluation (report.md)" in result.stderr
    assert (out / "report.md").read_text() == "an earlier evaluation"
    for setting, message in (("guidance=nan", "guidance must be a finite number >= 0 and <= 100.0, got nan"),
                             ("steps=0", "steps must be a whole number >= 1, got 0"),
                             ("n=1", "n must be a whole number >= 2, got 1")):
        result = run_app("composer.evaluation", f"checkpoint={trained}", setting, f"out={tmp_path / 'other'}")
        assert result.returncode == 2 and result.stderr.strip().splitlines()[-1] == f"error: {message}"
    result = run_app("composer.evaluation", f"checkpoint={trained}", "planned_negative=[captoin]",
                     f"out={tmp_path / 'other'}")
    assert result.returncode == 2
    assert "error: planned_negative names ['captoin'], which this model lacks" in result.stderr


def test_evaluate_with_upsample_measures_the_cascade_against_128_px_renders(trained, trained_upsampler, tmp_path):
    out = tmp_path / "evaluation"
    result = _evaluate(f"checkpoint={trained}", "n=2", "batch=2", "steps=2", "grid_count=0", "sweep=[]",
                       "prior.use=false", f"out={out}", "parser.steps=2", "parser.scenes=8",
                       f"parser.cache={tmp_path / 'cache'}", "upsample=true", f"upsampler={trained_upsampler}",
                       "upsample_steps=2", "upsample_samples=2")
    assert result.returncode == 0, result.stderr[-3000:]
    assert f"the cascade at 128 px with {trained_upsampler}" in result.stderr
    cascade = json.loads((out / "report.json").read_text())["cascade"]
    assert (cascade["size"], cascade["steps"], cascade["samples"]) == (128, 2, 2)
    methods = cascade["methods"]
    assert set(methods) == {"true render", "bicubic", f"upsampler@{cascade['level']}"}
    assert methods["true render"]["psnr"]["mean"] == 100  # the ground truth against itself
    assert 0 < methods["bicubic"]["psnr"]["mean"] < 100 and 0 <= methods["bicubic"]["foreground_iou"]["mean"] <= 1
    upsampled = methods[f"upsampler@{cascade['level']}"]
    paired = upsampled["psnr"]["mean"] - methods["bicubic"]["psnr"]["mean"]  # same scenes: the difference of means
    assert abs(upsampled["psnr_minus_bicubic"]["mean"] - paired) < 1e-3
    assert "## The cascade: all-conditions outputs enlarged to 128 px" in (out / "report.md").read_text()
    bad = _evaluate(f"checkpoint={trained}", "upsample=true", "upsample_samples=0", f"out={tmp_path / 'bad'}")
    assert bad.returncode == 2 and "upsample_samples" in bad.stderr and not (tmp_path / "bad").exists()
