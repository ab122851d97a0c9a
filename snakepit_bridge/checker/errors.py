"""What the checker raises and warns with."""

from __future__ import annotations

__all__ = ["ThreadSafetyError", "ThreadSafetyWarning"]


class ThreadSafetyWarning(RuntimeWarning):
    """Issued by a checker for each thread-safety problem it finds (once per problem)."""


class ThreadSafetyError(RuntimeError):
    """Raised by a strict-mode checker at a racy write or when an unsafe library is found."""
