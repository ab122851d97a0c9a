#!/usr/bin/env python3
"""Generate the Python modules of snakepit_bridge/server/proto/bridge.proto (``make proto``).

Needs grpcio-tools (protoc and the well-known types) and grpclib (its protoc plugin), both
installed in the GIL venv by scripts/setup.sh; grpcio-tools has no free-threaded wheels.

    python scripts/gen_proto.py            # regenerate in place
    python scripts/gen_proto.py --out DIR  # write the tree under DIR instead (the staleness test)

Writes, next to the .proto: ``bridge_pb2.py`` and ``bridge_pb2.pyi`` (protoc's Python and type
stub generators) and ``bridge_grpc.py`` (grpclib's plugin: the service base class and client
stub). The .proto is compiled under its package path, so the generated imports are absolute
(``import snakepit_bridge.server.proto.bridge_pb2``) and the descriptor is registered under
that file name.
"""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PROTO = Path("snakepit_bridge/server/proto/bridge.proto")
GENERATED = ("bridge_pb2.py", "bridge_pb2.pyi", "bridge_grpc.py")


def generate(out: Path) -> list[Path]:
    """Compile the .proto into ``out`` (mirroring the package path); returns the files written."""
    try:
        import grpc_tools
        from grpc_tools import protoc
    except ImportError:
        raise SystemExit(
            "gen_proto: grpcio-tools is not installed (pip install grpcio-tools)"
        ) from None
    plugin = shutil.which("protoc-gen-grpclib_python", path=str(Path(sys.executable).parent))
    if plugin is None:
        raise SystemExit(
            "gen_proto: grpclib's protoc plugin is not installed (pip install grpclib)"
        )
    well_known = Path(grpc_tools.__file__).parent / "_proto"
    target = out / PROTO.parent
    target.mkdir(parents=True, exist_ok=True)
    args = [
        "protoc",
        f"--proto_path={ROOT}",
        f"--proto_path={well_known}",
        f"--plugin=protoc-gen-grpclib_python={plugin}",
        f"--python_out={out}",
        f"--pyi_out={out}",
        f"--grpclib_python_out={out}",
        str(PROTO),
    ]
    status = protoc.main(args)
    if status != 0:
        raise SystemExit(f"gen_proto: protoc failed with status {status}")
    return [target / name for name in GENERATED]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT, help="root of the generated tree")
    options = parser.parse_args()
    for path in generate(options.out.resolve()):
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
