"""Value types of command-line options, shared by ``snakepit-bridge`` and the worker server.

Each is an ``argparse`` ``type=`` function: it returns the value or raises
``argparse.ArgumentTypeError`` with a message that argparse prints after the option's name
(``argument --threads: must be at least 1, got 0``). Standard library only (and
:mod:`snakepit_bridge.loading`, which is too), so the server's configuration can use them
without importing the command line.
"""

from __future__ import annotations

import argparse
import math

from snakepit_bridge.loading import InitArgs, parse_init_args

__all__ = [
    "init_args",
    "non_negative_int",
    "non_negative_number",
    "positive_int",
    "positive_number",
]

INIT_ARGS_HELP = (
    "the adapter's constructor arguments: a JSON object of keyword arguments, e.g. "
    '\'{"model_path": "model.bin"}\', or a JSON array of positional ones'
)


def _integer(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid integer: {text!r}") from None


def _number(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid number: {text!r}") from None


def positive_int(text: str) -> int:
    """An integer of at least 1."""
    value = _integer(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def non_negative_int(text: str) -> int:
    """An integer of at least 0."""
    value = _integer(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must not be negative, got {value}")
    return value


def positive_number(text: str) -> float:
    """A finite number above 0."""
    value = _number(text)
    if not math.isfinite(value) or value <= 0:
        raise argparse.ArgumentTypeError(f"must be a positive number, got {text}")
    return value


def non_negative_number(text: str) -> float:
    """A finite number of at least 0."""
    value = _number(text)
    if not math.isfinite(value) or value < 0:
        raise argparse.ArgumentTypeError(f"must be a non-negative number, got {text}")
    return value


def init_args(text: str) -> InitArgs:
    """``--init-args``: see :func:`snakepit_bridge.loading.parse_init_args`."""
    try:
        return parse_init_args(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
