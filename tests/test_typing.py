"""Type checkers see the decorated methods' real signatures.

mypy --strict runs over two small adapter modules: one that must pass (signatures kept through
``thread_safe_method`` in either order with ``tool``, async methods awaitable,
``threading.Condition(adapter.lock)``) and one that must fail on exactly the lines it marks.
mypy is installed in the GIL venv (the ``lint`` extra); elsewhere the test is skipped.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent / "typing"
ROOT = HERE.parent.parent

pytest.importorskip("mypy", reason="mypy is installed in the GIL venv (the lint extra)")


def run_mypy(path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "mypy",
            "--strict",
            "--no-incremental",
            "--config-file",
            "/dev/null",
            "--hide-error-context",
            "--no-pretty",
            str(path),
        ],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=600,
    )


def test_a_correct_adapter_type_checks() -> None:
    proc = run_mypy(HERE / "adapter_ok.py")
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_wrong_calls_of_decorated_methods_are_type_errors() -> None:
    path = HERE / "adapter_bad.py"
    expected = {
        number: marker.group(1)
        for number, line in enumerate(path.read_text().splitlines(), 1)
        if (marker := re.search(r"# error: ([a-z-]+)$", line))
    }
    proc = run_mypy(path)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    found = {
        int(m.group(1)): m.group(2)
        for m in re.finditer(r"adapter_bad\.py:(\d+): error: .*\[([a-z-]+)\]$", proc.stdout, re.M)
    }
    assert found == expected, proc.stdout
