"""The installed ``snakepit-bridge`` console script run from a project's folder, as a user runs it.

The console script's ``sys.path`` starts with the venv's ``bin``, not the working directory, so
what these tests check depends on the process: each runs the real script in a subprocess, with
this checkout first on ``PYTHONPATH`` and the project folder only as the working directory.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
RUN_TIMEOUT = 120  # seconds; a hung run fails its test instead of the whole CI job

PROJECT_ADAPTER = textwrap.dedent("""
    from snakepit_bridge.base_adapter_threaded import ThreadSafeAdapter, thread_safe_method, tool


    class Adapter(ThreadSafeAdapter):
        __thread_safe__ = True

        @thread_safe_method
        @tool(description="Answer pong")
        def ping(self) -> str:
            return "pong"
""")


def console_script() -> Path:
    script = Path(sys.executable).with_name("snakepit-bridge")
    if not script.exists():
        pytest.skip("the package is not installed with its console script in this environment")
    return script


def project_env(**extra: str) -> dict[str, str]:
    """This checkout importable, nothing else: no ``PYTHON*`` variable of the caller."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "SNAKEPIT_"))}
    env["PYTHONPATH"] = str(ROOT)
    env.update(extra)
    return env


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A project folder holding the package ``proj`` with ``proj/adapters.py``."""
    folder = tmp_path / "project"
    (folder / "proj").mkdir(parents=True)
    (folder / "proj" / "__init__.py").write_text("")
    (folder / "proj" / "adapters.py").write_text(PROJECT_ADAPTER)
    return folder


def run_script(
    folder: Path, *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(console_script()), *args],
        cwd=folder,
        env=project_env() if env is None else env,
        capture_output=True,
        text=True,
        timeout=RUN_TIMEOUT,
        stdin=subprocess.DEVNULL,
    )


def test_hammer_imports_the_adapter_from_the_working_directory(project: Path) -> None:
    proc = run_script(
        project, "hammer", "proj.adapters:Adapter", "--requests", "200", "--threads", "4"
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "adapter     proj.adapters:Adapter" in proc.stdout
    assert "requests    200 completed, 200 succeeded, 0 failed" in proc.stdout


def test_tools_imports_the_adapter_from_the_working_directory(project: Path) -> None:
    proc = run_script(project, "tools", "proj.adapters.Adapter")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.splitlines()[0] == "proj.adapters:Adapter: 1 tool(s)"
    assert "Answer pong" in proc.stdout


def test_safe_path_keeps_the_working_directory_off_sys_path(project: Path) -> None:
    # PYTHONSAFEPATH (or -P) asks Python not to add it; the command does not add it either.
    safe = project_env(PYTHONSAFEPATH="1")
    proc = run_script(project, "tools", "proj.adapters:Adapter", env=safe)
    assert proc.returncode == 2
    assert proc.stderr == (
        "snakepit-bridge: error: unknown adapter 'proj.adapters:Adapter': no module named 'proj'\n"
    )


def test_the_working_directory_does_not_shadow_an_imported_package(project: Path) -> None:
    # A folder holding its own `snakepit_bridge` (Snakepit's priv/python holds upstream's)
    # cannot replace the package the command already runs from.
    (project / "snakepit_bridge").mkdir()
    (project / "snakepit_bridge" / "__init__.py").write_text("raise ImportError('shadow')\n")
    proc = run_script(project, "tools", "proj.adapters:Adapter")
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_serve_imports_the_adapter_from_the_working_directory(
    project: Path, tmp_path: Path
) -> None:
    pytest.importorskip("grpclib")
    from server_harness import ServerPool

    pool = ServerPool(tmp_path)
    try:
        server = pool.start(
            ["--adapter", "proj.adapters:Adapter", "--max-workers", "2"],
            command=[str(console_script()), "serve"],
            env=project_env(SNAKEPIT_LOG_LEVEL="info"),
            cwd=project,
        )
        server.signal(signal.SIGTERM)
        assert server.wait() == 0, server.stderr()
        assert "serving proj.adapters:Adapter on 127.0.0.1:" in server.stderr()
    finally:
        pool.reap_all()
