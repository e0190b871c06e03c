"""The project's own packages, not MosaicML's `composer`, and the architecture contracts."""

import os
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


def test_a_wheel_install_runs_recombine_and_edit_from_another_folder(trained, tmp_path):
    """`pip install .` (not editable): conf/ travels inside the package, and the commands find it
    from any folder. The install goes to a target folder, run with `python -S` so that this
    checkout's editable install (a .pth hook) cannot stand in for it."""
    import sysconfig

    import numpy as np
    from PIL import Image

    from tests.subprocesses import ENV

    site = tmp_path / "site"
    install = subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation",
                              "--target", str(site), str(ROOT)], capture_output=True, text=True, timeout=600)
    assert install.returncode == 0, install.stderr[-2000:]
    assert (site / "composer" / "conf" / "recombine.yaml").is_file()
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    image = elsewhere / "photo.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (40, 48, 3), dtype=np.uint8)).save(image)
    mask = np.zeros((40, 48), np.uint8)
    mask[10:30, 12:36] = 255
    Image.fromarray(mask).save(elsewhere / "mask.png")
    environment = {**ENV, "PYTHONPATH": os.pathsep.join([str(site), sysconfig.get_paths()["purelib"]])}

    def run(*arguments):
        return subprocess.run([sys.executable, "-S", *arguments], cwd=elsewhere, capture_output=True, text=True,
                              timeout=600, env=environment)

    where = run("-c", "import composer, sys; print(composer.__file__)")
    assert where.returncode == 0 and Path(where.stdout.strip()).is_relative_to(site), where.stdout + where.stderr
    recombined = run("-m", "composer.recombine", f"checkpoint={trained}", f"sketch={image}", "caption=a red star",
                     "steps=2", "out=grid.png")
    assert recombined.returncode == 0, recombined.stderr[-2000:]
    edited = run("-m", "composer.edit", f"checkpoint={trained}", f"image={image}", "mask=mask.png", "steps=2",
                 "out=edited.png")
    assert edited.returncode == 0, edited.stderr[-2000:]
    assert (elsewhere / "grid.png").is_file() and Image.open(elsewhere / "edited.png").size == (48, 40)
