"""The project's own packages, not MosaicML's `composer`, and the architecture contracts."""

import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_composer_is_this_repository():
    import composer

    assert Path(composer.__file__).resolve().is_relative_to(ROOT), composer.__file__


def test_packages_import_from_this_repository():
    import conditions
    import decompose

    for module in (conditions, decompose):
        assert Path(module.__file__).resolve().is_relative_to(ROOT)


def test_import_contracts_hold():
    """decompose and conditions never import composer; decompose never imports conditions;
    only entry points import hydra (import-linter, configured in pyproject.toml)."""
    executable = shutil.which("lint-imports") or str(Path(sys.executable).with_name("lint-imports"))
    result = subprocess.run([executable, "--config", str(ROOT / "pyproject.toml")], cwd=ROOT,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout, result.stdout
