"""The set-up scripts: interpreter discovery and clear errors."""

from __future__ import annotations

import os
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
FT_PYTHON = ROOT / "scripts" / "ft-python.sh"


def run_ft_python(**env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", str(FT_PYTHON)],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, **env},
    )


def test_python_variable_must_be_free_threaded():
    gil = sys.executable if not sysconfig.get_config_var("Py_GIL_DISABLED") else None
    if gil is None:
        gil = str(ROOT / ".venv-gil" / "bin" / "python")
        if not Path(gil).exists():
            pytest.skip("no GIL interpreter at hand")
    result = run_ft_python(PYTHON=gil)
    assert result.returncode == 1
    assert "is not a free-threaded CPython 3.13+" in result.stderr
    assert result.stdout == ""


def test_python_variable_is_used_as_is():
    if not sysconfig.get_config_var("Py_GIL_DISABLED"):
        pytest.skip("needs the free-threaded interpreter")
    result = run_ft_python(PYTHON=sys.executable)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == sys.executable


def test_found_interpreter_is_free_threaded():
    # With no $PYTHON: python3.13t on PATH, or the cached build (CI's machine has one).
    result = run_ft_python(PYTHON="")
    if result.returncode != 0:
        pytest.skip(f"no free-threaded interpreter on this machine: {result.stderr.strip()}")
    interpreter = result.stdout.strip().splitlines()[-1]
    check = subprocess.run(
        [
            interpreter,
            "-c",
            "import sysconfig; print(bool(sysconfig.get_config_var('Py_GIL_DISABLED')))",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert check.stdout.strip() == "True"
