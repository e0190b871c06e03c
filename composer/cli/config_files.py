"""Where the hydra configs (`conf/`) are: beside the packages in a checkout (and an editable
install), inside `composer/` once installed from a wheel (pyproject.toml maps `conf/` there), so
that `python -m composer.recombine` finds its YAML from any folder either way."""

from __future__ import annotations

from pathlib import Path

_PACKAGE = Path(__file__).resolve().parents[1]  # composer/
CONFIG_DIR = _PACKAGE / "conf" if (_PACKAGE / "conf").is_dir() else _PACKAGE.parent / "conf"
