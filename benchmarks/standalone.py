"""The package's standard-library-only modules, loaded from their files.

``snakepit_bridge.environment`` (interpreter facts) and ``snakepit_bridge.concurrency`` (the one
thread harness) import nothing but the standard library. The ordinary import
(``import snakepit_bridge.environment``) would first run the package's ``__init__``, which
imports the native core; the baseline runs without it (``python -m benchmarks --impl
baseline``), so these two modules are loaded here on their own.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

__all__ = ["concurrency", "environment"]

_PACKAGE = Path(__file__).resolve().parent.parent / "snakepit_bridge"


def _load(name: str) -> ModuleType:
    qualified = f"benchmarks._package_{name}"
    spec = importlib.util.spec_from_file_location(qualified, _PACKAGE / f"{name}.py")
    assert spec is not None and spec.loader is not None, name
    module = importlib.util.module_from_spec(spec)
    sys.modules[qualified] = module  # dataclasses and pickling look modules up by name
    spec.loader.exec_module(module)
    return module


environment = _load("environment")
concurrency = _load("concurrency")
