"""Where a server request's CPU time goes: ``python -m benchmarks.server_profile``.

Not part of the benchmark run. It starts our server (this interpreter) with the benchmark
adapter, puts one load phase on it with the load client of ``benchmarks.server`` and reports
the CPU time each of the server's threads used per request, read from ``/proc`` (Linux): the
event loop (the main thread: HTTP/2, gRPC framing, dispatch) against all other threads (the
tool pool). With ``--cprofile FILE`` the event loop also runs under ``cProfile`` (thread CPU
time) and the stats are written to FILE; this works on GIL builds, but on 3.13.5t the server
under ``cProfile`` did not shut down on SIGTERM, so use it on the GIL build (the event loop runs
the same grpclib and h2 code there).

    python -m benchmarks.server_profile --tool echo --streams 8 --seconds 3
    python -m benchmarks.server_profile --tool echo -- --worker-nice 5   # server options
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks import server as S

_PROFILED = """
import cProfile, sys, time
from snakepit_bridge.server.runtime import main
profile = cProfile.Profile(time.thread_time)
profile.enable()
try:
    status = main(sys.argv[2:])
finally:
    profile.disable()
    profile.dump_stats(sys.argv[1])
sys.exit(status)
"""

PARAMS: dict[str, dict[str, Any]] = {
    "echo": {"x": 7},
    "spin": {"n": 60_000},
    "numpy_sum": {"n": 200_000},
}


def thread_cpu(pid: int) -> dict[int, float]:
    """CPU seconds (user + system) of every thread of ``pid``, by thread id."""
    tick = os.sysconf("SC_CLK_TCK")
    out: dict[int, float] = {}
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            stat = (task / "stat").read_text()
        except OSError:
            continue  # the thread ended meanwhile
        fields = stat[stat.rindex(")") + 2 :].split()
        out[int(task.name)] = (int(fields[11]) + int(fields[12])) / tick
    return out


def profile(
    tool: str, streams: int, seconds: float, server_args: list[str], cprofile: str | None
) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="bench-profile-") as tmp:
        directory = Path(tmp)
        ready = directory / "ready"
        env = S._env()
        env["SNAKEPIT_READY_FILE"] = str(ready)
        argv = [sys.executable]
        argv += ["-c", _PROFILED, cprofile] if cprofile else ["-m", "snakepit_bridge.server"]
        argv += ["--adapter", S.ADAPTER, "--port", "0", "--log-level", "warning", *server_args]
        with open(directory / "server.err", "wb") as stderr:
            proc = subprocess.Popen(
                argv,
                env=env,
                cwd=S.REPO,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=stderr,
            )
        server = S.Running("profiled", proc, 0, directory / "server.err")
        try:
            deadline = time.monotonic() + S.READY_TIMEOUT
            while not (ready.exists() and ready.read_text().strip()):
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("the server did not start:\n" + server.stderr_tail())
                time.sleep(0.02)
            address = f"127.0.0.1:{int(ready.read_text())}"
            phase = {"address": address, "tool": tool, "params": PARAMS[tool], "streams": streams}
            S.run_client([{**phase, "warmup_s": 0.2, "duration_s": 0.3}], directory, 300)  # warm
            before = thread_cpu(proc.pid)
            measured = {**phase, "warmup_s": 0.0, "duration_s": seconds, "min_requests": 20}
            out = S.run_client([measured], directory, 300 + 4 * seconds)
            after = thread_cpu(proc.pid)
        finally:
            status = server.stop()
    result = out["phases"][0]
    result.pop("latencies_ms", None)
    requests = max(1, result["requests"])
    # CPU over the whole measured phase (all its requests, counted or not), per counted
    # request: the phase's window is nearly all of it.
    seconds = result["window_s"]
    loop = after.get(proc.pid, 0.0) - before.get(proc.pid, 0.0)
    others = sum(cpu - before.get(tid, 0.0) for tid, cpu in after.items() if tid != proc.pid)
    return {
        "python": sys.executable,
        "tool": tool,
        "streams": streams,
        "server_args": server_args,
        "requests_per_s": result["requests_per_s"],
        "p50_ms": result["p50_ms"],
        "event_loop_cpu_us_per_request": loop / requests * 1e6,
        "event_loop_cores": loop / seconds,
        "other_threads_cpu_us_per_request": others / requests * 1e6,
        "other_threads_cores": others / seconds,
        "client": out["client"],
        "server_exit_status": status,
        "cprofile": cprofile,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.server_profile")
    parser.add_argument("--tool", choices=sorted(PARAMS), default="echo")
    parser.add_argument("--streams", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--cprofile", metavar="FILE", help="profile the event loop into FILE")
    parser.add_argument("--json", action="store_true")
    parser.add_argument("server_args", nargs="*", help="options for the server (after --)")
    ns = parser.parse_args(argv)
    result = profile(ns.tool, ns.streams, ns.seconds, ns.server_args, ns.cprofile)
    if ns.json:
        print(json.dumps(result))
        return 0
    print(
        f"{result['tool']} x{result['streams']} on {result['python']}: "
        f"{result['requests_per_s']:,.0f} requests/s, p50 {result['p50_ms']:.2f} ms\n"
        f"  event loop:    {result['event_loop_cpu_us_per_request']:8.1f} us CPU per request "
        f"({result['event_loop_cores']:.2f} of a core)\n"
        f"  other threads: {result['other_threads_cpu_us_per_request']:8.1f} us CPU per request "
        f"({result['other_threads_cores']:.2f} of a core)"
    )
    if ns.cprofile:
        import pstats

        pstats.Stats(ns.cprofile).sort_stats("cumulative").print_stats(25)
    return 0


if __name__ == "__main__":
    sys.exit(main())
