"""README.md stays true: its "Using it in your project" steps run for real, and its links work
where it is shown without the repository (PyPI), pointing where pyproject.toml's URLs do.

The steps are parsed out of the README: the adapter is written where the README says, the
commands run through the installed console script from that project folder, and the README's
pytest test runs there with the installed plugin.
"""

from __future__ import annotations

import re
import shlex
import signal
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from test_cli_project import console_script, project_env

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
RUN_TIMEOUT = 120  # seconds


def section(title: str) -> str:
    text = README.read_text()
    start = text.index(f"## {title}\n")
    end = text.find("\n## ", start + 1)
    return text[start : end if end != -1 else None]


def fenced_blocks(text: str) -> list[tuple[str, str]]:
    """``(language, code)`` of each fenced block, in order."""
    return re.findall(r"^```(\w*)\n(.*?)^```$", text, flags=re.S | re.M)


USING = section("Using it in your project")


def project_steps() -> tuple[str, str, list[list[str]], str]:
    """(adapter path, adapter code, the commands, the pytest test) from the README."""
    blocks = fenced_blocks(USING)
    python = [code for language, code in blocks if language == "python"]
    assert len(python) == 2, "the section shows the adapter, then its test"
    commands = [
        shlex.split(line)
        for language, code in blocks
        if language == "bash"
        for line in code.splitlines()
        if line.startswith("snakepit-bridge ")
    ]
    path = re.search(r"say `([\w/]+\.py)`", USING)
    assert path is not None, "the section names the adapter's file"
    return path.group(1), python[0], commands, python[1]


@pytest.fixture
def project(tmp_path: Path) -> Path:
    path, adapter, _, _ = project_steps()
    folder = tmp_path / "project"
    (folder / path).parent.mkdir(parents=True)
    (folder / path).write_text(adapter)
    return folder


def test_the_project_commands_run_from_the_project_folder(project: Path) -> None:
    _, _, commands, _ = project_steps()
    assert [c[:2] for c in commands] == [
        ["snakepit-bridge", "hammer"],
        ["snakepit-bridge", "tools"],
    ]
    for command in commands:
        proc = subprocess.run(
            [str(console_script()), *command[1:]],
            cwd=project,
            env=project_env(),
            capture_output=True,
            text=True,
            timeout=RUN_TIMEOUT,
            stdin=subprocess.DEVNULL,
        )
        assert proc.returncode == 0, f"{shlex.join(command)}:\n{proc.stdout}{proc.stderr}"
        if command[1] == "hammer":
            assert "requests    5,000 completed, 5,000 succeeded, 0 failed" in proc.stdout
            assert "thread-safety checker: 0 warning(s)" in proc.stdout
            assert proc.stdout.splitlines()[-1] == "result: OK"
        else:
            assert proc.stdout.splitlines()[0] == "my_project.adapters:Counter: 1 tool(s)"
            assert "Add to the shared counter" in proc.stdout


def test_the_readme_test_passes_with_the_installed_plugin(project: Path) -> None:
    console_script()  # the plugin is registered by the installed distribution, as the script is
    _, _, _, test = project_steps()
    (project / "test_adapter.py").write_text(test)
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "test_adapter.py"],
        cwd=project,
        env=project_env(),
        capture_output=True,
        text=True,
        timeout=RUN_TIMEOUT,
        stdin=subprocess.DEVNULL,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "1 passed" in proc.stdout


def test_the_serve_command_serves_the_project_adapter(project: Path, tmp_path: Path) -> None:
    pytest.importorskip("grpclib")
    from server_harness import ServerPool

    found = re.search(r"`(snakepit-bridge serve [^`]+)`", USING)
    assert found is not None
    command = shlex.split(found.group(1))
    pool = ServerPool(tmp_path)
    try:
        server = pool.start(
            [*command[2:], "--max-workers", "2"],
            command=[str(console_script()), "serve"],
            env=project_env(),
            cwd=project,
        )
        server.signal(signal.SIGTERM)
        assert server.wait() == 0, server.stderr()
        assert "serving my_project.adapters:Counter on 127.0.0.1:" in server.stderr()
    finally:
        pool.reap_all()


def test_the_install_lines_name_extras_the_package_has() -> None:
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    extras = set(pyproject["project"]["optional-dependencies"])
    named = re.findall(r"pip install '?snakepit-bridge(?:\[(\w+)\])?'?", USING)
    assert named.count("") == 1, "the plain install comes first"
    assert {n for n in named if n} == {"numpy", "server"} <= extras


# --------------------------------------------------------------------------------------------
# Links
# --------------------------------------------------------------------------------------------


def project_urls() -> dict[str, str]:
    urls: dict[str, str] = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["urls"]
    return urls


def github_slug(heading: str) -> str:
    """The anchor GitHub gives a heading."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


def test_project_urls_share_one_base() -> None:
    urls = project_urls()
    assert set(urls) >= {"Documentation", "Source", "Issues"}
    base = urls["Source"]
    assert base.startswith("https://")
    for name, url in urls.items():
        assert url.startswith(base), (name, url)


def test_readme_links_are_absolute_and_point_at_files_of_this_repository() -> None:
    # Code (fenced or inline) is not Markdown: `x["a"]["b"]` is no link.
    text = re.sub(r"^```.*?^```$", "", README.read_text(), flags=re.S | re.M)
    text = re.sub(r"`[^`\n]*`", "", text)
    blob = project_urls()["Source"] + "/blob/main/"
    inline = re.findall(r"\]\(([^)\s]+)\)", text)
    definitions = dict(re.findall(r"^\[([^\]]+)\]: (\S+)$", text, flags=re.M))
    used = set(re.findall(r"\]\[([^\]]+)\]", text))
    assert used <= set(definitions), f"undefined link labels: {used - set(definitions)}"
    targets = inline + list(definitions.values())
    assert len(targets) > 10
    for target in targets:
        assert re.match(r"https?://", target), f"relative link {target!r} breaks on PyPI"
        if not target.startswith(blob):
            continue
        path, _, anchor = target.removeprefix(blob).partition("#")
        assert (ROOT / path).is_file(), f"{target} names no file of the repository"
        if anchor:
            headings = re.findall(r"^#+ (.+)$", (ROOT / path).read_text(), flags=re.M)
            assert anchor in {github_slug(h) for h in headings}, f"{target}: no such heading"
