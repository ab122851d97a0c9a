"""The threaded worker server: one shared adapter served to Snakepit over gRPC, truly in parallel.

Run it as ``python -m snakepit_bridge.server ...`` or ``snakepit-bridge serve ...``; under Snakepit,
point ``python_executable`` at the ``snakepit-bridge-python`` launcher. Everything is described in
``docs/server.md``.

Modules, one concern each:

* :mod:`.config` - the command line and environment, in Snakepit's terms;
* :mod:`.proto` - ``bridge.proto`` and the code generated from it (``make proto``);
* :mod:`.codec` - JSON in, strict JSON out;
* :mod:`.errors` - the in-band error response Snakepit expects;
* :mod:`.tools` - what kind of callable each declared tool is (sync, async, generator);
* :mod:`.runner` - one request: decode, dispatch, encode, in a fresh request context;
* :mod:`.pump` - the bounded hand-off from a pool thread draining a generator to the event loop;
* :mod:`.transport` - size-capped message reads and pre-encoded replies on top of grpclib;
* :mod:`.service` - the RPC handlers;
* :mod:`.safety` - ``--thread-safety-check``: the checker's findings, logged once each;
* :mod:`.runtime` - start-up, readiness, signals, stdin watch and graceful shutdown.
* :mod:`.client` - a gRPC client of this service (``snakepit-bridge hammer --target``).

This package needs the ``server`` extra (grpclib, protobuf); the rest of ``snakepit_bridge`` does
not. Nothing here imports them at package import time.
"""
