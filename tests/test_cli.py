"""The ``snakepit-bridge`` command end to end, each run in a subprocess."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import sysconfig
import time
from pathlib import Path
from typing import Any

import pytest

SHOWCASE = "snakepit_bridge.adapters.threaded_showcase:ThreadedShowcaseAdapter"
RUN_TIMEOUT = 120  # seconds; a hung run fails its test instead of the whole CI job

# Adapters written to a temporary module (``cli_adapters``) for the runs below.
ADAPTERS = '''
import threading

from snakepit_bridge.base_adapter_threaded import ThreadSafeAdapter, thread_safe_method, tool


class CounterAdapter(ThreadSafeAdapter):
    """Correct: its counter only changes under the adapter lock."""

    __thread_safe__ = True

    def __init__(self):
        super().__init__()
        self.count = 0

    @thread_safe_method
    @tool(description="Add one to the shared counter")
    def increment(self) -> dict:
        with self.acquire_lock():
            self.count += 1
            return {"count": self.count}

    @thread_safe_method
    @tool(description="Repeat a text")
    def echo(self, text: str, times: int = 1) -> str:
        return text * times

    def get_stats(self):
        return {**super().get_stats(), "count": self.count}


class RacyAdapter(ThreadSafeAdapter):
    """The guides' pitfall 1: a shared counter updated without the lock."""

    __thread_safe__ = True

    def __init__(self):
        super().__init__()
        self.counter = 0

    @thread_safe_method
    @tool(description="Add one without the lock")
    def increment(self) -> int:
        self.counter += 1
        return self.counter


class FailingAdapter(ThreadSafeAdapter):
    __thread_safe__ = True

    @thread_safe_method
    @tool
    def bad_value(self, n: int = 0) -> None:
        raise ValueError(f"bad value {n}")

    @thread_safe_method
    @tool
    def missing_key(self) -> None:
        return {}["missing"]

    @thread_safe_method
    @tool
    def fine(self) -> int:
        return 1


class NeedsArgumentsAdapter(ThreadSafeAdapter):
    __thread_safe__ = True

    @tool
    def square(self, x: int) -> int:
        return x * x


class NoToolsAdapter(ThreadSafeAdapter):
    __thread_safe__ = True

    def helper(self) -> int:
        return 1


class MixedAdapter(ThreadSafeAdapter):
    """One tool the default mix can call, two it cannot without --args."""

    __thread_safe__ = True

    @tool
    def ping(self) -> int:
        return 1

    @tool
    def square(self, x: int) -> int:
        return x * x

    @tool
    def resize(self, image: str, width: int, height: int = 1) -> str:
        return image


class BrokenAdapter(ThreadSafeAdapter):
    __thread_safe__ = True

    def __init__(self):
        super().__init__()
        raise RuntimeError("no model file")

    @tool
    def ping(self) -> int:
        return 1


class NotAnAdapter:
    pass


class NonFiniteStatsAdapter(ThreadSafeAdapter):
    __thread_safe__ = True

    @tool
    def ping(self, scale: float = float("nan")) -> int:
        return 1

    def get_stats(self):
        return {**super().get_stats(), "ratio": float("nan"), "peak": float("inf"),
                "floor": [float("-inf")]}


class UpstreamStyleAdapter:
    """Not a BaseAdapter: it lists its tools as upstream's registrations read."""

    def __init__(self):
        self.lock = threading.Lock()
        self.calls = 0

    def get_tools(self):
        return [
            {
                "name": "greet",
                "description": "Say hello",
                "supports_streaming": False,
                "parameters": [
                    {"name": "who", "type": "str", "required": False,
                     "validation_json": '{"default": "world"}'},
                ],
                "metadata": {"adapter_class": "UpstreamStyleAdapter", "module": "cli_adapters",
                             "required_variables": "a,b"},
            },
            {"name": "square", "parameters": [{"name": "x", "type": "int", "required": True}]},
        ]

    def call_tool(self, tool_name, **kwargs):
        with self.lock:
            self.calls += 1
        if tool_name == "greet":
            return "hello " + kwargs.get("who", "world")
        return kwargs["x"] ** 2

    def get_stats(self):
        with self.lock:
            return {"calls": self.calls}


class ExitsWhenBuilt(ThreadSafeAdapter):
    __thread_safe__ = True

    def __init__(self):
        super().__init__()
        raise SystemExit(4)

    @tool
    def ping(self) -> int:
        return 1
