"""Start-up, readiness and graceful shutdown of the worker server.

The order matters to Snakepit:

1. ``SNAKEPIT_PROCESS_GROUP=1``: ``os.setsid()`` before anything else, so Snakepit (which checks
   that the worker's process group id equals its pid) can stop the worker and every process it
   started with one signal to the group;
2. the adapter is imported, constructed once and ``initialize()``-d once (sync or async); with
   ``--thread-safety-check`` the checker is enabled first, so it sees the construction. Any
   failure here is one line on stderr and a non-zero exit, and no ready file is written;
3. the server binds (``127.0.0.1`` unless ``--host`` says otherwise) and only then writes the
   bound port to ``$SNAKEPIT_READY_FILE`` (a temporary file in the same directory, then
   ``os.replace``, so Snakepit never reads a half-written file) and prints
   ``GRPC_READY:<port>`` on stdout;
4. on SIGTERM or SIGINT (or end of stdin with ``--exit-on-stdin-close``) it stops listening,
   refuses new tool calls, lets in-flight ones finish for ``--grace-period`` seconds, cancels
   what is left, calls the adapter's ``cleanup()`` once and exits 0 (1 if ``cleanup()`` raised).

A sync tool still running when the grace period ends cannot be stopped (Python threads cannot
be interrupted); the server then exits without waiting for it, after ``cleanup()``.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import os
import socket
import sys
import tempfile
import threading
import weakref
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from typing import Any

from grpclib.server import Server

from snakepit_bridge import environment, loading
from snakepit_bridge.declaration import Declaration, declaration_of
from snakepit_bridge.server.config import ConfigError, ServerConfig, parse_config
from snakepit_bridge.server.lifecycle import ShutdownTrigger
from snakepit_bridge.server.runner import ToolRunner
from snakepit_bridge.server.safety import SafetyMonitor
from snakepit_bridge.server.service import BridgeService, PoolGateway
from snakepit_bridge.server.tools import build_catalog
from snakepit_bridge.server.transport import PreEncodedProtoCodec

__all__ = ["main", "write_ready_file"]

log = logging.getLogger("snakepit_bridge.server")

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
LOG_FORMAT = "%(asctime)s %(levelname)s [%(threadName)s] %(name)s: %(message)s"
THREAD_NAME_PREFIX = "snakepit-worker"


class StartupError(Exception):
    """The server cannot start; the message is the one line printed on stderr."""

    def __init__(self, message: str, status: int = EXIT_FAILED) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class _Outcome:
    status: int
    stuck_jobs: int  # tool calls still running on pool threads at exit


def main(argv: Sequence[str] | None = None, prog: str = "snakepit-bridge serve") -> int:
    """Run the server until it is told to stop; returns the exit status."""
    group_problem = (
        _start_process_group() if os.environ.get("SNAKEPIT_PROCESS_GROUP") == "1" else None
    )
    try:
        config = parse_config(sys.argv[1:] if argv is None else argv, os.environ, prog)
    except ConfigError as exc:
        return _fail(prog, str(exc), EXIT_USAGE)
    configure_logging(config.log_level)
    for problem in (group_problem, config.log_level_warning):
        if problem:
            log.warning("%s", problem)
    if config.unknown_args:
        log.warning("ignoring unknown argument(s): %s", " ".join(config.unknown_args))
    monitor = SafetyMonitor() if config.thread_safety_check else None
    try:
        adapter, config = _load_adapter(config)
        outcome = asyncio.run(_serve(config, adapter, monitor))
    except StartupError as exc:
        return _fail(prog, str(exc), exc.status)
    if outcome.stuck_jobs:
        log.warning(
            "%d tool call(s) still running on pool threads; exiting without waiting for them",
            outcome.stuck_jobs,
        )
        logging.shutdown()
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(outcome.status)  # a non-daemon pool thread would otherwise block the exit
    return outcome.status


def _fail(prog: str, message: str, status: int) -> int:
    print(f"{prog}: error: {message}", file=sys.stderr, flush=True)
    return status


def _start_process_group() -> str | None:
    """``os.setsid()``; a reason when the process cannot lead a new group."""
    if os.getpgrp() == os.getpid():
        return None  # already a group leader (setsid would fail): Snakepit's check holds
    try:
        os.setsid()
    except OSError as exc:
        return f"SNAKEPIT_PROCESS_GROUP=1 but os.setsid() failed: {exc}"
    return None


def configure_logging(level: str) -> None:
    """Log to stderr at ``level`` (one of config.LOG_LEVELS; "none" turns logging off)."""
    if level == "none":
        logging.disable(logging.CRITICAL)
        return
    logging.basicConfig(level=level.upper(), format=LOG_FORMAT, stream=sys.stderr)


def _load_adapter(config: ServerConfig) -> tuple[Any, ServerConfig]:
    try:
        adapter_class = loading.load_adapter_class(config.adapter)
        build_adapter = loading.adapter_factory(adapter_class, config.init_args)
    except loading.AdapterLoadError as exc:
        raise StartupError(str(exc), EXIT_USAGE) from None
    # The one rule (snakepit_bridge.declaration): a class that says it is not thread-safe is
    # served from one thread; one that does not declare itself thread-safe is served as asked,
    # with a warning.
    kind, value, _ = declaration_of(adapter_class)
    if kind is Declaration.REFUSED and config.max_workers > 1:
        log.warning(
            "%s sets __thread_safe__ = %r: serving it from one thread (--max-workers 1)",
            adapter_class.__qualname__,
            value,
        )
        config = replace(config, max_workers=1)
    elif kind is not Declaration.DECLARED and config.max_workers > 1:
        log.warning(
            "%s does not declare __thread_safe__ = True; its tools will run in %d threads at once",
            adapter_class.__qualname__,
            config.max_workers,
        )
    try:
        adapter = loading.construct_adapter(build_adapter)
    except loading.AdapterConstructionError as exc:
        log.debug("adapter construction failed", exc_info=exc.__cause__)
        raise StartupError(str(exc)) from None
    return adapter, config


async def _serve(config: ServerConfig, adapter: Any, monitor: SafetyMonitor | None) -> _Outcome:
    await _call_hook(adapter, "initialize", fatal=True)
    try:
        server, connections, service, gateway, pool, trigger = await _start(
            config, adapter, monitor
        )
    except StartupError:
        await _call_hook(adapter, "cleanup", fatal=False)  # initialize() ran: undo it
        raise
    if config.exit_on_stdin_close:
        trigger.watch_stdin()
    await trigger.requested.wait()
    return await _shutdown(
        config, server, connections, service, gateway, pool, adapter, trigger, monitor
    )


async def _start(
    config: ServerConfig, adapter: Any, monitor: SafetyMonitor | None
) -> tuple[
    Server, weakref.WeakSet[Any], BridgeService, PoolGateway, ThreadPoolExecutor, ShutdownTrigger
]:
    """Bind, start the pool and the server, and announce readiness."""
    loop = asyncio.get_running_loop()
    if monitor is not None:
        monitor.review(adapter)
    catalog = build_catalog(adapter)
    sock = _bind(config.host, config.port)
    pool = _start_pool(config.max_workers, config.worker_nice)
    gateway = PoolGateway(pool, loop, config.max_workers, config.max_queued_requests)
    runner = ToolRunner(adapter, catalog, loop, config.max_message_bytes)
    service = BridgeService(runner, gateway, catalog, config.max_message_bytes)
    server = Server([service], codec=PreEncodedProtoCodec())
    connections = _track_connections(server)
    trigger = ShutdownTrigger(loop)
    trigger.install_signal_handlers()  # before readiness: an early SIGTERM is a graceful one
    await server.start(sock=sock)
    port = int(sock.getsockname()[1])
    # Logged before readiness is signalled, so whoever waits for readiness finds it logged.
    log.info(
        "serving %s on %s:%d: %d thread(s), %d tool(s), Python %s, GIL %s",
        loading.adapter_spec(type(adapter)),
        config.host,
        port,
        config.max_workers,
        len(catalog.tools),
        sys.version.split()[0],
        "on" if environment.gil_enabled() else "off",
    )
    hint = slow_dependency_hint()
    if hint:
        log.warning("%s", hint)
    if config.ready_file:
        try:
            write_ready_file(config.ready_file, port)
        except OSError as exc:
            server.close()
            pool.shutdown(wait=False)
            raise StartupError(
                f"cannot write the ready file {config.ready_file!r}: {exc}"
            ) from None
    try:
        print(f"GRPC_READY:{port}", flush=True)
    except OSError:  # stdout closed: only the ready file counts anyway
        pass
    return server, connections, service, gateway, pool, trigger


def slow_dependency_hint() -> str | None:
    """One line when a dependency of the transport runs as pure Python where its C extension
    would work with the GIL off (None otherwise): on free-threaded 3.13, grpclib keeps every
    request's metadata in a ``multidict.MultiDict``, and the pure-Python one costs the event loop
    about 0.2 ms per request and was seen stalling it for up to a second with every pool thread
    busy (docs/server.md, "Performance on 3.13t")."""
    if not environment.free_threaded_build():
        return None
    import multidict

    if multidict.MultiDict.__module__ != "multidict._multidict_py":
        return None
    return (
        "multidict runs as pure Python here (its C extension is not installed), which slows "
        "every request's event-loop work on this interpreter; install its C extension with: "
        "pip install --no-binary multidict 'multidict>=6.1,<7' (docs/server.md)"
    )


def _start_pool(workers: int, nice: int) -> ThreadPoolExecutor:
    """The tool threads, all started now, each at ``nice`` below normal priority.

    * ThreadPoolExecutor starts a thread on demand inside ``submit()``, and ``Thread.start()``
      waits until the new thread runs: with the CPUs busy with tools, that wait stalled the event
      loop (and so Ping and Heartbeat) for up to a second on 3.13t. Starting every thread before
      the server is ready takes that out of the request path: ``workers`` jobs that wait for
      each other can only run on ``workers`` distinct threads.
    * Without a GIL, the event loop is one thread among ``workers`` busy ones, and the kernel
      shares the CPUs between them equally. ``--worker-nice N`` gives the pool threads a higher
      nice value (Linux keeps one per thread, see setpriority(2)), so the loop, which needs
      little CPU, runs first and the tools get every cycle it does not use. It is off by
      default: it also puts the tools behind every other busy process of the machine (the
      BEAM's schedulers, other workers), where they were seen getting 1% of their throughput,
      while the loop answers Ping in tens of milliseconds without it (docs/server.md, "Limits").
    """
    pool = ThreadPoolExecutor(
        workers,
        thread_name_prefix=THREAD_NAME_PREFIX,
        initializer=_lower_thread_priority,
        initargs=(nice,),
    )
    barrier = threading.Barrier(workers)
    for job in [pool.submit(barrier.wait, 60.0) for _ in range(workers)]:
        job.result()
    return pool


def _lower_thread_priority(nice: int) -> None:
    # Only Linux has per-thread nice values: elsewhere PRIO_PROCESS with a thread id would name
    # a process, so the pool keeps the process's priority there.
    if nice <= 0 or not sys.platform.startswith("linux"):
        return
    thread = threading.get_native_id()
    try:
        os.setpriority(os.PRIO_PROCESS, thread, os.getpriority(os.PRIO_PROCESS, thread) + nice)
    except OSError as exc:
        log.debug("cannot lower the priority of %s: %s", threading.current_thread().name, exc)


def _bind(host: str, port: int) -> socket.socket:
    """A bound TCP socket for ``host:port`` (the server listens on it).

    Bound here rather than by grpclib so the port is known before readiness. The socket keeps
    getaddrinfo's protocol number (IPPROTO_TCP): asyncio only sets TCP_NODELAY on connections
    whose socket says so, and without it Nagle's algorithm holds back each small reply until the
    client's delayed ACK (about 40 ms on Linux) arrives.
    """
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
        family, kind, proto, _, address = infos[0]
        sock = socket.socket(family, kind, proto)
    except (OSError, IndexError) as exc:
        raise StartupError(f"cannot listen on {host}:{port}: {exc}") from None
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as asyncio does on POSIX
        sock.bind(address)
    except OSError as exc:
        sock.close()
        raise StartupError(f"cannot listen on {host}:{port}: {exc}") from None
    return sock


def write_ready_file(path: str, port: int) -> None:
    """Write ``port`` to ``path`` atomically: a reader sees no file or the whole number."""
    directory = os.path.dirname(os.path.abspath(path))
    fd, temporary = tempfile.mkstemp(dir=directory, prefix=".snakepit-ready-", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="ascii") as handle:
            handle.write(str(port))
        os.replace(temporary, path)
    except BaseException:
        try:
            os.unlink(temporary)
        except OSError:
            pass
        raise


async def _shutdown(
    config: ServerConfig,
    server: Server,
    connections: weakref.WeakSet[Any],
    service: BridgeService,
    gateway: PoolGateway,
    pool: ThreadPoolExecutor,
    adapter: Any,
    trigger: ShutdownTrigger,
    monitor: SafetyMonitor | None,
) -> _Outcome:
    log.info(
        "shutting down (%s): %d request(s) in flight, grace period %g s",
        trigger.reason,
        service.active_requests,
        config.grace_period,
    )
    service.begin_drain()
    _stop_listening(server)
    waiters = {
        asyncio.ensure_future(service.wait_idle()),
        asyncio.ensure_future(trigger.hurry.wait()),
    }
    _, pending = await asyncio.wait(
        waiters, timeout=config.grace_period, return_when=asyncio.FIRST_COMPLETED
    )
    for waiter in pending:
        waiter.cancel()
    if service.active_requests:
        log.warning("cancelling %d request(s) still in flight", service.active_requests)
    server.close()  # cancels the handlers left (and the telemetry streams)
    try:
        await asyncio.wait_for(server.wait_closed(), timeout=1.0)
    except TimeoutError:
        log.warning("some connections did not close within 1 s")
    _close_connections(connections)
    await asyncio.sleep(0)  # the transports finish closing in the loop's next callbacks
    pool.shutdown(wait=False, cancel_futures=True)
    await asyncio.sleep(0)  # let cancelled jobs count themselves out
    status = await _call_hook(adapter, "cleanup", fatal=False)
    if monitor is not None:
        monitor.close()
    log.info("stopped")
    return _Outcome(status=status, stuck_jobs=gateway.in_flight)


def _track_connections(server: Server) -> weakref.WeakSet[Any]:
    """The server's client connections, so that shutdown can close them.

    grpclib's ``Server.close()`` cancels the running requests but leaves client connections
    open; one still open when the event loop closes is a transport nobody closed (a
    ResourceWarning at exit, an error under ``-W error``; seen when a client had not yet closed
    its connection at SIGTERM). grpclib keeps no list of them, so its protocol factory (used by
    ``start()``) is wrapped to remember each.
    """
    connections: weakref.WeakSet[Any] = weakref.WeakSet()
    make_protocol = server._protocol_factory

    def protocol_factory() -> Any:
        protocol = make_protocol()
        connections.add(protocol)
        return protocol

    server._protocol_factory = protocol_factory  # type: ignore[method-assign]
    return connections


def _close_connections(connections: weakref.WeakSet[Any]) -> None:
    for protocol in list(connections):
        processor = getattr(protocol, "processor", None)  # set once the connection is made
        if processor is not None:
            processor.close("the server is shutting down")


def _stop_listening(server: Server) -> None:
    """Close the listening socket, leaving open connections be (asyncio.Server.close()).

    grpclib's own ``Server.close()`` also cancels every running request, which is the second
    step of the shutdown, not the first; its asyncio server is not public, hence the lookup.
    """
    listener = getattr(server, "_server", None)
    if listener is not None:
        listener.close()


async def _call_hook(adapter: Any, name: str, *, fatal: bool) -> int:
    """Call ``adapter.initialize()`` / ``adapter.cleanup()`` (sync or async) if it exists."""
    hook = getattr(adapter, name, None)
    if not callable(hook):
        return EXIT_OK
    try:
        result = hook()
        if inspect.isawaitable(result):
            await result
    except Exception as exc:
        message = f"{type(adapter).__qualname__}.{name}() failed: {type(exc).__name__}: {exc}"
        if fatal:
            log.debug("%s", message, exc_info=exc)
            raise StartupError(message) from None
        log.error("%s", message, exc_info=exc)
        return EXIT_FAILED
    log.info("%s() done", name)
    return EXIT_OK
