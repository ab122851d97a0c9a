#!/usr/bin/env python3
"""``make demo``: the showcase adapter served by the real worker server, hammered over gRPC.

1. Starts ``python -m snakepit_bridge.server`` with the showcase adapter on the loopback
   interface, port 0 (a free one), a ready file, its own process group and stdin a pipe (with
   ``--exit-on-stdin-close``: should this script die, the server follows).
2. Waits for the ready file (bounded: ``READY_TIMEOUT``).
3. Runs ``python -m snakepit_bridge hammer --target 127.0.0.1:PORT`` from 16 threads, each its own
   gRPC connection on its own event loop (16 concurrent streams of requests), which prints the
   report on stdout (bounded: ``--timeout``).
4. Stops the server with SIGTERM and reaps it (bounded: ``STOP_TIMEOUT``, then SIGKILL to its
   process group), whatever happened before.

Exit status: the hammer's (0 when every request succeeded); 2 when the demo cannot run (no
NumPy, the server did not become ready); 1 when the hammer ran out of time or the server did not
stop on SIGTERM. ``--requests`` defaults to ``$SNAKEPIT_DEMO_REQUESTS`` or 2,000.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SHOWCASE = "snakepit_bridge.adapters.threaded_showcase.ThreadedShowcaseAdapter"
DEFAULT_REQUESTS = 2_000
READY_TIMEOUT = 60.0  # seconds for the server to write its ready file
STOP_TIMEOUT = 30.0  # seconds for the server to exit after SIGTERM (its grace period is 4)
HAMMER_TIMEOUT = 900.0  # seconds for the whole hammer run


def say(message: str) -> None:
    print(f"demo: {message}", file=sys.stderr, flush=True)


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="demo.py", description=__doc__.splitlines()[0])
    default_requests = int(os.environ.get("SNAKEPIT_DEMO_REQUESTS", DEFAULT_REQUESTS))
    parser.add_argument("--requests", type=int, default=default_requests)
    parser.add_argument("--threads", type=int, default=16)
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--json", action="store_true", help="the report as JSON")
    parser.add_argument("--timeout", type=float, default=HAMMER_TIMEOUT, help="for the hammer")
    return parser.parse_args(argv)


def start_server(directory: Path) -> tuple[subprocess.Popen[bytes], Path, Path]:
    ready = directory / "ready"
    log = directory / "server.log"
    env = dict(os.environ)
    env["SNAKEPIT_READY_FILE"] = str(ready)
    env["SNAKEPIT_PROCESS_GROUP"] = "1"  # its own group: reaped as a whole if need be
    command = [
        sys.executable, "-m", "snakepit_bridge.server",
        "--adapter", SHOWCASE,
        "--host", "127.0.0.1",
        "--port", "0",
        "--log-level", "warning",
        "--exit-on-stdin-close",
    ]  # fmt: skip
    with open(log, "wb") as log_file:
        server = subprocess.Popen(
            command, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=log_file, env=env
        )
    return server, ready, log


def wait_ready(server: subprocess.Popen[bytes], ready: Path) -> int | None:
    deadline = time.monotonic() + READY_TIMEOUT
    while time.monotonic() < deadline:
        text = ready.read_text() if ready.exists() else ""
        if text:
            return int(text)
        if server.poll() is not None:
            return None
        time.sleep(0.05)
    return None


def stop_server(server: subprocess.Popen[bytes]) -> int:
    """SIGTERM, a bounded wait, then SIGKILL to its process group; always reaped. Returns the
    status to add to the demo's: 0 when it stopped on SIGTERM."""
    status = 0
    if server.poll() is None:
        server.send_signal(signal.SIGTERM)
        try:
            code = server.wait(STOP_TIMEOUT)
            say(f"server (pid {server.pid}) stopped with SIGTERM, exit status {code}")
        except subprocess.TimeoutExpired:
            say(f"server (pid {server.pid}) did not stop within {STOP_TIMEOUT:g} s: killed")
            status = 1
    if server.poll() is None:
        try:
            os.killpg(server.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            server.kill()
        server.wait(STOP_TIMEOUT)
    if server.stdin is not None:
        server.stdin.close()
    return status


def main(argv: list[str]) -> int:
    options = parse_args(argv)
    if importlib.util.find_spec("numpy") is None:
        say("the showcase needs NumPy: pip install 'snakepit-bridge[numpy]'")
        return 2
    with tempfile.TemporaryDirectory(prefix="snakepit-demo-") as tmp:
        server, ready, log = start_server(Path(tmp))
        status = 2
        try:
            port = wait_ready(server, ready)
            if port is None:
                say(f"the server did not become ready within {READY_TIMEOUT:g} s; its log:")
                sys.stderr.write(log.read_text(errors="replace"))
                return 2
            say(f"server (pid {server.pid}) serving the showcase on 127.0.0.1:{port}")
            hammer = [
                sys.executable, "-m", "snakepit_bridge", "hammer",
                "--target", f"127.0.0.1:{port}",
                "--threads", str(options.threads),
                "--requests", str(options.requests),
            ]  # fmt: skip
            if options.seed is not None:
                hammer += ["--seed", str(options.seed)]
            if options.json:
                hammer.append("--json")
            try:
                status = subprocess.run(hammer, timeout=options.timeout, check=False).returncode
            except subprocess.TimeoutExpired:
                say(f"the hammer did not finish within {options.timeout:g} s")
                status = 1
        finally:
            stopped = stop_server(server)
            status = status or stopped
    return status


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
