"""Adapter base class and the ``tool`` decorator (placeholder; the registry is built in issue 5).

Constraints the native core relies on: ``BaseAdapter`` keeps ``__slots__ = ()`` and the plain
``type`` metaclass, because ``snakepit_bridge._native.ThreadSafeAdapter`` is a C type that
derives from it.
"""

from __future__ import annotations


class BaseAdapter:
    __slots__ = ()
