"""Load a file of ``scripts/`` as a module, so its functions can be tested directly."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path
from types import ModuleType

SCRIPTS = Path(__file__).resolve().parents[2] / "scripts"


def load_script(name: str) -> ModuleType:
    """``scripts/<name>.py``, executed as a fresh module named ``name`` (its ``main`` not run)."""
    spec = importlib.util.spec_from_file_location(name, SCRIPTS / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def run_script_cli(name: str, *args: str, timeout: int = 300) -> subprocess.CompletedProcess:
    """``python scripts/<name>.py ARGS`` from the repository root, its output captured."""
    return subprocess.run(
        [sys.executable, str(SCRIPTS / f"{name}.py"), *args],
        capture_output=True, text=True, timeout=timeout, cwd=SCRIPTS.parent,
    )  # fmt: skip
