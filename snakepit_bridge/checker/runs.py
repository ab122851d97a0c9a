"""A checker for one run of the hammer or one test (the pytest plugin's fixture)."""

from __future__ import annotations

from typing import Any

from snakepit_bridge.checker.lockset import ThreadSafetyChecker

__all__ = ["start_checker", "stop_checker"]


def start_checker() -> ThreadSafetyChecker:
    """An enabled checker in its normal mode.

    Never the checker's own strict mode: that raises inside the tool at the racy write, which
    would turn findings into request (or test) errors. The hammer applies ``--strict`` to the
    report instead.
    """
    return ThreadSafetyChecker(enabled=True, strict_mode=False)


def stop_checker(checker: ThreadSafetyChecker) -> dict[str, Any]:
    """Disable ``checker`` (it must not outlive the run it belongs to); return its report."""
    report = dict(checker.get_report())
    checker.disable()
    return report
