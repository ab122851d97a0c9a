"""Suite-wide isolation: a thread-safety checker never outlives the test that enabled it.

Guide examples create enabled checkers and let them go; until the collector frees them they
would keep observing, and report, the adapters of whatever test runs next in that process.
"""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest

from snakepit_bridge.checker import hooks


@pytest.fixture(autouse=True)
def _no_checker_outlives_its_test() -> Iterator[None]:
    yield
    if hooks.live_checkers():
        gc.collect()  # frees the checkers nothing refers to any more
        for checker in hooks.live_checkers():
            checker.disable()
