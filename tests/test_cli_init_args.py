"""``--init-args``: constructor arguments for an adapter, in ``hammer``, ``tools`` and ``serve``.

Each command runs in a subprocess; the server's configuration is also checked in process.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

from snakepit_bridge import loading
from snakepit_bridge.server.config import ConfigError, parse_config

RUN_TIMEOUT = 120  # seconds

MODEL_ADAPTERS = textwrap.dedent("""
    from snakepit_bridge.base_adapter_threaded import ThreadSafeAdapter, thread_safe_method, tool


    class ModelAdapter(ThreadSafeAdapter):
        \"\"\"Needs a model file, as real adapters do.\"\"\"

        __thread_safe__ = True

        def __init__(self, model_path, *, scale=1):
            super().__init__()
            with open(model_path) as f:
                self.weights = f.read().strip()
            self.scale = scale

        @thread_safe_method
        @tool(description="The model's answer")
        def predict(self) -> str:
            return self.weights * self.scale

        def get_stats(self):
            return {**super().get_stats(), "weights": self.weights, "scale": self.scale}


    def make_adapter():
        return ModelAdapter("model.bin")
""")


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("init_args")
    (path / "init_adapters.py").write_text(MODEL_ADAPTERS)
    (path / "model.bin").write_text("ab\n")
    return path


@pytest.fixture(scope="module")
def env(folder: Path) -> dict[str, str]:
    variables = {k: v for k, v in os.environ.items() if not k.startswith("SNAKEPIT_")}
    variables["PYTHONPATH"] = os.pathsep.join(
        p for p in (str(folder), variables.get("PYTHONPATH")) if p
    )
    return variables


def run_cli(env: dict[str, str], cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "snakepit_bridge", *args],
        capture_output=True,
        text=True,
        env=env,
        cwd=cwd,
        timeout=RUN_TIMEOUT,
        stdin=subprocess.DEVNULL,
    )


HAMMER = ("hammer", "init_adapters:ModelAdapter", "--requests", "50", "--threads", "2", "--quiet")


def test_keyword_arguments_from_a_json_object(env: dict[str, str], folder: Path) -> None:
    proc = run_cli(env, folder, *HAMMER, "--init-args", '{"model_path": "model.bin", "scale": 3}')
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert (
        'adapter     init_adapters:ModelAdapter, init args {"model_path": "model.bin", "scale": 3}'
        in proc.stdout
    )
    as_json = run_cli(
        env, folder, *HAMMER, "--json", "--init-args", '{"model_path": "model.bin", "scale": 3}'
    )
    report = json.loads(as_json.stdout)
    assert report["adapter"] == "init_adapters:ModelAdapter"
    assert report["adapter_stats"]["weights"] == "ab"
    assert report["adapter_stats"]["scale"] == 3
    assert report["requests"]["succeeded"] == 50


def test_positional_arguments_from_a_json_array(env: dict[str, str], folder: Path) -> None:
    proc = run_cli(env, folder, *HAMMER, "--json", "--init-args", '["model.bin"]')
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert json.loads(proc.stdout)["adapter_stats"]["scale"] == 1


def test_tools_builds_the_adapter_with_them(env: dict[str, str], folder: Path) -> None:
    proc = run_cli(
        env, folder, "tools", "init_adapters:ModelAdapter", "--init-args", '["model.bin"]'
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "The model's answer" in proc.stdout


SIGNATURE = "ModelAdapter(model_path, *, scale=1)"
USAGE_ERRORS = [
    (
        [],
        f"snakepit-bridge: error: {SIGNATURE} needs constructor arguments (missing a required "
        """argument: 'model_path'): give them with --init-args '{"model_path": "..."}'""",
    ),
    (
        ["--init-args", '{"model_path": "model.bin", "scael": 2}'],
        f"snakepit-bridge: error: --init-args do not fit {SIGNATURE}: got an unexpected keyword "
        "argument 'scael'",
    ),
    (
        ["--init-args", '["model.bin", 2]'],
        f"snakepit-bridge: error: --init-args do not fit {SIGNATURE}: too many positional "
        "arguments",
    ),
    (
        ["--init-args", '{"model_path": '],
        "snakepit-bridge {command}: error: argument --init-args: not valid JSON: Expecting value: "
        "line 1 column 16 (char 15) (see --help)",
    ),
    (
        ["--init-args", '"model.bin"'],
        "snakepit-bridge {command}: error: argument --init-args: must be a JSON object of keyword "
        """arguments, e.g. '{"model_path": "model.bin"}', or a JSON array of positional """
        "arguments, not a string (see --help)",
    ),
]


@pytest.mark.parametrize("command", ["hammer", "tools"])
@pytest.mark.parametrize(("args", "line"), USAGE_ERRORS)
def test_arguments_that_do_not_fit_are_one_line_and_exit_2(
    env: dict[str, str], folder: Path, command: str, args: list[str], line: str
) -> None:
    proc = run_cli(env, folder, command, "init_adapters:ModelAdapter", *args)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert proc.stdout == ""
    assert proc.stderr == line.replace("{command}", command) + "\n"


def test_a_factory_function_is_refused_pointing_at_init_args(
    env: dict[str, str], folder: Path
) -> None:
    proc = run_cli(env, folder, "hammer", "init_adapters:make_adapter")
    assert proc.returncode == 2
    assert proc.stderr == (
        "snakepit-bridge: error: 'init_adapters:make_adapter' is a function, not an adapter "
        "class: name the class, and give its constructor arguments with --init-args\n"
    )


@pytest.mark.parametrize("command", ["hammer", "tools"])
def test_a_constructor_that_fails_with_its_arguments_exits_1_with_its_traceback(
    env: dict[str, str], folder: Path, command: str
) -> None:
    proc = run_cli(
        env, folder, command, "init_adapters:ModelAdapter", "--init-args", '["missing.bin"]'
    )
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "with open(model_path) as f:" in proc.stderr  # the adapter's own traceback
    assert proc.stderr.splitlines()[-1] == (
        "snakepit-bridge: error: constructing ModelAdapter failed: FileNotFoundError: "
        "[Errno 2] No such file or directory: 'missing.bin'"
    )


# --------------------------------------------------------------------------------------------
# The loading API behind them
# --------------------------------------------------------------------------------------------


def test_parse_init_args() -> None:
    assert loading.parse_init_args('{"a": 1}') == loading.InitArgs(kwargs={"a": 1})
    assert loading.parse_init_args("[1, 2]") == loading.InitArgs(args=(1, 2))
    assert not loading.parse_init_args("{}") and not loading.parse_init_args("[]")
    assert str(loading.parse_init_args('{"a": [1]}')) == '{"a": [1]}'
    for text, kind in [("null", "null"), ("true", "a boolean"), ("1.5", "a number")]:
        with pytest.raises(ValueError, match=f"not {kind}$"):
            loading.parse_init_args(text)


def test_adapter_factory_is_the_class_without_arguments() -> None:
    class Plain:
        def __init__(self, path: str = "x") -> None:
            self.path = path

    assert loading.adapter_factory(Plain) is Plain
    factory = loading.adapter_factory(Plain, loading.InitArgs(kwargs={"path": "y"}))
    assert repr(factory) == loading.adapter_spec(Plain)
    assert factory.__qualname__ == Plain.__qualname__
    built: Any = loading.construct_adapter(factory)
    assert isinstance(built, Plain) and built.path == "y"
    with pytest.raises(loading.AdapterArgumentsError, match="too many positional arguments"):
        loading.adapter_factory(Plain, loading.InitArgs(args=(1, 2)))


def test_a_positional_only_constructor_gets_an_array_example() -> None:
    class Positional:
        def __init__(self, path: str, /) -> None:
            self.path = path

    with pytest.raises(loading.AdapterArgumentsError) as caught:
        loading.adapter_factory(Positional)
    assert str(caught.value).endswith("""give them with --init-args '["..."]'""")


# --------------------------------------------------------------------------------------------
# The server
# --------------------------------------------------------------------------------------------


def test_server_config_reads_init_args_among_unknown_arguments() -> None:
    config = parse_config(
        ["--adapter", "m.A", "--init-args", '{"model_path": "x"}', "--mode", "threaded"], {}
    )
    assert config.init_args == loading.InitArgs(kwargs={"model_path": "x"})
    assert config.unknown_args == ("--mode", "threaded")
    assert not parse_config([], {}).init_args
    with pytest.raises(ConfigError, match="^argument --init-args: not valid JSON"):
        parse_config(["--init-args", "{"], {})


def test_serve_builds_the_adapter_with_init_args(folder: Path, tmp_path: Path) -> None:
    pytest.importorskip("grpclib")
    from server_harness import ServerPool, base_env, make_client, result_of, tool_request
    from snakepit_bridge.server.proto import bridge_pb2 as pb

    env = base_env()
    env["PYTHONPATH"] += os.pathsep + str(folder)
    pool = ServerPool(tmp_path)
    try:
        server = pool.start(
            [
                "--adapter",
                "init_adapters.ModelAdapter",
                "--init-args",
                '{"model_path": "model.bin", "scale": 2}',
                "--max-workers",
                "2",
                "--mode",
                "threaded",
            ],
            env=env,
            cwd=folder,
        )
        client = make_client(server.address)
        try:
            reply = client.unary("ExecuteTool", tool_request("predict"), pb.ExecuteToolResponse)
        finally:
            client.close()
        assert result_of(reply) == "abab"
        server.signal(signal.SIGTERM)
        assert server.wait() == 0, server.stderr()
    finally:
        pool.reap_all()


@pytest.mark.parametrize(
    ("init_args", "status", "message"),
    [
        (None, 2, f"{SIGNATURE} needs constructor arguments"),
        ('{"scale": 2}', 2, f"--init-args do not fit {SIGNATURE}: missing a required argument"),
        ("[", 2, "argument --init-args: not valid JSON"),
        ('["missing.bin"]', 1, "constructing ModelAdapter failed: FileNotFoundError"),
    ],
)
def test_serve_refuses_arguments_that_do_not_fit_in_one_line(
    folder: Path, tmp_path: Path, init_args: str | None, status: int, message: str
) -> None:
    pytest.importorskip("grpclib")
    from server_harness import ServerPool, base_env

    env = base_env()
    env["PYTHONPATH"] += os.pathsep + str(folder)
    args = ["--adapter", "init_adapters.ModelAdapter", "--max-workers", "2"]
    if init_args is not None:
        args += ["--init-args", init_args]
    pool = ServerPool(tmp_path)
    try:
        server = pool.start(args, env=env, cwd=folder, wait_ready=False)
        assert server.wait() == status
        lines = server.stderr().splitlines()
        assert len(lines) == 1, lines
        assert lines[0].startswith("python -m snakepit_bridge.server: error: ")
        assert message in lines[0]
        assert not server.ready_file.exists()
    finally:
        pool.reap_all()
