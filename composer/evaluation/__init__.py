"""Evaluation: does the output follow the conditions? (`python -m composer.evaluation`)."""

from composer.evaluation.fidelity import MEASURES, Truth, condition_fidelity
from composer.evaluation.readings import Objects, Reader, Reading
from composer.evaluation.report import summarize, write_report
from composer.evaluation.runner import Evaluation, EvaluationResult, EvaluationSettings
from composer.scenes.parser import SceneParser, cached_scene_parser, train_scene_parser

__all__ = [
    "MEASURES", "Evaluation", "EvaluationResult", "EvaluationSettings", "Objects", "Reader", "Reading", "SceneParser",
    "Truth", "cached_scene_parser", "condition_fidelity", "summarize", "train_scene_parser", "write_report",
]
