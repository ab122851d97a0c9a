"""Facts about the running interpreter that decide how to read a concurrency measurement.

The one place that asks whether this is a free-threaded build and whether the GIL is on now:
``snakepit-bridge info``, the hammer report, the benchmarks and the stress runner all use it.
The GIL state is read when asked, not at import: importing an extension module that does not
declare free-threading support turns the GIL back on at run time (see PEP 703 and the Python
documentation's "Python support for free threading").

This module imports nothing from the package at module level, so the benchmarks can load it
from its file without the native core built (``python -m benchmarks --impl baseline``).
"""

from __future__ import annotations

import os
import platform
import sys
import sysconfig
from typing import Any

__all__ = ["cpu_count", "environment", "free_threaded_build", "gil_enabled"]


def gil_enabled() -> bool:
    """Whether the GIL is on now; interpreters before 3.13 cannot turn it off."""
    probe = getattr(sys, "_is_gil_enabled", None)
    return bool(probe()) if probe is not None else True


def free_threaded_build() -> bool:
    """Whether this interpreter was built with ``--disable-gil``."""
    return bool(sysconfig.get_config_var("Py_GIL_DISABLED"))


def cpu_count() -> int | None:
    """CPUs this process may run on (its affinity mask where the platform has one)."""
    process_cpu_count = getattr(os, "process_cpu_count", None)  # 3.13+
    if process_cpu_count is not None:
        count: int | None = process_cpu_count()
        return count
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not Linux
        return os.cpu_count()


def environment() -> dict[str, Any]:
    """Interpreter facts that matter for reading a concurrency report."""
    from snakepit_bridge import __version__

    return {
        "package_version": __version__,
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
        "executable": sys.executable,
        "free_threaded_build": free_threaded_build(),
        "gil_enabled": gil_enabled(),
        "cpu_count": cpu_count(),
    }
