"""``snakepit-bridge`` in environments other than the developer's: no NumPy, a terminal that
cannot encode every character, the GIL turned back on. Each run is a subprocess, since what is
checked belongs to the process (its imports, its stream encoding, its interpreter flags)."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

RUN_TIMEOUT = 120  # seconds

# First on the path, this `numpy` makes `import numpy` fail as on an install without the extra.
HIDDEN_NUMPY = 'raise ImportError("NumPy is hidden by this test")\n'


def run_cli(
    *args: str, env: dict[str, str], cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "snakepit_bridge", *args],
        capture_output=True,
        text=True,
        env=env,
        cwd=cwd,
        timeout=RUN_TIMEOUT,
        stdin=subprocess.DEVNULL,
    )


def with_path(*entries: Path, **variables: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SNAKEPIT_")}
    env.pop("PYTHON_GIL", None)
    env["PYTHONPATH"] = os.pathsep.join(
        [*(str(e) for e in entries), *filter(None, [os.environ.get("PYTHONPATH")])]
    )
    env.update(variables)
    return env


@pytest.fixture(scope="module")
def without_numpy(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    folder = tmp_path_factory.mktemp("no_numpy")
    (folder / "numpy").mkdir()
    (folder / "numpy" / "__init__.py").write_text(HIDDEN_NUMPY)
    return with_path(folder)


# --------------------------------------------------------------------------------------------
# Without NumPy
# --------------------------------------------------------------------------------------------


def test_the_default_run_without_numpy_says_to_install_the_extra(
    without_numpy: dict[str, str],
) -> None:
    proc = run_cli("hammer", "--requests", "200", env=without_numpy)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert proc.stdout == ""
    assert proc.stderr == (
        "snakepit-bridge: error: the showcase adapter's default mix needs NumPy, which is not "
        "installed: pip install 'snakepit-bridge[numpy]' (or hammer tools that do not need it, "
        "e.g. --tool ping)\n"
    )


def test_numpy_is_really_hidden_in_that_environment(without_numpy: dict[str, str]) -> None:
    # Without this, the test above could pass for another reason than a missing NumPy.
    proc = subprocess.run(
        [
            sys.executable,
            "-c",
            "from snakepit_bridge.adapters import threaded_showcase as s; print(s.NUMPY_AVAILABLE)",
        ],
        capture_output=True,
        text=True,
        env=without_numpy,
        timeout=RUN_TIMEOUT,
    )
    assert proc.stdout == "False\n", proc.stderr


def test_tools_that_do_not_need_numpy_still_run_without_it(
    without_numpy: dict[str, str],
) -> None:
    proc = run_cli(
        "hammer", "--tool", "ping", "--tool", "get_history", "--requests", "200", "--quiet",
        env=without_numpy,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "requests    200 completed, 200 succeeded, 0 failed" in proc.stdout
    listed = run_cli("tools", env=without_numpy)
    assert listed.returncode == 0 and "matrix_multiply" in listed.stdout


def test_another_adapter_is_not_held_to_numpy(
    without_numpy: dict[str, str], tmp_path: Path
) -> None:
    (tmp_path / "plain_adapter.py").write_text(
        textwrap.dedent("""
            from snakepit_bridge.base_adapter_threaded import ThreadSafeAdapter, tool

            class Plain(ThreadSafeAdapter):
                __thread_safe__ = True

                @tool
                def ping(self) -> int:
                    return 1
        """)
    )
    proc = run_cli(
        "hammer", "plain_adapter:Plain", "--requests", "100", "--quiet", env=without_numpy,
        cwd=tmp_path,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr


# --------------------------------------------------------------------------------------------
# A terminal that cannot encode everything
# --------------------------------------------------------------------------------------------

UNICODE_ADAPTER = textwrap.dedent("""
    from snakepit_bridge.base_adapter_threaded import ThreadSafeAdapter, thread_safe_method, tool


    class Racy(ThreadSafeAdapter):
        \"\"\"A race (so the checker's report prints) and text no 8-bit code page holds.\"\"\"

        __thread_safe__ = True

        def __init__(self):
            super().__init__()
            self.counter = 0

        @thread_safe_method
        @tool(description="Count \\u2192 without the lock \\U0001f40d")
        def increment(self) -> int:
            self.counter += 1
            return self.counter

        @thread_safe_method
        @tool
        def fail(self) -> None:
            raise ValueError("no \\u2713 here")

        def get_stats(self):
            return {**super().get_stats(), "mood": "\\u2713 \\U0001f40d"}
""")


@pytest.fixture(scope="module")
def unicode_env(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    folder = tmp_path_factory.mktemp("unicode_adapter")
    (folder / "unicode_adapter.py").write_text(UNICODE_ADAPTER, encoding="utf-8")
    return with_path(folder)


@pytest.mark.parametrize("encoding", ["cp1252", "ascii"])
def test_the_report_never_raises_on_a_terminal_that_cannot_encode_it(
    unicode_env: dict[str, str], encoding: str
) -> None:
    proc = subprocess.run(
        [
            sys.executable, "-m", "snakepit_bridge", "hammer", "unicode_adapter:Racy",
            "--requests", "400", "--threads", "4", "--thread-safety-check", "--quiet",
        ],
        capture_output=True,
        encoding=encoding,
        env={**unicode_env, "PYTHONIOENCODING": encoding},
        timeout=RUN_TIMEOUT,
        stdin=subprocess.DEVNULL,
    )  # fmt: skip
    assert "Traceback" not in proc.stderr, proc.stderr
    assert proc.returncode == 1, proc.stdout + proc.stderr  # the failing tool's requests
    out = proc.stdout
    assert "thread-safety checker: " in out and "unprotected write to Racy.counter" in out
    # The checker's advice in plain words, not emoji; the adapter's own text escaped.
    assert "  warning: 1 attribute(s) written by several threads without a lock" in out
    assert "  mood:          \\u2713 \\U0001f40d\n" in out
    assert "ValueError: no \\u2713 here" in out
    assert out.rstrip().splitlines()[-1].startswith("result: FAILED")

    listed = subprocess.run(
        [sys.executable, "-m", "snakepit_bridge", "tools", "unicode_adapter:Racy"],
        capture_output=True,
        encoding=encoding,
        env={**unicode_env, "PYTHONIOENCODING": encoding},
        timeout=RUN_TIMEOUT,
    )
    assert listed.returncode == 0, listed.stderr
    assert "Count \\u2192 without the lock \\U0001f40d" in listed.stdout
