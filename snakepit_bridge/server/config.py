"""The server's command line and environment, in the terms Snakepit launches workers with.

Snakepit (v0.13) runs ``<python> grpc_server_threaded.py --adapter X --max-workers N
[--thread-safety-check] <adapter_args> --port 0 --elixir-address host:port --snakepit-run-id ID
[--snakepit-instance-name NAME] [--snakepit-instance-token TOKEN]`` and passes the readiness file,
log level and process-group request in the environment. Its own documentation puts
``--mode threaded`` in ``adapter_args``; an argument this parser does not know is therefore
reported as a warning and ignored, never a reason to exit.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import NoReturn

from snakepit_bridge._options import (
    INIT_ARGS_HELP,
    init_args,
    non_negative_int,
    non_negative_number,
    positive_int,
)
from snakepit_bridge.loading import InitArgs

__all__ = [
    "DEFAULT_ADAPTER",
    "DEFAULT_GRACE_PERIOD",
    "DEFAULT_MAX_MESSAGE_BYTES",
    "DEFAULT_MAX_QUEUED_REQUESTS",
    "DEFAULT_WORKER_NICE",
    "LOG_LEVELS",
    "ConfigError",
    "ServerConfig",
    "default_max_workers",
    "parse_config",
]

# Snakepit's default adapter for the thread profile; this package ships it under the same name.
DEFAULT_ADAPTER = "snakepit_bridge.adapters.threaded_showcase.ThreadedShowcaseAdapter"
DEFAULT_MAX_MESSAGE_BYTES = 64 * 1024 * 1024
DEFAULT_MAX_QUEUED_REQUESTS = 1024
# Snakepit sends SIGKILL 6 s after SIGTERM (graceful_shutdown_timeout_ms); 4 s leaves room for
# cleanup().
DEFAULT_GRACE_PERIOD = 4.0
# How much lower the tool threads' scheduling priority is than the event loop's (Linux nice
# increment); off by default, see runtime._start_pool for why.
DEFAULT_WORKER_NICE = 0
# SNAKEPIT_LOG_LEVEL's values; "none" turns logging off.
LOG_LEVELS = ("debug", "info", "warning", "error", "none")
DEFAULT_LOG_LEVEL = "info"


class ConfigError(Exception):
    """The command line or environment asks for something impossible (exit status 2)."""


@dataclass(frozen=True)
class ServerConfig:
    """Everything the server was asked to do, validated."""

    adapter: str = DEFAULT_ADAPTER
    init_args: InitArgs = field(default_factory=InitArgs)
    host: str = "127.0.0.1"
    port: int = 0
    max_workers: int = 1
    thread_safety_check: bool = False
    elixir_address: str | None = None
    snakepit_run_id: str | None = None
    snakepit_instance_name: str | None = None
    snakepit_instance_token: str | None = None
    log_level: str = DEFAULT_LOG_LEVEL
    max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES
    max_queued_requests: int = DEFAULT_MAX_QUEUED_REQUESTS
    grace_period: float = DEFAULT_GRACE_PERIOD
    exit_on_stdin_close: bool = False
    worker_nice: int = DEFAULT_WORKER_NICE
    ready_file: str | None = None
    process_group: bool = False
    unknown_args: tuple[str, ...] = ()
    log_level_warning: str | None = None  # a bad SNAKEPIT_LOG_LEVEL, reported once logging is up


def default_max_workers() -> int:
    """The CPUs this process may run on (affinity-aware where the platform tells)."""
    counter = getattr(os, "process_cpu_count", None)  # Python 3.13+
    if counter is not None:
        return int(counter() or 1)
    try:
        return len(os.sched_getaffinity(0)) or 1
    except (AttributeError, OSError):
        return os.cpu_count() or 1


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        raise ConfigError(message)


def _port(text: str) -> int:
    value = non_negative_int(text)
    if value > 65535:
        raise argparse.ArgumentTypeError(f"must be a TCP port (0-65535), got {value}")
    return value


def _nice(text: str) -> int:
    value = non_negative_int(text)
    if value > 19:
        raise argparse.ArgumentTypeError(f"must be between 0 and 19, got {value}")
    return value


def _log_level(text: str) -> str:
    level = text.strip().lower()
    if level not in LOG_LEVELS:
        raise argparse.ArgumentTypeError(f"must be one of {', '.join(LOG_LEVELS)}, got {text!r}")
    return level


def build_parser(prog: str) -> argparse.ArgumentParser:
    """The argument parser (exposed for ``--help`` and the docs test)."""
    parser = _Parser(
        prog=prog,
        description="Serve one shared snakepit-bridge adapter to Snakepit over gRPC, with a "
        "pool of threads running its tools in parallel. Unknown arguments are ignored with a "
        "warning (Snakepit passes some of its own).",
        allow_abbrev=False,  # "--max" must not silently mean "--max-workers"
    )
    add = parser.add_argument
    add(
        "--adapter",
        default=DEFAULT_ADAPTER,
        metavar="MODULE.CLASS",
        help="adapter class as pkg.mod.Class or pkg.mod:Class (default: the showcase adapter)",
    )
    add("--init-args", type=init_args, default=InitArgs(), metavar="JSON", help=INIT_ARGS_HELP)
    add("--port", type=_port, default=0, help="TCP port; 0 (default) picks a free one")
    add(
        "--max-workers",
        type=positive_int,
        default=None,
        metavar="N",
        help="threads running tools (default: the number of usable CPUs)",
    )
    add(
        "--thread-safety-check",
        action="store_true",
        help="run a ThreadSafetyChecker for the whole process and log each finding once",
    )
    add(
        "--elixir-address",
        metavar="HOST:PORT",
        help="Snakepit's own gRPC address (accepted; this server does not call back)",
    )
    add("--snakepit-run-id", metavar="ID", help="Snakepit's run id (identifies the worker)")
    add("--snakepit-instance-name", metavar="NAME", help="Snakepit's instance name")
    add("--snakepit-instance-token", metavar="TOKEN", help="Snakepit's instance token")
    add(
        "--host",
        default="127.0.0.1",
        help="address to bind (default 127.0.0.1: loopback only; there is no authentication)",
    )
    add(
        "--log-level",
        type=_log_level,
        default=None,
        metavar="LEVEL",
        help=f"one of {', '.join(LOG_LEVELS)} (default: $SNAKEPIT_LOG_LEVEL, else info)",
    )
    add(
        "--max-message-bytes",
        type=positive_int,
        default=DEFAULT_MAX_MESSAGE_BYTES,
        metavar="N",
        help="largest request or reply message, in bytes (default 64 MiB)",
    )
    add(
        "--max-queued-requests",
        type=non_negative_int,
        default=DEFAULT_MAX_QUEUED_REQUESTS,
        metavar="N",
        help="requests that may wait for a free thread before new ones get "
        f"RESOURCE_EXHAUSTED (default {DEFAULT_MAX_QUEUED_REQUESTS})",
    )
    add(
        "--grace-period",
        type=non_negative_number,
        default=DEFAULT_GRACE_PERIOD,
        metavar="SECONDS",
        help="on SIGTERM/SIGINT, how long in-flight requests may finish (default 4)",
    )
    add(
        "--exit-on-stdin-close",
        action="store_true",
        help="shut down gracefully when stdin reaches end of file (the parent went away)",
    )
    add(
        "--worker-nice",
        type=_nice,
        default=DEFAULT_WORKER_NICE,
        metavar="N",
        help="run tool threads N nice levels below the event loop, so Ping and Heartbeat come "
        "first when all are busy, and the tools after every other busy process (Linux; default "
        f"{DEFAULT_WORKER_NICE}: normal priority)",
    )
    return parser


def parse_config(
    argv: Sequence[str], environ: Mapping[str, str], prog: str = "snakepit-bridge serve"
) -> ServerConfig:
    """Validate ``argv`` and the environment; :class:`ConfigError` names the first problem."""
    options, unknown = build_parser(prog).parse_known_args(list(argv))
    log_level, log_warning = _resolve_log_level(options.log_level, environ)
    ready_file = environ.get("SNAKEPIT_READY_FILE") or None
    return ServerConfig(
        adapter=options.adapter,
        init_args=options.init_args,
        host=options.host,
        port=options.port,
        max_workers=options.max_workers or default_max_workers(),
        thread_safety_check=options.thread_safety_check,
        elixir_address=options.elixir_address,
        snakepit_run_id=options.snakepit_run_id,
        snakepit_instance_name=options.snakepit_instance_name,
        snakepit_instance_token=options.snakepit_instance_token,
        log_level=log_level,
        max_message_bytes=options.max_message_bytes,
        max_queued_requests=options.max_queued_requests,
        grace_period=options.grace_period,
        exit_on_stdin_close=options.exit_on_stdin_close,
        worker_nice=options.worker_nice,
        ready_file=ready_file,
        process_group=environ.get("SNAKEPIT_PROCESS_GROUP") == "1",
        unknown_args=tuple(unknown),
        log_level_warning=log_warning,
    )


def _resolve_log_level(flag: str | None, environ: Mapping[str, str]) -> tuple[str, str | None]:
    """``--log-level`` wins over ``SNAKEPIT_LOG_LEVEL``; a bad variable is a warning, not an exit
    (the variable comes from Snakepit's configuration, which the worker cannot fix)."""
    if flag is not None:
        return flag, None
    raw = environ.get("SNAKEPIT_LOG_LEVEL")
    if not raw:
        return DEFAULT_LOG_LEVEL, None
    level = raw.strip().lower()
    if level in LOG_LEVELS:
        return level, None
    return DEFAULT_LOG_LEVEL, (
        f"ignoring SNAKEPIT_LOG_LEVEL={raw!r} (expected one of {', '.join(LOG_LEVELS)}); "
        f"using {DEFAULT_LOG_LEVEL}"
    )
