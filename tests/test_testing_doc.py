"""Every Python example in docs/testing.md is a test module: run each, check its stated outcome.

An example is a ```python block preceded by a ``<!-- doc-test: passed=N failed=M -->`` comment
giving the outcome that pytest must report for it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import pytest

pytest_plugins = ["pytester"]

DOC = Path(__file__).resolve().parent.parent / "docs" / "testing.md"
BLOCK = re.compile(
    r"(?:<!--\s*doc-test:(?P<outcome>[^>]*)-->\s*\n)?```(?P<lang>[\w-]*)\n(?P<code>.*?)\n```",
    re.DOTALL,
)


@dataclass(frozen=True)
class Example:
    line: int
    lang: str
    code: str
    outcome: dict[str, int] | None


def examples() -> list[Example]:
    text = DOC.read_text(encoding="utf-8")
    found = []
    for match in BLOCK.finditer(text):
        outcome = None
        if match.group("outcome") is not None:
            outcome = {
                key: int(value) for key, value in re.findall(r"(\w+)=(\d+)", match.group("outcome"))
            }
        line = text.count("\n", 0, match.start("code"))
        found.append(Example(line, match.group("lang"), match.group("code"), outcome))
    return found


PYTHON_EXAMPLES = [e for e in examples() if e.lang == "python"]


def test_every_python_example_states_its_outcome() -> None:
    assert PYTHON_EXAMPLES, f"no python examples found in {DOC}"
    unmarked = [e.line for e in PYTHON_EXAMPLES if not e.outcome]
    assert not unmarked, f"python blocks without a doc-test comment at lines {unmarked}"


@pytest.mark.parametrize("example", PYTHON_EXAMPLES, ids=lambda e: f"line-{e.line}")
def test_example(pytester: pytest.Pytester, example: Example) -> None:
    assert example.outcome is not None
    pytester.makepyfile(**{f"test_doc_line_{example.line}": example.code})
    result = pytester.runpytest("-p", "no:cacheprovider")
    result.assert_outcomes(**example.outcome)


def test_the_ini_example_sets_the_timeout(pytester: pytest.Pytester) -> None:
    ini = next(e for e in examples() if e.lang == "ini")
    pytester.makefile(".ini", pytest=ini.code)
    pytester.makepyfile(
        """
        def test_timeout(hammer):
            assert hammer.timeout == 120
        """
    )
    pytester.runpytest().assert_outcomes(passed=1)


def test_the_suite_time_limit_is_the_documented_one(pytestconfig: pytest.Config) -> None:
    import tomllib

    documented = tomllib.loads(next(e for e in examples() if e.lang == "toml").code)
    options = documented["tool"]["pytest"]["ini_options"]
    pyproject = tomllib.loads((DOC.parent.parent / "pyproject.toml").read_text(encoding="utf-8"))
    configured = pyproject["tool"]["pytest"]["ini_options"]
    assert options == {key: configured[key] for key in options}
    assert options == {"faulthandler_timeout": 600, "faulthandler_exit_on_timeout": True}


HANGING_TEST = """
import threading

def test_fine():
    pass

def test_hangs_forever():
    threading.Event().wait(120)  # bounded, so a broken time limit cannot hang this suite
"""


@pytest.mark.parametrize("workers", [0, 1], ids=["without-xdist", "xdist"])
def test_a_hanging_test_is_a_named_failure_with_stacks(
    pytester: pytest.Pytester, workers: int
) -> None:
    pytester.makepyfile(test_hang=HANGING_TEST)
    args = ["-p", "no:cacheprovider", "-o", "faulthandler_timeout=2",
            "-o", "faulthandler_exit_on_timeout=true", "-n", str(workers)]  # fmt: skip
    result = pytester.runpytest_subprocess(*args, timeout=90)
    stderr = result.stderr.str()
    assert "Timeout" in stderr and "in test_hangs_forever" in stderr  # the stacks
    if workers:
        result.assert_outcomes(passed=1, failed=1)
        assert "crashed while running 'test_hang.py::test_hangs_forever'" in result.stdout.str()
    else:
        assert result.ret != 0
