"""Running the project's commands in a subprocess, offline, as a user would."""

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "YOLO_OFFLINE": "1", "OMP_NUM_THREADS": "1"}


def run_python(*arguments: str, cwd: Path = ROOT) -> subprocess.CompletedProcess:
    """`python ARGUMENTS...` in `cwd`, its output captured."""
    return subprocess.run([sys.executable, *arguments], cwd=cwd, capture_output=True, text=True, timeout=600, env=ENV)
