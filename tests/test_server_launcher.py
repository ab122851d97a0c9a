"""``snakepit-bridge-python``, the launcher Snakepit's ``python_executable`` points at."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

import snakepit_bridge_launcher as launcher

ROOT = Path(__file__).resolve().parent.parent

try:
    import tomllib
except ImportError:  # Python 3.10 has none; the package needs 3.11+
    tomllib = None  # type: ignore[assignment]


def test_server_scripts_are_run_isolated_with_our_package() -> None:
    script = "/deps/snakepit/priv/python/grpc_server_threaded.py"
    command = launcher.command_for([script, "--port", "0"], executable="/py")
    assert command[:3] == ["/py", "-I", str(ROOT / "snakepit_bridge_launcher.py")]
    assert command[3:] == [launcher.BOOT_FLAG, launcher.package_root(), script, "--port", "0"]
    assert Path(launcher.package_root(), "snakepit_bridge", "__init__.py").is_file()
    assert launcher.command_for(["grpc_server.py"], executable="/py")[1] == "-I"


@pytest.mark.parametrize(
    "argv",
    [
        ["-c", "import sys; print(sys.version)"],
        ["--version"],
        ["server.py"],
        ["my_grpc_server.py"],
        [],
    ],
)
def test_anything_else_passes_through_unchanged(argv: list[str]) -> None:
    assert launcher.command_for(argv, executable="/py") == ["/py", *argv]


def test_the_package_declares_the_launcher() -> None:
    if tomllib is None:
        pytest.skip("tomllib needs Python 3.11")
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert (
        project["project"]["scripts"]["snakepit-bridge-python"] == "snakepit_bridge_launcher:main"
    )
    assert "snakepit_bridge_launcher" in project["tool"]["setuptools"]["py-modules"]


# -- end to end, as Snakepit runs it -------------------------------------------------------------


@pytest.fixture
def snakepit_layout(tmp_path: Path) -> Iterator[dict[str, Path]]:
    """A fake Snakepit priv/python (whose snakepit_bridge and grpclib would shadow ours), a
    user directory with the adapter, and an executable standing in for the console script."""
    priv = tmp_path / "deps" / "snakepit" / "priv" / "python"
    for shadow in ("snakepit_bridge", "grpclib"):
        (priv / shadow).mkdir(parents=True)
        (priv / shadow / "__init__.py").write_text(
            f"raise ImportError('the {shadow} in priv/python shadowed the real one')\n"
        )
    (priv / "grpc_server_threaded.py").write_text("raise SystemExit('upstream server ran')\n")
    user = tmp_path / "user"
    user.mkdir()
    (user / "user_adapters.py").write_text(
        textwrap.dedent("""
        import sys
        import snakepit_bridge
        from snakepit_bridge.base_adapter_threaded import ThreadSafeAdapter, tool

        class UserAdapter(ThreadSafeAdapter):
            __thread_safe__ = True

            @tool
            def where(self) -> dict:
                return {"package": snakepit_bridge.__file__, "isolated": sys.flags.isolated}
    """)
    )
    # pip writes the console script as `#!<venv python>` + `from snakepit_bridge_launcher import
    # main`; this stand-in imports the launcher of this checkout instead of the installed one.
    executable = tmp_path / "snakepit-bridge-python"
    executable.write_text(
        f"#!{sys.executable}\nimport sys\nsys.path.insert(0, {str(ROOT)!r})\n"
        "from snakepit_bridge_launcher import main\nsys.exit(main())\n"
    )
    executable.chmod(0o755)
    yield {"priv": priv, "user": user, "executable": executable}


def snakepit_env(layout: dict[str, Path]) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "SNAKEPIT_"))}
    env["PYTHONPATH"] = os.pathsep.join([str(layout["priv"]), str(layout["user"])])
    env["SNAKEPIT_PROCESS_GROUP"] = "1"
    return env


def test_the_launcher_serves_our_server_where_snakepit_would_run_its_own(
    snakepit_layout: dict[str, Path], tmp_path: Path
) -> None:
    pytest.importorskip("grpclib")
    from server_harness import (
        ServerPool,
        make_client,
        result_of,
        snakepit_args,
        tool_request,
    )
    from snakepit_bridge.server.proto import bridge_pb2 as pb

    script = snakepit_layout["priv"] / "grpc_server_threaded.py"
    pool = ServerPool(tmp_path)
    try:
        server = pool.start(
            snakepit_args("user_adapters.UserAdapter", 2),
            command=[str(snakepit_layout["executable"]), str(script)],
            env=snakepit_env(snakepit_layout),
            cwd=snakepit_layout["priv"],  # Snakepit runs the worker in priv/python
        )
        client = make_client(server.address)
        try:
            assert client.unary("Ping", pb.PingRequest(message="x"), pb.PingResponse).message
            seen = result_of(
                client.unary("ExecuteTool", tool_request("where"), pb.ExecuteToolResponse)
            )
        finally:
            client.close()
        assert seen["package"] == str(ROOT / "snakepit_bridge" / "__init__.py")
        assert seen["isolated"] == 1
        # exec: the same pid, still recognisable by Snakepit's orphan cleanup.
        cmdline = Path(f"/proc/{server.proc.pid}/cmdline").read_bytes().split(b"\0")
        assert str(script).encode() in cmdline and b"--snakepit-run-id" in cmdline
        assert os.getpgid(server.proc.pid) == server.proc.pid
        server.signal(signal.SIGTERM)
        assert server.wait() == 0, server.stderr()
    finally:
        pool.reap_all()


def test_interpreter_probes_pass_through(snakepit_layout: dict[str, Path]) -> None:
    env = snakepit_env(snakepit_layout)
    probe = subprocess.run(
        [
            str(snakepit_layout["executable"]),
            "-c",
            "import sys; print(sys.flags.isolated, sys.executable)",
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )
    assert probe.returncode == 0, probe.stderr
    assert probe.stdout.split() == ["0", sys.executable]
    version = subprocess.run(
        [str(snakepit_layout["executable"]), "--version"],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )
    assert version.stdout.strip() == f"Python {sys.version.split()[0]}"
