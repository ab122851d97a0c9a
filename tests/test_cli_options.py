"""Option value types: one definition, used by ``snakepit-bridge`` and by the worker server."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any

import pytest

from snakepit_bridge import _options
from snakepit_bridge.cli import _build_parser
from snakepit_bridge.server.config import ConfigError, build_parser, parse_config


def _types(parser: argparse.ArgumentParser) -> dict[str, Any]:
    """Option string -> its ``type=`` function, over the parser and its sub-commands."""
    found: dict[str, Any] = {}
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                found.update(_types(sub))
        for option in action.option_strings:
            found[option] = action.type
    return found


def test_the_command_and_the_server_share_the_value_types() -> None:
    cli = _types(_build_parser())
    server = _types(build_parser("serve"))
    assert cli["--threads"] is _options.positive_int
    assert cli["--requests"] is _options.positive_int
    assert cli["--duration"] is _options.positive_number
    assert server["--max-workers"] is _options.positive_int
    assert server["--max-message-bytes"] is _options.positive_int
    assert server["--max-queued-requests"] is _options.non_negative_int
    assert server["--grace-period"] is _options.non_negative_number


@pytest.mark.parametrize(
    ("convert", "text", "value"),
    [
        (_options.positive_int, "1", 1),
        (_options.positive_int, " 12 ", 12),
        (_options.non_negative_int, "0", 0),
        (_options.positive_number, "0.5", 0.5),
        (_options.non_negative_number, "0", 0.0),
        (_options.non_negative_number, "2.5", 2.5),
    ],
)
def test_values_in_range_are_converted(
    convert: Callable[[str], float], text: str, value: float
) -> None:
    assert convert(text) == value


@pytest.mark.parametrize(
    ("convert", "text", "message"),
    [
        (_options.positive_int, "0", "must be at least 1, got 0"),
        (_options.positive_int, "1.5", "invalid integer: '1.5'"),
        (_options.non_negative_int, "-1", "must not be negative, got -1"),
        (_options.non_negative_int, "x", "invalid integer: 'x'"),
        (_options.positive_number, "0", "must be a positive number, got 0"),
        (_options.positive_number, "inf", "must be a positive number, got inf"),
        (_options.positive_number, "nan", "must be a positive number, got nan"),
        (_options.positive_number, "soon", "invalid number: 'soon'"),
        (_options.non_negative_number, "-0.1", "must be a non-negative number, got -0.1"),
        (_options.non_negative_number, "nan", "must be a non-negative number, got nan"),
    ],
)
def test_values_out_of_range_are_refused_with_the_reason(
    convert: Callable[[str], float], text: str, message: str
) -> None:
    with pytest.raises(argparse.ArgumentTypeError) as caught:
        convert(text)
    assert str(caught.value) == message


def test_the_server_reports_a_bad_value_with_the_shared_message() -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config(["--max-workers", "0"], {})
    assert str(caught.value) == "argument --max-workers: must be at least 1, got 0"
