"""The command-line examples of docs/cli.md run as documented.

Each example is parsed out of the document, so an edit that breaks one fails here.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CLI_DOC = ROOT / "docs" / "cli.md"
RUN_TIMEOUT = 120  # seconds


def run_cli(
    args: list[str], *, cwd: Path | None = None, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "snakepit_bridge", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        env=env,
        timeout=RUN_TIMEOUT,
        stdin=subprocess.DEVNULL,
    )


def option_row(option: str) -> str:
    """The cell describing ``option`` in the hammer's option table."""
    for line in CLI_DOC.read_text().splitlines():
        if line.startswith(f"| `{option} "):
            return line.split("|")[2]
    raise AssertionError(f"docs/cli.md has no table row for {option}")


def test_the_documented_args_example_runs_on_the_default_adapter() -> None:
    examples = re.findall(r"`('\{.*?\}')`", option_row("--args"))
    assert len(examples) == 1, examples
    (text,) = shlex.split(examples[0])  # as a shell passes the quoted JSON
    arguments = json.loads(text)
    proc = run_cli(["hammer", "--args", text, "--requests", "200", "--quiet", "--json"])
    assert proc.returncode == 0, proc.stdout + proc.stderr
    mix = {call["tool"]: call["args"] for call in json.loads(proc.stdout)["config"]["mix"]}
    for tool, given in arguments.items():
        assert mix[tool].items() >= given.items(), (tool, mix[tool])


# The adapter the --init-args section's examples name, as a user would write it.
MODEL_ADAPTER = textwrap.dedent("""
    from snakepit_bridge.base_adapter_threaded import ThreadSafeAdapter, thread_safe_method, tool


    class Model(ThreadSafeAdapter):
        __thread_safe__ = True

        def __init__(self, model_path, *, device="cpu"):
            super().__init__()
            with open(model_path) as f:
                self.weights = f.read()
            self.device = device

        @thread_safe_method
        @tool
        def predict(self) -> str:
            return self.weights
""")


def init_args_examples() -> list[list[str]]:
    doc = CLI_DOC.read_text()
    section = doc[doc.index("### Constructor arguments: `--init-args`") :]
    block = section[section.index("```\n") + 4 :]
    block = block[: block.index("```")]
    return [shlex.split(line) for line in block.splitlines() if line.strip()]


def test_the_documented_init_args_examples_run(tmp_path: Path) -> None:
    from snakepit_bridge.server.config import parse_config

    examples = init_args_examples()
    assert [e[:2] for e in examples] == [
        ["snakepit-bridge", "hammer"],
        ["snakepit-bridge", "serve"],
    ]
    (tmp_path / "my_project").mkdir()
    (tmp_path / "my_project" / "adapters.py").write_text(MODEL_ADAPTER)
    (tmp_path / "models").mkdir()
    (tmp_path / "models" / "small.bin").write_text("weights")

    hammer = examples[0]
    proc = run_cli([*hammer[1:], "--requests", "20", "--quiet"], cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "20 completed, 20 succeeded, 0 failed" in proc.stdout

    # The server's example: its arguments parse to what the text says, and they fit the class.
    serve = examples[1]
    config = parse_config(serve[2:], {})
    assert config.adapter == "my_project.adapters.Model"
    assert config.init_args.args == ("models/small.bin",)
    check = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys; from snakepit_bridge import loading; "
            "cls = loading.load_adapter_class(sys.argv[1]); "
            "loading.construct_adapter(loading.adapter_factory(cls, "
            "loading.parse_init_args(sys.argv[2])))",
            config.adapter,
            serve[serve.index("--init-args") + 1],
        ],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env={**os.environ, "PYTHONSAFEPATH": ""},
        timeout=RUN_TIMEOUT,
    )
    assert check.returncode == 0, check.stderr
