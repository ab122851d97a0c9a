"""The server's wire contract and packaging: the proto, its generated code, its dependencies."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from server_harness import free_threaded_python

ROOT = Path(__file__).resolve().parent.parent
PROTO_DIR = ROOT / "snakepit_bridge" / "server" / "proto"
GENERATED = ("bridge_pb2.py", "bridge_pb2.pyi", "bridge_grpc.py")


def test_committed_generated_code_matches_the_proto(tmp_path: Path) -> None:
    pytest.importorskip(
        "grpc_tools",
        reason="grpcio-tools is only installed in the GIL venv "
        "(no free-threaded wheels); this check runs there",
    )
    pytest.importorskip("grpclib", reason="grpclib's protoc plugin generates bridge_grpc.py")
    result = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "gen_proto.py"), "--out", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    fresh = tmp_path / "snakepit_bridge" / "server" / "proto"
    stale = [n for n in GENERATED if (fresh / n).read_bytes() != (PROTO_DIR / n).read_bytes()]
    assert not stale, f"run `make proto`: {stale} differ from what bridge.proto generates"


def test_protobuf_pin_matches_the_generated_code() -> None:
    generated = (PROTO_DIR / "bridge_pb2.py").read_text()
    version = re.search(r"Protobuf Python Version: (\d+)\.(\d+)\.(\d+)", generated)
    assert version is not None
    major, minor, patch = version.groups()
    pyproject = (ROOT / "pyproject.toml").read_text()
    assert f'"protobuf>={major}.{minor}.{patch},<{int(major) + 1}"' in pyproject


# Field number, name and type of every message the worker uses, from Snakepit's protocol.
CONTRACT = {
    "PingRequest": [(1, "message", "string")],
    "PingResponse": [(1, "message", "string"), (2, "server_time", ".google.protobuf.Timestamp")],
    "HeartbeatRequest": [
        (1, "session_id", "string"),
        (2, "client_time", ".google.protobuf.Timestamp"),
    ],
    "HeartbeatResponse": [
        (1, "server_time", ".google.protobuf.Timestamp"),
        (2, "session_valid", "bool"),
    ],
    "SessionConfig": [
        (1, "enable_caching", "bool"),
        (2, "cache_ttl_seconds", "int32"),
        (3, "enable_telemetry", "bool"),
    ],
    "InitializeSessionRequest": [
        (1, "session_id", "string"),
        (2, "metadata", "map<string,string>"),
        (3, "config", ".snakepit.bridge.SessionConfig"),
    ],
    "InitializeSessionResponse": [
        (1, "success", "bool"),
        (2, "error_message", "string"),
        (3, "available_tools", "map<string,.snakepit.bridge.ToolSpec>"),
    ],
    "CleanupSessionRequest": [(1, "session_id", "string"), (2, "force", "bool")],
    "CleanupSessionResponse": [(1, "success", "bool"), (2, "resources_cleaned", "int32")],
    "GetSessionRequest": [(1, "session_id", "string")],
    "GetSessionResponse": [
        (1, "session_id", "string"),
        (2, "metadata", "map<string,string>"),
        (3, "created_at", ".google.protobuf.Timestamp"),
        (4, "tool_count", "int32"),
    ],
    "ExecuteToolRequest": [
        (1, "session_id", "string"),
        (2, "tool_name", "string"),
        (3, "parameters", "map<string,.google.protobuf.Any>"),
        (4, "metadata", "map<string,string>"),
        (5, "stream", "bool"),
        (6, "binary_parameters", "map<string,bytes>"),
    ],
    "ExecuteToolResponse": [
        (1, "success", "bool"),
        (2, "result", ".google.protobuf.Any"),
        (3, "error_message", "string"),
        (4, "metadata", "map<string,string>"),
        (5, "execution_time_ms", "int64"),
        (6, "binary_result", "bytes"),
    ],
    "ToolChunk": [
        (1, "chunk_id", "string"),
        (2, "data", "bytes"),
        (3, "is_final", "bool"),
        (4, "metadata", "map<string,string>"),
    ],
    "ToolSpec": [
        (1, "name", "string"),
        (2, "description", "string"),
        (3, "parameters", "repeated .snakepit.bridge.ParameterSpec"),
        (4, "metadata", "map<string,string>"),
        (5, "supports_streaming", "bool"),
    ],
    "ParameterSpec": [
        (1, "name", "string"),
        (2, "type", "string"),
        (3, "description", "string"),
        (4, "required", "bool"),
        (5, "default_value", ".google.protobuf.Any"),
        (6, "validation_json", "string"),
    ],
    "TelemetryEvent": [
        (1, "event_parts", "repeated string"),
        (2, "measurements", "map<string,.snakepit.bridge.TelemetryValue>"),
        (3, "metadata", "map<string,string>"),
        (4, "timestamp_ns", "int64"),
        (5, "correlation_id", "string"),
    ],
    "TelemetryValue": [
        (1, "int_value", "int64"),
        (2, "float_value", "double"),
        (3, "string_value", "string"),
    ],
    "TelemetryControl": [
        (1, "toggle", ".snakepit.bridge.TelemetryToggle"),
        (2, "sampling", ".snakepit.bridge.TelemetrySamplingUpdate"),
        (3, "filter", ".snakepit.bridge.TelemetryEventFilter"),
    ],
    "TelemetryToggle": [(1, "enabled", "bool")],
    "TelemetrySamplingUpdate": [
        (1, "sampling_rate", "double"),
        (2, "event_patterns", "repeated string"),
    ],
    "TelemetryEventFilter": [(1, "allow", "repeated string"), (2, "deny", "repeated string")],
}
RPCS = {
    "Ping": ("PingRequest", "PingResponse", False, False),
    "Heartbeat": ("HeartbeatRequest", "HeartbeatResponse", False, False),
    "InitializeSession": ("InitializeSessionRequest", "InitializeSessionResponse", False, False),
    "CleanupSession": ("CleanupSessionRequest", "CleanupSessionResponse", False, False),
    "GetSession": ("GetSessionRequest", "GetSessionResponse", False, False),
    "ExecuteTool": ("ExecuteToolRequest", "ExecuteToolResponse", False, False),
    "ExecuteStreamingTool": ("ExecuteToolRequest", "ToolChunk", False, True),
    "StreamTelemetry": ("TelemetryControl", "TelemetryEvent", True, True),
}


def _type_of(field: object) -> str:
    from google.protobuf.descriptor import FieldDescriptor as F

    message = field.message_type  # type: ignore[attr-defined]
    if message is not None and message.GetOptions().map_entry:
        key, value = message.fields_by_name["key"], message.fields_by_name["value"]
        return f"map<{_type_of(key)},{_type_of(value)}>"
    names = {
        F.TYPE_STRING: "string",
        F.TYPE_BOOL: "bool",
        F.TYPE_INT32: "int32",
        F.TYPE_INT64: "int64",
        F.TYPE_BYTES: "bytes",
        F.TYPE_DOUBLE: "double",
    }
    base = f".{message.full_name}" if message is not None else names[field.type]  # type: ignore[attr-defined]
    repeated = getattr(field, "is_repeated", None)
    if repeated is None:  # protobuf < 5.28
        repeated = field.label == F.LABEL_REPEATED  # type: ignore[attr-defined]
    return f"repeated {base}" if repeated else base


def test_messages_match_snakepits_field_numbers_and_types() -> None:
    pytest.importorskip("google.protobuf")
    from snakepit_bridge.server.proto import bridge_pb2 as pb

    assert pb.DESCRIPTOR.package == "snakepit.bridge"
    for name, fields in CONTRACT.items():
        descriptor = pb.DESCRIPTOR.message_types_by_name[name]
        actual = sorted((f.number, f.name, _type_of(f)) for f in descriptor.fields)
        assert actual == sorted(fields), name


def test_the_service_declares_the_worker_rpcs() -> None:
    pytest.importorskip("google.protobuf")
    from snakepit_bridge.server.proto import bridge_pb2 as pb

    service = pb.DESCRIPTOR.services_by_name["BridgeService"]
    assert service.full_name == "snakepit.bridge.BridgeService"
    actual = {
        m.name: (m.input_type.name, m.output_type.name, m.client_streaming, m.server_streaming)
        for m in service.methods
    }
    assert actual == RPCS


# -- dependencies --------------------------------------------------------------------------------

GIL_PROBE = """
import sys
import grpclib.client, grpclib.server, h2, google.protobuf, multidict
import snakepit_bridge.server.runtime, snakepit_bridge.server.service
from snakepit_bridge.server.proto import bridge_grpc, bridge_pb2
from google.protobuf.internal import api_implementation
assert not sys._is_gil_enabled(), "importing the server re-enabled the GIL"
print(api_implementation.Type(), multidict.MultiDict.__module__)
"""


def test_the_server_and_its_dependencies_leave_the_gil_disabled() -> None:
    python = free_threaded_python()
    if python is None:
        pytest.skip("no free-threaded interpreter with the server extra found")
    result = subprocess.run(
        [python, "-W", "error", "-c", GIL_PROBE],
        capture_output=True,
        text=True,
        timeout=120,
        env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"},
        check=False,
    )
    assert result.returncode == 0, result.stderr
    protobuf, multidict = result.stdout.split()
    assert protobuf in ("python", "upb")
    # The set-up builds multidict's C extension for 3.13t (docs/server.md, "Performance on 3.13t"),
    # and it leaves the GIL off (checked above, imported with the server).
    assert multidict == "multidict._multidict", "run `make setup`: multidict is pure Python"


def test_a_pure_python_multidict_on_a_free_threaded_build_is_named_at_start(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    pytest.importorskip("multidict")
    import multidict

    from snakepit_bridge import environment
    from snakepit_bridge.server.runtime import slow_dependency_hint

    class PurePython:
        pass

    PurePython.__module__ = "multidict._multidict_py"
    monkeypatch.setattr(environment, "free_threaded_build", lambda: True)
    pure = multidict.MultiDict.__module__ == "multidict._multidict_py"
    assert (slow_dependency_hint() is not None) == pure
    monkeypatch.setattr(multidict, "MultiDict", PurePython)
    hint = slow_dependency_hint()
    assert hint is not None and "pip install --no-binary multidict 'multidict>=6.1,<7'" in hint
    monkeypatch.setattr(environment, "free_threaded_build", lambda: False)
    assert slow_dependency_hint() is None  # a GIL build has multidict's C wheels anyway


BLOCKED = """
import sys
for name in ("grpclib", "google", "h2", "pytest"):
    sys.modules[name] = None  # any import of them raises ImportError
import snakepit_bridge, snakepit_bridge.context, snakepit_bridge.base_adapter_threaded
import snakepit_bridge.cli, snakepit_bridge.hammer, snakepit_bridge.thread_safety_checker
import snakepit_bridge.environment, snakepit_bridge.loading, snakepit_bridge.declaration
import snakepit_bridge.concurrency
assert snakepit_bridge.concurrency.run_concurrently(lambda i: i, 3, with_index=True) == [0, 1, 2]
from snakepit_bridge.cli import main
sys.exit(main(sys.argv[1:]))
"""


def test_the_core_package_needs_no_third_party_module() -> None:
    result = subprocess.run(
        [sys.executable, "-c", BLOCKED, "info"],
        capture_output=True,
        text=True,
        timeout=120,
        env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"},
        check=False,
    )
    assert result.returncode == 0, result.stderr


def test_serve_without_the_extra_says_how_to_install_it() -> None:
    result = subprocess.run(
        [sys.executable, "-c", BLOCKED, "serve", "--port", "0"],
        capture_output=True,
        text=True,
        timeout=120,
        env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"},
        check=False,
    )
    assert result.returncode == 2
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and "snakepit-bridge[server]" in lines[0], result.stderr
