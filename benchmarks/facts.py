"""The package's interpreter facts (``snakepit_bridge/environment.py``), loaded from its file.

The ordinary import (``import snakepit_bridge.environment``) first runs the package's
``__init__``, which imports the native core; the baseline runs without it
(``python -m benchmarks --impl baseline``), so the one module is loaded here on its own.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

__all__ = ["environment"]

_PATH = Path(__file__).resolve().parent.parent / "snakepit_bridge" / "environment.py"


def _load() -> ModuleType:
    spec = importlib.util.spec_from_file_location("benchmarks._package_environment", _PATH)
    assert spec is not None and spec.loader is not None, _PATH
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


environment = _load()
