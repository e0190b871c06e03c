"""Running the project's commands in a subprocess, offline, as a user would."""

import os
import subprocess
import sys
from pathlib import Path

from omegaconf import open_dict

ROOT = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "YOLO_OFFLINE": "1", "OMP_NUM_THREADS": "1"}


def run_python(*arguments: str, cwd: Path = ROOT) -> subprocess.CompletedProcess:
    """`python ARGUMENTS...` in `cwd`, its output captured."""
    return subprocess.run([sys.executable, *arguments], cwd=cwd, capture_output=True, text=True, timeout=600, env=ENV)


def run_app(module: str, *overrides: str) -> subprocess.CompletedProcess:
    """A hydra entry point (`composer.edit`, ...) run in this process, as `python -m MODULE OVERRIDES`
    would run it: the same config, override parsing and error handling, without a new interpreter
    (about 7 s each). Returns its exit code and what it printed."""
    import contextlib
    import importlib
    import io

    from hydra import compose, initialize_config_dir
    from hydra.core.hydra_config import HydraConfig

    app = importlib.import_module(module)
    if hasattr(app, "__path__"):  # a package: its __main__ is the app (`python -m composer.evaluation`)
        app = importlib.import_module(f"{module}.__main__")
    overrides = getattr(app, "command_line", list)(list(overrides))  # what its __main__ does to argv
    stdout, stderr, code = io.StringIO(), io.StringIO(), 0
    config_name = getattr(app, "CONFIG_NAME", module.rsplit(".", 1)[-1])
    with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
        try:
            with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
                cfg = compose(config_name=config_name, overrides=list(overrides), return_hydra_config=True)
                HydraConfig.instance().set_config(cfg)
                with open_dict(cfg):
                    del cfg["hydra"]
                app.run_or_exit(app.run, cfg)
        except SystemExit as exit_:
            code = exit_.code
        except Exception as error:  # hydra's own override errors: printed, exit 1, as its main does
            print(f"{type(error).__name__}: {error}", file=sys.stderr)
            code = 1
    return subprocess.CompletedProcess([module, *overrides], code, stdout.getvalue(), stderr.getvalue())


def write_plugin(root: Path, module: str, source: str, condition: str, condition_yaml: str) -> Path:
    """What a user writes outside the package: `root/MODULE.py` and `root/conf/condition/CONDITION.yaml`."""
    (root / f"{module}.py").write_text(source)
    (root / "conf" / "condition").mkdir(parents=True)
    (root / "conf" / "condition" / f"{condition}.yaml").write_text(condition_yaml)
    return root


def train_with_plugin(plugin: Path, run_dir: Path, conditions: str) -> Path:
    """`train.py experiment=smoke` for 2 steps with `condition=[CONDITIONS]`, the plugin's module
    importable and its conf folder searched, as a user would run it; fails the test on an error."""
    env = {**ENV, "PYTHONPATH": os.pathsep.join([str(plugin), str(ROOT)])}
    result = subprocess.run(
        [sys.executable, str(ROOT / "train.py"), "experiment=smoke", f"run_dir={run_dir}", "trainer.max_steps=2",
         f"condition=[{conditions}]", f"hydra.searchpath=[file://{plugin / 'conf'}]"],
        cwd=ROOT, capture_output=True, text=True, timeout=600, env=env)
    assert result.returncode == 0, result.stderr[-3000:]
    return run_dir
