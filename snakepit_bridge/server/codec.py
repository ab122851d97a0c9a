"""JSON in, strict JSON out: how tool arguments and results cross the wire.

Snakepit puts every parameter in a ``google.protobuf.Any`` whose ``value`` is *raw JSON text*
(its ``type_url`` names ``StringValue``, but the value is not a packed ``StringValue``), and reads
``ExecuteToolResponse.result.value`` and ``ToolChunk.data`` with a JSON decoder. So:

* arguments: each ``value`` decoded as ``json.loads`` would; ``NaN``/``Infinity`` are refused
  (they are not JSON, RFC 8259 section 6); ``binary_parameters`` are passed to the tool as
  ``bytes`` and never unpickled, whatever the metadata says;
* results: a value that strict JSON can carry is encoded exactly (an ``int`` stays an ``int``,
  a tuple is an array); ``None`` leaves ``result`` unset; ``bytes`` go to ``binary_result``;
  NumPy arrays and scalars become lists and numbers; anything else (NaN, infinities, a set, an
  arbitrary object, a dict with non-string keys) raises ``TypeError``/``ValueError`` naming the
  type and where it sits in the result, so the caller gets an error, never a different value.

NumPy is never imported here: its objects are recognised by their module, and an array is only
ever met when the tool's module already imported NumPy.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from typing import Any

__all__ = [
    "JSON_TYPE_URL",
    "decode_arguments",
    "decode_json",
    "encode_json",
    "to_json_value",
]

# What Snakepit's Elixir side puts in type_url for JSON values (and ignores when reading).
JSON_TYPE_URL = "type.googleapis.com/google.protobuf.StringValue"


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON (RFC 8259 allows finite numbers only)")


# One decoder and one encoder for every request, on every thread (neither keeps state between
# calls: the decoder's key memo is made per call). ``json.loads``/``json.dumps`` with options
# build a new JSONDecoder/JSONEncoder per call, and on free-threaded 3.13 those constructors'
# attribute stores and lookups (name strings made per call) take interpreter-wide locks when
# several threads do it at once.
_DECODER = json.JSONDecoder(parse_constant=_refuse_constant)
_ENCODER = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), allow_nan=False)


def decode_json(data: bytes, what: str) -> Any:
    """Decode ``data`` as strict JSON; ``ValueError`` naming ``what`` when it is not."""
    try:
        # What json.loads does with bytes: UTF-8, -16 or -32, told apart by the first bytes.
        return _DECODER.decode(data.decode(json.detect_encoding(data), "surrogatepass"))
    except RecursionError:
        raise ValueError(f"{what} is nested too deeply") from None
    except ValueError as exc:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        raise ValueError(f"{what} is not valid JSON: {exc}") from None


def decode_arguments(parameters: Mapping[str, Any], binary: Mapping[str, bytes]) -> dict[str, Any]:
    """Tool keyword arguments from a request's ``parameters`` (Anys with JSON text) and
    ``binary_parameters`` (bytes, passed through). A name in both is ambiguous: ``ValueError``."""
    arguments: dict[str, Any] = {}
    for name, value in parameters.items():
        arguments[name] = decode_json(value.value, f"parameter {name!r}")
    for name, blob in binary.items():
        if name in arguments:
            raise ValueError(f"parameter {name!r} is given both as JSON and as a binary parameter")
        arguments[name] = bytes(blob)
    return arguments


def encode_json(value: Any, what: str = "result") -> bytes:
    """``value`` as compact UTF-8 strict JSON (see :func:`to_json_value` for what is allowed)."""
    tree = to_json_value(value, what)
    try:
        text = _ENCODER.encode(tree)
    except ValueError:
        # Only NumPy float arrays reach the encoder unchecked (see _numpy_value); name the spot.
        raise ValueError(
            f"{_first_non_finite(tree, what)} is not finite: JSON has no NaN or infinities"
        ) from None
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise ValueError(
            f"{what} holds a string that is not valid Unicode (a lone surrogate at "
            f"position {exc.start}); it cannot be encoded as UTF-8 JSON"
        ) from None


def to_json_value(value: Any, what: str = "result") -> Any:
    """A tree of dict/list/str/int/float/bool/None equal to ``value``, or an error naming the
    first thing in it that JSON cannot carry exactly."""
    try:
        return _convert(value, what, set())
    except RecursionError:
        raise ValueError(f"{what} is nested too deeply to encode") from None


def _convert(value: Any, path: str, active: set[int]) -> Any:
    kind = type(value)
    if value is None or kind is str or kind is bool or kind is int:
        return value
    if kind is float:
        if math.isfinite(value):
            return value
        raise ValueError(f"{path} is the float {value!r}: JSON has no NaN or infinities")
    if kind is dict or kind is list or kind is tuple or isinstance(value, (dict, list, tuple)):
        return _container(value, path, active)
    if kind.__module__ == "numpy":
        return _numpy_value(value, path, active)
    # Subclasses of the JSON scalars (IntEnum, str enums, NumPy's float64) as their base value.
    if isinstance(value, bool):
        return bool(value)
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        return _convert(float(value), path, active)
    if isinstance(value, str):
        return str.__str__(value)  # the characters, not a str-enum's "Name.MEMBER"
    if isinstance(value, (bytes, bytearray, memoryview)):
        raise TypeError(
            f"{path} is {kind.__name__}: bytes can only be a whole result (sent as "
            "binary_result), not part of a JSON value"
        )
    raise TypeError(f"{path} is of type {_type_name(kind)}, which JSON cannot carry")


def _container(value: Any, path: str, active: set[int]) -> Any:
    marker = id(value)
    if marker in active:
        raise ValueError(f"{path} refers to itself (a circular reference)")
    active.add(marker)
    try:
        if isinstance(value, dict):
            out: dict[str, Any] = {}
            for key, item in value.items():
                if not isinstance(key, str):
                    raise TypeError(
                        f"{path} has a key of type {_type_name(type(key))} ({key!r}): JSON "
                        "object keys are strings"
                    )
                out[str(key)] = _convert(item, f"{path}[{key!r}]", active)
            return out
        return [_convert(item, f"{path}[{index}]", active) for index, item in enumerate(value)]
    finally:
        active.discard(marker)


def _numpy_value(value: Any, path: str, active: set[int]) -> Any:
    dtype = getattr(value, "dtype", None)
    if hasattr(value, "tolist") and hasattr(value, "shape") and getattr(value, "ndim", 0) > 0:
        if dtype is not None and dtype.kind in "biu":
            return value.tolist()  # Python ints and bools: nothing to check
        if dtype is not None and dtype.kind == "f":
            return value.tolist()  # floats: the encoder (allow_nan=False) checks finiteness
        return _convert(value.tolist(), path, active)
    item = getattr(value, "item", None)
    if callable(item):  # a NumPy scalar, or a 0-d array
        plain = item()
        if type(plain).__module__ == "numpy":
            raise TypeError(f"{path} is of type {_type_name(type(value))}, which JSON cannot carry")
        return _convert(plain, path, active)
    raise TypeError(f"{path} is of type {_type_name(type(value))}, which JSON cannot carry")


def _first_non_finite(tree: Any, path: str) -> str:
    stack: list[tuple[Any, str]] = [(tree, path)]
    while stack:
        node, where = stack.pop()
        if isinstance(node, float) and not math.isfinite(node):
            return f"{where} (the float {node!r})"
        if isinstance(node, dict):
            stack.extend((v, f"{where}[{k!r}]") for k, v in reversed(node.items()))
        elif isinstance(node, list):
            stack.extend((v, f"{where}[{i}]") for i, v in reversed(list(enumerate(node))))
    return path


def _type_name(kind: type) -> str:
    module = kind.__module__
    return kind.__qualname__ if module == "builtins" else f"{module}.{kind.__qualname__}"
