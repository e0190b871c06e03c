"""composer.scenes: everything that knows the built-in scenes (colored shapes on backgrounds, the
training domain of the default run): the renderer and dataset (`dataset.py`), the caption grammar
and its offline layout planner (`planner.py`), the scene parser that reads shapes back from an
output (`parser.py`) and the layout checks built on it (`layout_checks.py`). The trained zoo
models live in `composer.zoo`. Generic code (models, inference, training, the data loaders,
`conditions`, `decompose`) never imports it (import-linter)."""

from composer.scenes.dataset import VALIDATION_SCENES, SceneDataset, render_scene, sample_scene

__all__ = ["VALIDATION_SCENES", "SceneDataset", "render_scene", "sample_scene"]