'''

# A module that stops the interpreter while it is imported.
EXITS_ON_IMPORT = """
import sys

sys.exit(3)
"""


# A package whose adapters live in a submodule the package does not import.
PACKAGE_ADAPTERS = """
from snakepit_bridge.base_adapter_threaded import ThreadSafeAdapter, tool


class Second(ThreadSafeAdapter):
    __thread_safe__ = True

    @tool
    def ping(self) -> int:
        return 2


class First(ThreadSafeAdapter):
    __thread_safe__ = True

    @tool
    def ping(self) -> int:
        return 1


class Helper:
    pass
"""


@pytest.fixture(scope="module")
def adapters_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("cli_adapters")
    (folder / "cli_adapters.py").write_text(ADAPTERS)
    (folder / "cli_exits_on_import.py").write_text(EXITS_ON_IMPORT)
    (folder / "cli_pkg").mkdir()
    (folder / "cli_pkg" / "__init__.py").write_text("")
    (folder / "cli_pkg" / "adapters.py").write_text(PACKAGE_ADAPTERS)
    return folder


@pytest.fixture(scope="module")
def env(adapters_dir: Path) -> dict[str, str]:
    variables = dict(os.environ)
    variables["PYTHONPATH"] = os.pathsep.join(
        p for p in (str(adapters_dir), variables.get("PYTHONPATH")) if p
    )
    variables.pop("COLUMNS", None)
    return variables


def run_cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "snakepit_bridge", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=RUN_TIMEOUT,
        stdin=subprocess.DEVNULL,
    )


def run_json(env: dict[str, str], *args: str) -> tuple[int, dict[str, Any]]:
    proc = run_cli(env, *args, "--json")
    assert "Traceback" not in proc.stderr, proc.stderr
    return proc.returncode, json.loads(proc.stdout)


# --------------------------------------------------------------------------------------------
# The JSON report schema (documented in docs/cli.md)
# --------------------------------------------------------------------------------------------

NUMBER = (int, float)
LATENCY = {
    "p50": NUMBER,
    "p90": NUMBER,
    "p99": NUMBER,
    "max": NUMBER,
    "min": NUMBER,
    "mean": NUMBER,
}
REPORT_SCHEMA: dict[str, Any] = {
    "schema_version": int,
    "adapter": str,
    "interrupted": bool,
    "unfinished_workers": int,
    "config": {
        "threads": int,
        "requests": (int, type(None)),
        "duration": (float, int, type(None)),
        "seed": int,
        "mix": [{"tool": str, "args": dict, "weight": int}],
        "thread_safety_check": bool,
        "strict": bool,
    },
    "environment": {
        "package_version": str,
        "python": str,
        "implementation": str,
        "executable": str,
        "free_threaded_build": bool,
        "gil_enabled": bool,
        "cpu_count": (int, type(None)),
    },
    "requests": {"completed": int, "succeeded": int, "failed": int},
    "elapsed_seconds": NUMBER,
    "throughput_per_second": NUMBER,
    "latency_ms": LATENCY,
    "per_tool": {"*": {"requests": int, "errors": int, "latency_ms": LATENCY}},
    "threads": {
        "count": int,
        "requests_per_thread": [int],
        "min": int,
        "max": int,
        "mean": NUMBER,
        "stdev": NUMBER,
    },
    "errors": [
        {"tool": str, "type": str, "location": str, "message": str, "count": int, "traceback": str}
    ],
    "adapter_stats": (dict, type(None)),
    "thread_safety": (dict, type(None)),
    "exit_code": int,
}


def check_schema(value: Any, schema: Any, path: str = "report") -> None:
    """Assert that ``value`` has exactly the shape of ``schema`` (a small JSON-schema stand-in)."""
    if isinstance(schema, dict):
        assert isinstance(value, dict), f"{path}: expected an object, got {value!r}"
        if set(schema) == {"*"}:
            for key, item in value.items():
                check_schema(item, schema["*"], f"{path}.{key}")
            return
        assert set(value) == set(schema), f"{path}: keys {sorted(value)} != {sorted(schema)}"
        for key, sub in schema.items():
            check_schema(value[key], sub, f"{path}.{key}")
    elif isinstance(schema, list):
        assert isinstance(value, list), f"{path}: expected a list, got {value!r}"
        for index, item in enumerate(value):
            check_schema(item, schema[0], f"{path}[{index}]")
    else:
        assert isinstance(value, schema), f"{path}: {value!r} is not {schema}"
        if schema is int:
            assert not isinstance(value, bool), f"{path}: {value!r} is a bool"


# --------------------------------------------------------------------------------------------
# hammer: the default run and the report
# --------------------------------------------------------------------------------------------


def test_default_run_on_the_showcase_prints_a_full_report(env: dict[str, str]) -> None:
    proc = run_cli(env, "hammer", "--requests", "400")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    out = proc.stdout
    for expected in (
        "Hammer report",
        f"adapter     {SHOWCASE}",
        "16 threads, 400 requests",
        "400 completed, 400 succeeded, 0 failed",
        "throughput",
        "latency ms  p50",
        "p90",
        "p99",
        "max",
        "p50 ms     p90 ms     p99 ms     max ms",  # the per-tool table has every percentile
        "requests per thread",
        "adapter get_stats()",
        "  adapter_class: ThreadedShowcaseAdapter",
        "result: OK",
    ):
        assert expected in out, f"{expected!r} missing from:\n{out}"
    assert "GIL" in out
    # Progress goes to stderr, as plain lines because stderr is not a terminal here.
    assert "progress: 100% 400/400 requests" in proc.stderr
    assert "\r" not in proc.stderr


def test_json_report_has_the_documented_schema_and_consistent_counts(env: dict[str, str]) -> None:
    code, report = run_json(env, "hammer", "--requests", "300", "--threads", "4", "--seed", "11")
    assert code == 0
    check_schema(report, REPORT_SCHEMA)
    assert report["adapter"] == SHOWCASE
    assert report["exit_code"] == 0 and not report["interrupted"]
    assert report["requests"] == {"completed": 300, "succeeded": 300, "failed": 0}
    assert sum(t["requests"] for t in report["per_tool"].values()) == 300
    assert sum(report["threads"]["requests_per_thread"]) == 300
    assert report["threads"]["count"] == 4
    assert report["config"]["seed"] == 11 and report["config"]["threads"] == 4
    # The default mix covers every showcase tool with valid arguments.
    assert {c["tool"] for c in report["config"]["mix"]} == {
        "ping",
        "compute_intensive",
        "matrix_multiply",
        "batch_process",
        "stress_test",
        "get_adapter_stats",
        "get_history",
        "clear_caches",
        "async_batch_process",
        "stream_batch",
    }
    assert report["adapter_stats"]["tracker"]["total_requests"] == 300
    gil = report["environment"]["gil_enabled"]
    expected_gil = sys._is_gil_enabled() if hasattr(sys, "_is_gil_enabled") else True
    assert gil == expected_gil
    assert report["environment"]["free_threaded_build"] == bool(
        sysconfig.get_config_var("Py_GIL_DISABLED")
    )
    latency = report["latency_ms"]
    assert latency["min"] <= latency["p50"] <= latency["p90"] <= latency["p99"] <= latency["max"]
    assert report["thread_safety"] is None


def test_tool_args_threads_and_requests_options(env: dict[str, str]) -> None:
    code, report = run_json(
        env,
        "hammer",
        "cli_adapters:CounterAdapter",
        "--tool", "increment",
        "--tool", "increment",
        "--tool", "echo",
        "--args", '{"echo": {"text": "ab", "times": 3}}',
        "--threads", "3",
        "--requests", "600",
        "--quiet",
    )  # fmt: skip
    assert code == 0
    mix = {c["tool"]: c for c in report["config"]["mix"]}
    assert mix["increment"]["weight"] == 2 and mix["echo"]["weight"] == 1
    assert mix["echo"]["args"] == {"text": "ab", "times": 3}
    assert set(report["per_tool"]) == {"increment", "echo"}
    increments = report["per_tool"]["increment"]["requests"]
    assert increments + report["per_tool"]["echo"]["requests"] == 600
    assert increments > report["per_tool"]["echo"]["requests"] > 0
    assert report["threads"]["count"] == 3
    # Exact counts: the tracker saw every request once, and the locked counter lost none.
    assert report["adapter_stats"]["tracker"]["total_requests"] == 600
    assert report["adapter_stats"]["count"] == increments


def test_module_dot_class_spelling_is_accepted(env: dict[str, str]) -> None:
    code, report = run_json(env, "hammer", "cli_adapters.CounterAdapter", "--requests", "50")
    assert code == 0
    assert report["adapter"] == "cli_adapters:CounterAdapter"


def test_the_same_seed_gives_the_same_request_mix(env: dict[str, str]) -> None:
    args = ("hammer", "--requests", "200", "--threads", "2", "--seed", "1234", "--quiet")
    _, first = run_json(env, *args)
    _, second = run_json(env, *args)
    counts = {name: t["requests"] for name, t in first["per_tool"].items()}
    assert counts == {name: t["requests"] for name, t in second["per_tool"].items()}
    assert first["config"]["mix"] == second["config"]["mix"]


def test_duration_runs_for_a_time_instead_of_a_count(env: dict[str, str]) -> None:
    code, report = run_json(
        env, "hammer", "cli_adapters:CounterAdapter", "--duration", "0.5", "--threads", "2"
    )
    assert code == 0
    assert report["config"]["duration"] == 0.5 and report["config"]["requests"] is None
    assert report["requests"]["completed"] > 0
    assert report["adapter_stats"]["tracker"]["total_requests"] == report["requests"]["completed"]


def test_errors_are_grouped_with_one_traceback_each_and_exit_1(env: dict[str, str]) -> None:
    code, report = run_json(
        env, "hammer", "cli_adapters:FailingAdapter", "--requests", "300", "--threads", "4"
    )
    assert code == 1 and report["exit_code"] == 1
    groups = {(g["tool"], g["type"]): g for g in report["errors"]}
    assert set(groups) == {("bad_value", "ValueError"), ("missing_key", "KeyError")}
    per_tool = report["per_tool"]
    assert groups["bad_value", "ValueError"]["count"] == per_tool["bad_value"]["requests"]
    assert groups["missing_key", "KeyError"]["count"] == per_tool["missing_key"]["requests"]
    assert report["requests"]["failed"] == sum(g["count"] for g in report["errors"])
    assert per_tool["fine"]["errors"] == 0
    for group in report["errors"]:
        assert group["traceback"].startswith("Traceback (most recent call last):")
        assert group["traceback"].count("Traceback (most recent call last):") == 1
        assert "cli_adapters.py" in group["location"]
    assert groups["bad_value", "ValueError"]["message"] == "bad value 0"

    text = run_cli(env, "hammer", "cli_adapters:FailingAdapter", "--requests", "100", "--quiet")
    assert text.returncode == 1
    assert "errors (2 kind(s)" in text.stdout
    assert 'raise ValueError(f"bad value {n}")' in text.stdout
    assert "result: FAILED" in text.stdout


def test_thread_safety_check_reports_and_strict_fails_a_racy_adapter(env: dict[str, str]) -> None:
    code, report = run_json(
        env,
        "hammer", "cli_adapters:RacyAdapter",
        "--requests", "400", "--threads", "4", "--thread-safety-check",
    )  # fmt: skip
    assert code == 0, "without --strict, warnings are reported but do not fail the run"
    safety = report["thread_safety"]
    assert safety["enabled"] is True
    assert any("RacyAdapter.counter" in w for w in safety["warnings"])
    assert report["config"]["thread_safety_check"] is True

    strict = run_cli(
        env, "hammer", "cli_adapters:RacyAdapter", "--requests", "400", "--threads", "4", "--strict"
    )
    assert strict.returncode == 1
    assert "unprotected write to RacyAdapter.counter" in strict.stdout
    assert "checker warning(s) with --strict" in strict.stdout
    # The report holds the finding; Python's own warning printout is not repeated on stderr.
    assert "ThreadSafetyWarning" not in strict.stderr


def test_strict_passes_a_correct_adapter(env: dict[str, str]) -> None:
    code, report = run_json(
        env,
        "hammer",
        "cli_adapters:CounterAdapter",
        "--requests",
        "400",
        "--threads",
        "4",
        "--strict",
    )
    assert code == 0
    assert report["thread_safety"]["warnings"] == []
    assert report["config"]["strict"] is True


def test_sigint_stops_the_run_with_a_partial_report(env: dict[str, str]) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "snakepit_bridge", "hammer", "cli_adapters:CounterAdapter",
         "--duration", "60", "--threads", "4", "--json"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        text=True,
        env=env,
    )  # fmt: skip
    try:
        assert proc.stderr is not None
        deadline = time.monotonic() + RUN_TIMEOUT
        seen = []
        while time.monotonic() < deadline:
            line = proc.stderr.readline()
            seen.append(line)
            if line.startswith("progress:") or not line:
                break
        assert seen[-1].startswith("progress:"), "".join(seen)
        proc.send_signal(signal.SIGINT)
        stdout, stderr = proc.communicate(timeout=RUN_TIMEOUT)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 130, stderr
    assert "interrupted; partial report follows" in stderr
    assert "Traceback" not in stderr
    report = json.loads(stdout)
    check_schema(report, REPORT_SCHEMA)
    assert report["interrupted"] is True and report["exit_code"] == 130
    assert report["requests"]["completed"] > 0
    assert report["adapter_stats"]["tracker"]["total_requests"] >= report["requests"]["completed"]


def test_progress_is_a_redrawn_bar_on_a_terminal(env: dict[str, str]) -> None:
    try:
        controller, terminal = os.openpty()
    except OSError as exc:  # a sandbox without pseudo-terminals
        pytest.skip(f"no pseudo-terminal available: {exc}")
    try:
        proc = subprocess.run(
            [sys.executable, "-m", "snakepit_bridge", "hammer", "cli_adapters:CounterAdapter",
             "--requests", "200", "--threads", "2"],
            stdout=subprocess.PIPE,
            stderr=terminal,
            stdin=subprocess.DEVNULL,
            env=env,
            timeout=RUN_TIMEOUT,
        )  # fmt: skip
        os.close(terminal)
        terminal = -1
        chunks = []
        while True:
            try:
                chunk = os.read(controller, 65536)
            except OSError:  # EIO: the other side is closed and drained
                break
            if not chunk:
                break
            chunks.append(chunk)
    finally:
        os.close(controller)
        if terminal != -1:
            os.close(terminal)
    shown = b"".join(chunks).decode()
    assert proc.returncode == 0
    assert "\r[##############################] 100%" in shown
    assert "progress:" not in shown


# --------------------------------------------------------------------------------------------
# Usage errors: exit 2, one line on stderr, never a traceback
# --------------------------------------------------------------------------------------------


USAGE_ERRORS = [
    (["hammer", "no_such_module:Adapter"], "unknown adapter 'no_such_module:Adapter'"),
    (["hammer", "cli_adapters:Missing"], "has no attribute 'Missing'"),
    (["hammer", "cli_adapters.NotAnAdapter"], "is not an adapter"),
    (["hammer", "NoModule"], "must be 'module:Class' or 'module.Class'"),
    (["hammer", "--tool", "no_such_tool"], "unknown tool 'no_such_tool'"),
    (["hammer", "--args", "{not json"], "--args is not valid JSON"),
    (["hammer", "--args", "[1, 2]"], "--args must be a JSON object"),
    (["hammer", "--args", '{"ping": 3}'], "must be a JSON object"),
    (["hammer", "--args", '{"ping": {"volume": 11}}'], "has no parameter 'volume'"),
    (["hammer", "--args", '{"nope": {}}'], "--args names unknown tool 'nope'"),
    (["hammer", "--tool", "ping", "--args", '{"get_history": {}}'], "which no --tool selects"),
    (
        ["hammer", "cli_adapters:NeedsArgumentsAdapter"],
        "no tool of NeedsArgumentsAdapter can be called without arguments (square needs x); "
        "choose tools with --tool and give their arguments with --args",
    ),
    (
        ["hammer", "cli_adapters:NoToolsAdapter"],
        "NoToolsAdapter declares no tools (decorate methods with @tool)",
    ),
    (
        ["hammer", "cli_adapters:NoToolsAdapter", "--tool", "helper"],
        "NoToolsAdapter declares no tools (decorate methods with @tool)",
    ),
    (
        ["hammer", "cli_exits_on_import.Adapter"],
        "cannot import adapter module 'cli_exits_on_import': SystemExit: 3",
    ),
    (["hammer", "cli_adapters:NeedsArgumentsAdapter", "--tool", "square"], "needs argument(s) x"),
    (["hammer", "--threads", "0"], "must be at least 1"),
    (["hammer", "--requests", "ten"], "invalid integer"),
    (["hammer", "--duration", "-1"], "must be a positive number"),
    (["hammer", "--requests", "5", "--duration", "1"], "not allowed with argument"),
    (["hammer", "--unknown-option"], "unrecognized arguments"),
    (["tools", "no_such_module.Adapter"], "unknown adapter"),
    (["frobnicate"], "invalid choice"),
]

NAME_THE_CLASS = (
    "snakepit-bridge: error: cli_pkg.adapters is a module; name the adapter class: "
    "cli_pkg.adapters:ClassName (adapter classes in it: cli_pkg.adapters:First, "
    "cli_pkg.adapters:Second)"
)


@pytest.mark.parametrize(
    ("spec", "line"),
    [
        ("cli_pkg.adapters", NAME_THE_CLASS),
        ("cli_pkg.adapters:", NAME_THE_CLASS),
        (
            "cli_pkg",
            "snakepit-bridge: error: cli_pkg is a module; name the adapter class: "
            "cli_pkg:ClassName (it defines no adapter class)",
        ),
        (
            "cli_pkg.nothing",
            "snakepit-bridge: error: unknown adapter 'cli_pkg.nothing': module 'cli_pkg' has no "
            "attribute 'nothing'",
        ),
    ],
)
@pytest.mark.parametrize("command", ["hammer", "tools"])
def test_a_module_named_instead_of_a_class_gets_the_spelling_and_the_candidates(
    env: dict[str, str], command: str, spec: str, line: str
) -> None:
    proc = run_cli(env, command, spec)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert proc.stdout == ""
    assert proc.stderr == line + "\n"


def test_the_report_says_which_tools_the_default_mix_left_out(env: dict[str, str]) -> None:
    proc = run_cli(env, "hammer", "cli_adapters:MixedAdapter", "--requests", "50", "--quiet")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert (
        "left out    resize (needs image, width), square (needs x): the default mix calls only "
        "tools it has arguments for; give theirs with --args"
    ) in proc.stdout.splitlines()

    given = run_cli(
        env, "hammer", "cli_adapters:MixedAdapter", "--requests", "50", "--quiet",
        "--args", '{"square": {"x": 3}}',
    )  # fmt: skip
    assert given.returncode == 0, given.stdout + given.stderr
    assert "left out    resize (needs image, width):" in given.stdout
    chosen = run_cli(
        env, "hammer", "cli_adapters:MixedAdapter", "--requests", "50", "--quiet", "--tool", "ping"
    )
    assert "left out" not in chosen.stdout  # tools named with --tool are the whole mix


@pytest.mark.parametrize(("args", "message"), USAGE_ERRORS)
def test_usage_errors_return_2_with_one_line(
    adapters_dir: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    args: list[str],
    message: str,
) -> None:
    from snakepit_bridge.cli import main

    monkeypatch.syspath_prepend(str(adapters_dir))
    assert main(args) == 2
    out, err = capsys.readouterr()
    assert out == ""
    lines = err.splitlines()
    assert len(lines) == 1, err
    assert message in lines[0]
    assert lines[0].startswith("snakepit-bridge")


@pytest.mark.parametrize(
    ("args", "message"),
    [USAGE_ERRORS[0], USAGE_ERRORS[4], USAGE_ERRORS[5], USAGE_ERRORS[-3]],
    ids=["unknown-adapter", "unknown-tool", "bad-json", "bad-option"],
)
def test_usage_errors_exit_2_in_a_subprocess(
    env: dict[str, str], args: list[str], message: str
) -> None:
    proc = run_cli(env, *args)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert proc.stdout == ""
    assert proc.stderr.count("\n") == 1 and message in proc.stderr
    assert "Traceback" not in proc.stderr


@pytest.mark.parametrize("command", ["hammer", "tools"])
def test_an_adapter_that_fails_to_construct_exits_1_with_its_traceback(
    adapters_dir: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    command: str,
) -> None:
    from snakepit_bridge.cli import main

    monkeypatch.syspath_prepend(str(adapters_dir))
    assert main([command, "cli_adapters:BrokenAdapter"]) == 1
    err = capsys.readouterr().err
    assert 'raise RuntimeError("no model file")' in err
    assert err.splitlines()[-1] == (
        "snakepit-bridge: error: constructing BrokenAdapter failed: RuntimeError: no model file"
    )


@pytest.mark.parametrize("command", ["hammer", "tools"])
def test_system_exit_while_importing_the_adapter_is_a_usage_error(
    env: dict[str, str], command: str
) -> None:
    proc = run_cli(env, command, "cli_exits_on_import:Adapter")
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert proc.stdout == ""
    assert proc.stderr == (
        "snakepit-bridge: error: cannot import adapter module 'cli_exits_on_import': "
        "SystemExit: 3\n"
    )


@pytest.mark.parametrize("command", ["hammer", "tools"])
def test_system_exit_while_constructing_the_adapter_exits_1_naming_it(
    env: dict[str, str], command: str
) -> None:
    proc = run_cli(env, command, "cli_adapters:ExitsWhenBuilt")
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert proc.stdout == ""
    assert "raise SystemExit(4)" in proc.stderr  # the traceback, as for any construction failure
    assert proc.stderr.splitlines()[-1] == (
        "snakepit-bridge: error: constructing ExitsWhenBuilt failed: SystemExit: 4"
    )


def _strict_json(text: str) -> Any:
    def refuse(constant: str) -> None:
        raise AssertionError(f"{constant} is not JSON")

    return json.loads(text, parse_constant=refuse)


def test_json_output_never_holds_nan_or_infinity(env: dict[str, str]) -> None:
    proc = run_cli(
        env, "hammer", "cli_adapters:NonFiniteStatsAdapter", "--requests", "20", "--threads",
        "2", "--quiet", "--json", "--args", '{"ping": {"scale": Infinity}}',
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    report = _strict_json(proc.stdout)
    check_schema(report, REPORT_SCHEMA)
    stats = report["adapter_stats"]
    assert (stats["ratio"], stats["peak"], stats["floor"]) == ("nan", "inf", ["-inf"])
    assert report["config"]["mix"] == [{"tool": "ping", "args": {"scale": "inf"}, "weight": 1}]
    tools = run_cli(env, "tools", "cli_adapters:NonFiniteStatsAdapter", "--json")
    assert tools.returncode == 0, tools.stderr
    (parameter,) = _strict_json(tools.stdout)["tools"][0]["parameters"]
    assert parameter["default"] == "nan"


def test_more_threads_than_can_start_is_one_line_and_exit_2(
    adapters_dir: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    import threading

    from snakepit_bridge.cli import main

    monkeypatch.syspath_prepend(str(adapters_dir))
    real_start = threading.Thread.start
    started: list[threading.Thread] = []

    def start_at_most_three(self: threading.Thread) -> None:
        if self.name.startswith("hammer-"):
            if len(started) == 3:
                raise RuntimeError("can't start new thread")
            started.append(self)
        real_start(self)

    monkeypatch.setattr(threading.Thread, "start", start_at_most_three)
    assert main(["hammer", "cli_adapters:CounterAdapter", "--threads", "50", "--quiet"]) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert err == (
        "snakepit-bridge: error: could start only 3 of 50 worker threads "
        "(RuntimeError: can't start new thread); use fewer --threads\n"
    )
    assert len(started) == 3
    assert not any(thread.is_alive() for thread in started)  # none left running


def test_arguments_of_a_tool_that_needs_them(env: dict[str, str]) -> None:
    code, report = run_json(
        env,
        "hammer", "cli_adapters:NeedsArgumentsAdapter",
        "--tool", "square", "--args", '{"square": {"x": 7}}', "--requests", "20",
    )  # fmt: skip
    assert code == 0
    assert report["config"]["mix"] == [{"tool": "square", "args": {"x": 7}, "weight": 1}]


# --------------------------------------------------------------------------------------------
# tools, info, and the entry points
# --------------------------------------------------------------------------------------------


def test_tools_lists_the_showcase_as_a_table(env: dict[str, str]) -> None:
    proc = run_cli(env, "tools")
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0] == f"{SHOWCASE}: 10 tool(s)"
    assert lines[1].split() == ["TOOL", "STREAMING", "PARAMETERS", "DESCRIPTION"]
    rows = {line.split()[0]: line for line in lines[2:]}
    assert set(rows) == {
        "async_batch_process",
        "batch_process",
        "clear_caches",
        "compute_intensive",
        "get_adapter_stats",
        "get_history",
        "matrix_multiply",
        "ping",
        "stream_batch",
        "stress_test",
    }
    assert "data: list, iterations: int = 1000" in rows["compute_intensive"]
    assert 'message: str = "pong"' in rows["ping"]


def test_tools_json_gives_the_parameter_schemas(env: dict[str, str]) -> None:
    proc = run_cli(env, "tools", "cli_adapters:CounterAdapter", "--json")
    assert proc.returncode == 0, proc.stderr
    payload = json.loads(proc.stdout)
    assert payload["adapter"] == "cli_adapters:CounterAdapter"
    tools = {t["name"]: t for t in payload["tools"]}
    assert set(tools) == {"echo", "increment"}
    assert tools["increment"]["description"] == "Add one to the shared counter"
    assert tools["echo"]["supports_streaming"] is False
    assert tools["echo"]["adapter_class"] == "CounterAdapter"
    assert tools["echo"]["module"] == "cli_adapters"
    assert tools["echo"]["required_variables"] == []
    assert tools["echo"]["parameters"] == [
        {"name": "text", "type": "str", "required": True, "kind": "positional_or_keyword"},
        {
            "name": "times",
            "type": "int",
            "required": False,
            "kind": "positional_or_keyword",
            "default": 1,
        },
    ]


def test_an_adapter_that_is_not_a_base_adapter_is_listed_and_hammered(
    env: dict[str, str],
) -> None:
    """Its get_tools() entries are read with ToolSpec.from_mapping (upstream's shape)."""
    proc = run_cli(env, "tools", "cli_adapters:UpstreamStyleAdapter", "--json")
    assert proc.returncode == 0, proc.stderr
    tools = {t["name"]: t for t in json.loads(proc.stdout)["tools"]}
    assert tools["greet"] == {
        "name": "greet",
        "description": "Say hello",
        "supports_streaming": False,
        "is_async": False,
        "parameters": [
            {"name": "who", "type": "str", "required": False,
             "kind": "positional_or_keyword", "default": "world"},
        ],
        "required_variables": ["a", "b"],
        "adapter_class": "UpstreamStyleAdapter",
        "module": "cli_adapters",
    }  # fmt: skip
    assert tools["square"]["parameters"][0]["required"] is True
    code, report = run_json(
        env, "hammer", "cli_adapters:UpstreamStyleAdapter", "--requests", "40", "--threads", "4"
    )
    assert code == 0
    # square needs an argument, so the default mix is greet alone.
    assert report["config"]["mix"] == [{"tool": "greet", "args": {}, "weight": 1}]
    assert report["requests"] == {"completed": 40, "succeeded": 40, "failed": 0}
    assert report["adapter_stats"] == {"calls": 40}


def test_info_prints_package_and_interpreter_facts(env: dict[str, str]) -> None:
    proc = run_cli(env, "info")
    assert proc.returncode == 0, proc.stderr
    # "label  value" lines; labels may contain one space, the gap is two or more.
    facts = dict(re.match(r"(.+?)\s{2,}(.*)$", line).groups() for line in proc.stdout.splitlines())
    from snakepit_bridge import __version__, _native

    assert facts["snakepit-bridge"] == __version__
    assert facts["free-threaded"] == (
        "yes" if sysconfig.get_config_var("Py_GIL_DISABLED") else "no"
    )
    assert facts["GIL"] in ("enabled", "disabled")
    assert facts["native module"] == _native.__file__
    assert facts["python"].startswith("CPython ")
    try:
        import numpy
    except ImportError:
        assert facts["numpy"] == "not installed"
    else:
        assert facts["numpy"] == numpy.__version__

    code_json = run_cli(env, "info", "--json")
    data = json.loads(code_json.stdout)
    assert data["native_module"] == _native.__file__
    assert data["free_threaded_build"] == bool(sysconfig.get_config_var("Py_GIL_DISABLED"))
    assert isinstance(data["gil_enabled"], bool)
    assert isinstance(data["cpu_count"], int) and data["cpu_count"] >= 1


def test_console_script_and_version(env: dict[str, str]) -> None:
    from snakepit_bridge import __version__

    script = Path(sys.executable).with_name("snakepit-bridge")
    if not script.exists():
        pytest.skip("the package is not installed with its console script in this environment")
    proc = subprocess.run(
        [str(script), "--version"], capture_output=True, text=True, env=env, timeout=RUN_TIMEOUT
    )
    assert proc.returncode == 0
    assert proc.stdout.strip() == f"snakepit-bridge {__version__}"


def test_help_exits_0(env: dict[str, str]) -> None:
    proc = run_cli(env, "hammer", "--help")
    assert proc.returncode == 0
    for option in ("--tool", "--args", "--threads", "--requests", "--duration",
                   "--thread-safety-check", "--strict", "--json", "--seed"):  # fmt: skip
        assert option in proc.stdout


# --------------------------------------------------------------------------------------------
# Engine pieces behind the report, in process
# --------------------------------------------------------------------------------------------


def test_latency_percentiles_are_within_the_documented_precision() -> None:
    import math
    import random

    from snakepit_bridge.hammer import LatencyHistogram

    rng = random.Random(3)
    samples = [int(rng.lognormvariate(11, 2)) for _ in range(20_000)]
    histogram = LatencyHistogram()
    halves = LatencyHistogram()
    for ns in samples[:10_000]:
        histogram.record(ns)
    for ns in samples[10_000:]:
        halves.record(ns)
    histogram.merge(halves)
    ordered = sorted(samples)
    for p in (50, 90, 99, 99.9):
        exact = ordered[math.ceil(p / 100 * len(ordered)) - 1]
        assert abs(histogram.percentile(p) - exact) <= exact / 128 + 1, p
    assert histogram.max_ns == ordered[-1] and histogram.min_ns == ordered[0]
    assert histogram.count == 20_000 and histogram.total_ns == sum(samples)
    assert LatencyHistogram().percentile(50) == 0


def test_default_mix_of_a_showcase_subclass_includes_its_own_tools() -> None:
    from snakepit_bridge.adapters.threaded_showcase import ThreadedShowcaseAdapter
    from snakepit_bridge.base_adapter import tool
    from snakepit_bridge.hammer import build_mix

    class ShowcasePlus(ThreadedShowcaseAdapter):
        __thread_safe__ = True

        @tool
        def extra(self, level: int = 1) -> int:
            return level

        @tool
        def needs(self, value: int) -> int:
            return value

    mix = {call.tool: call for call in build_mix(ShowcasePlus(), seed=0)}
    assert mix["extra"].weight == 1 and mix["extra"].arguments == {}
    assert "needs" not in mix
    assert mix["matrix_multiply"].weight == 3
    assert len(mix["matrix_multiply"].arguments["input_vector"]) == 100
    with_args = build_mix(
        ShowcasePlus(),
        arguments={"needs": {"value": 2}, "compute_intensive": {"iterations": 5}},
        seed=0,
    )
    calls = {call.tool: call.to_dict() for call in with_args}
    assert calls["needs"] == {"tool": "needs", "args": {"value": 2}, "weight": 1}
    # --args are merged over the default arguments, not instead of them.
    assert calls["compute_intensive"]["args"]["iterations"] == 5
    assert len(calls["compute_intensive"]["args"]["data"]) == 16


def test_an_adapter_class_declares_its_own_default_mix() -> None:
    import random

    from snakepit_bridge import ThreadSafeAdapter, hammer, tool

    class Declares(ThreadSafeAdapter):
        __thread_safe__ = True

        @classmethod
        def default_hammer_mix(cls):  # type: ignore[no-untyped-def]
            return {"scaled": (4, lambda rng: {"x": rng.randrange(1000)})}

        @tool
        def scaled(self, x: int) -> int:
            return x

        @tool
        def free(self) -> int:
            return 0

    mix = {call.tool: call for call in hammer.build_mix(Declares(), seed=3)}
    assert mix["scaled"].weight == 4
    assert mix["scaled"].arguments == {"x": random.Random(3).randrange(1000)}
    assert mix["free"].weight == 1 and mix["free"].arguments == {}

    class Inherits(Declares):
        pass

    assert hammer.build_mix(Inherits(), seed=3) == hammer.build_mix(Declares(), seed=3)

    class BadWeight(Declares):
        @classmethod
        def default_hammer_mix(cls):  # type: ignore[no-untyped-def]
            return {"scaled": (0, lambda rng: {})}

    with pytest.raises(TypeError, match="the weight of 'scaled' must be an int >= 1"):
        hammer.build_mix(BadWeight(), seed=0)


def test_the_schedule_is_the_seeded_draw_and_streams() -> None:
    """Per-tool counts are fixed by the seed (the same draw as one up-front schedule), and a
    run of any length holds only a bounded piece of the schedule."""
    import collections
    import random
    import tracemalloc

    from snakepit_bridge import ThreadSafeAdapter, hammer, thread_safe_method, tool

    class Two(ThreadSafeAdapter):
        __thread_safe__ = True

        @thread_safe_method
        @tool
        def light(self) -> int:
            return 1

        @thread_safe_method
        @tool
        def heavy(self) -> int:
            return 2

    mix = [hammer.ToolCall("light", {}, 3), hammer.ToolCall("heavy", {}, 1)]
    result = hammer.run_hammer(Two, mix, threads=3, requests=5_000, seed=42)
    expected = collections.Counter(random.Random(42).choices([0, 1], weights=[3, 1], k=5_000))
    assert {name: stats.requests for name, stats in result.per_tool.items()} == {
        "light": expected[0],
        "heavy": expected[1],
    }

    def stop_at_first_report(_progress: hammer.Progress) -> None:
        raise KeyboardInterrupt  # what Ctrl-C does: the run stops and reports

    tracemalloc.start()
    try:
        huge = hammer.run_hammer(
            Two, mix, threads=2, requests=30_000_000, seed=1,
            on_progress=stop_at_first_report, progress_interval=0.01,
        )  # fmt: skip
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert huge.interrupted and huge.target_requests == 30_000_000
    assert peak < 16 * 2**20, f"{peak / 2**20:.1f} MiB traced for a 30,000,000-request run"
