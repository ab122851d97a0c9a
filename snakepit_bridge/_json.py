"""JSON-safe copies of values that may hold anything (tool defaults, adapter statistics).

One rule for every place that shows such values as JSON (``ParameterSpec.to_dict``, the hammer
report, the command line's ``--json`` output): what JSON can hold is kept, containers are copied
recursively (tuples and sets become lists, mapping keys strings), and everything else becomes its
``repr``, including the floats ``nan``, ``inf`` and ``-inf``, which ``json`` would otherwise write
as the non-standard ``NaN`` / ``Infinity`` (RFC 8259 has no such numbers).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

__all__ = ["json_safe"]

# Deeper than this, a value is shown as its repr (this also ends self-referencing containers).
_MAX_DEPTH = 20


def json_safe(value: Any, depth: int = 0) -> Any:
    """A JSON-encodable copy of ``value`` (see the module docstring); ``json.dumps`` of the
    result with ``allow_nan=False`` never fails."""
    if isinstance(value, float) and not math.isfinite(value):
        return repr(value)
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if depth > _MAX_DEPTH:
        return repr(value)
    if isinstance(value, Mapping):
        return {str(k): json_safe(v, depth + 1) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        items = sorted(value, key=repr) if isinstance(value, (set, frozenset)) else value
        return [json_safe(v, depth + 1) for v in items]
    return repr(value)
