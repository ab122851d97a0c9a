"""The server group: requests/s and latency of our worker server against two references.

Three servers host the same adapter (``benchmarks.server_tools.BenchToolsAdapter``), each a
real subprocess on 127.0.0.1 with a free port and a ready file, as Snakepit starts a worker:

* ``ours``: ``python -m snakepit_bridge.server`` on the interpreter of this run, default
  options (a pool of as many threads as the process may use CPUs);
* ``nice5``: the same with ``--worker-nice 5``: its tool threads 5 nice levels below the event
  loop (the default keeps them at normal priority, see docs/server.md "Limits"), which keeps
  Ping fast with every tool thread busy but leaves the tools behind any other busy process;
* ``serial``: the same with ``--max-workers 1``, the serial floor;
* ``grpcio``: ``benchmarks/grpcio_server.py``, a minimal grpcio sync server with a
  ThreadPoolExecutor of the same size, on a GIL build (grpcio has no free-threaded wheels):
  what a user would write instead.

For each tool (trivial, ~5 ms of pure-Python CPU, NumPy) and 1, 8 and 16 concurrent streams,
the load client (``benchmarks/server_load.py``: grpcio's asyncio client on a GIL interpreter,
else grpclib's) measures the three servers one right after the other (all three are up for
the whole run); then, on each server, with 16 streams of the CPU tool saturating the pool, it
sends Pings one after another and records their latency. The machine's own 2-thread speedup
for the CPU tool (called directly, no server) is measured too: the ceiling any server can reach
at that moment on a shared machine. ``--quick`` shortens every
window; ``--skip server`` (or ``--cases`` without it) leaves the group out.
"""

from __future__ import annotations

import json
import math
import os
import signal
import statistics
import subprocess
import sys
import sysconfig
import tempfile
import time
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
ADAPTER = "benchmarks.server_tools.BenchToolsAdapter"
STREAMS: tuple[int, ...] = (1, 8, 16)
# Case name -> (tool, what it is).
TOOLS: dict[str, tuple[str, str]] = {
    "server_trivial": ("echo", "trivial tool: echo(x), a small int back"),
    "server_cpu": ("spin", "CPU-bound tool: ~5 ms of pure-Python loop on locals"),
    "server_numpy": ("numpy_sum", "NumPy tool: sqrt(a*a + 1).sum() over fresh float64 arrays"),
}
SERVERS: dict[str, str] = {
    "ours": "our server (snakepit_bridge.server), default options",
    "nice5": "our server with --worker-nice 5 (tool threads 5 nice levels below the loop)",
    "serial": "our server with --max-workers 1 (the serial floor)",
    "grpcio": "minimal grpcio sync server, same pool size, GIL build",
}
CPU_TOOL_MS = 5.0
NUMPY_N = 200_000
READY_TIMEOUT = 60.0
STOP_TIMEOUT = 20.0
# BLAS and OpenMP pools of one thread in every server: the server's own threads are what
# is measured, and the 2 cores are already shared with the load client.
THREAD_ENV = {"OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


def settings(quick: bool) -> dict[str, Any]:
    if quick:
        return {
            "rounds": 1,
            "warmup_s": 0.1,
            "duration_s": 0.3,
            "pings": 20,
            "ping_warmup_s": 0.2,
            "ceiling_calls": 4,
            "ceiling_reps": 1,
            "min_requests": 5,
        }
    return {
        "rounds": 2,
        "warmup_s": 0.3,
        "duration_s": 1.5,
        "pings": 200,
        "ping_warmup_s": 1.0,
        "ceiling_calls": 100,
        "ceiling_reps": 3,
        "min_requests": 20,
    }


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SNAKEPIT_")}
    env["PYTHONPATH"] = os.pathsep.join(
        p for p in (str(REPO), os.environ.get("PYTHONPATH", "")) if p
    )
    env.update(THREAD_ENV)
    return env


# --- interpreters ---------------------------------------------------------------------------

_GRPCIO_PROBE = (
    "import sys, sysconfig, grpc, google.protobuf, snakepit_bridge._native; "
    "from snakepit_bridge.server.proto import bridge_pb2; "
    "sys.exit(1 if sysconfig.get_config_var('Py_GIL_DISABLED') else 0)"
)


def _probe(python: str, code: str) -> bool:
    try:
        proc = subprocess.run(
            [python, "-c", code], env=_env(), capture_output=True, timeout=120, check=False
        )
    except (OSError, subprocess.TimeoutExpired):
        return False
    return proc.returncode == 0


def _main_worktree() -> Path | None:
    try:
        proc = subprocess.run(
            ["git", "-C", str(REPO), "rev-parse", "--path-format=absolute", "--git-common-dir"],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return Path(proc.stdout.strip()).parent if proc.returncode == 0 else None


@cache
def grpcio_python() -> str | None:
    """A GIL interpreter that can run grpcio with this checkout: this one,
    $SNAKEPIT_GIL_PYTHON, the checkout's .venv-gil, or the main worktree's .venv-gil."""
    candidates = [sys.executable, os.environ.get("SNAKEPIT_GIL_PYTHON")]
    candidates.append(str(REPO / ".venv-gil" / "bin" / "python"))
    main = _main_worktree()
    if main is not None:
        candidates.append(str(main / ".venv-gil" / "bin" / "python"))
    seen: set[str] = set()
    for python in candidates:
        if not python or python in seen or not Path(python).exists():
            continue
        seen.add(python)
        if _probe(python, _GRPCIO_PROBE):
            return python
    return None


def python_version(python: str) -> str:
    proc = subprocess.run(
        [
            python,
            "-c",
            "import sys, sysconfig; print(sys.version.split()[0] + "
            "('t' if sysconfig.get_config_var('Py_GIL_DISABLED') else ''))",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    return proc.stdout.strip() or "?"


# --- servers --------------------------------------------------------------------------------


@dataclass
class Running:
    name: str
    proc: subprocess.Popen[bytes]
    port: int
    stderr_path: Path

    def stop(self) -> int | None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(STOP_TIMEOUT)
        return self.proc.returncode

    def stderr_tail(self) -> str:
        try:
            return self.stderr_path.read_text(errors="replace")[-3000:]
        except OSError:
            return ""


def start_server(name: str, workers: int, directory: Path) -> Running:
    ready = directory / f"ready-{name}"
    err = directory / f"{name}.err"
    env = _env()
    if name == "grpcio":
        python = grpcio_python()
        assert python is not None
        argv = [
            python,
            "-m",
            "benchmarks.grpcio_server",
            "--adapter",
            ADAPTER,
            "--max-workers",
            str(workers),
            "--ready-file",
            str(ready),
        ]
    else:
        env["SNAKEPIT_READY_FILE"] = str(ready)
        argv = [sys.executable, "-m", "snakepit_bridge.server", "--adapter", ADAPTER]
        argv += ["--port", "0", "--log-level", "warning"]
        if name == "serial":
            argv += ["--max-workers", "1"]
        elif name == "nice5":
            argv += ["--worker-nice", "5"]
    with open(err, "wb") as stderr:
        proc = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=stderr,
            env=env,
            cwd=REPO,
        )
    server = Running(name, proc, 0, err)
    deadline = time.monotonic() + READY_TIMEOUT
    while time.monotonic() < deadline:
        if ready.exists() and ready.read_text().strip():
            server.port = int(ready.read_text())
            return server
        if proc.poll() is not None:
            raise RuntimeError(
                f"{name} server exited with {proc.returncode} before it was ready:\n"
                + server.stderr_tail()
            )
        time.sleep(0.02)
    server.stop()
    raise RuntimeError(
        f"{name} server not ready within {READY_TIMEOUT} s:\n" + server.stderr_tail()
    )


def run_client(phases: list[dict[str, Any]], directory: Path, timeout: float) -> dict[str, Any]:
    plan = directory / "plan.json"
    plan.write_text(json.dumps(phases))
    python = grpcio_python()
    kind = "grpcio" if python is not None else "grpclib"
    argv = [python or sys.executable, "-m", "benchmarks.server_load"]
    argv += ["--plan", str(plan), "--client", kind]
    proc = subprocess.run(
        argv, env=_env(), cwd=REPO, capture_output=True, text=True, timeout=timeout, check=False
    )
    lines = proc.stdout.strip().splitlines()
    if proc.returncode != 0 or not lines:
        raise RuntimeError(f"the load client exited with {proc.returncode}:\n{proc.stderr[-3000:]}")
    result: dict[str, Any] = json.loads(lines[-1])
    result["python"] = argv[0]
    return result


# --- the group ------------------------------------------------------------------------------


def calibrate_spin(target_ms: float) -> tuple[int, float]:
    """Iterations of the CPU tool that take about ``target_ms`` here, and the time they take."""
    from benchmarks.server_tools import BenchToolsAdapter

    adapter = BenchToolsAdapter()
    n = 1000
    while True:
        t0 = time.perf_counter()
        adapter.spin(n)
        elapsed = time.perf_counter() - t0
        if elapsed >= target_ms / 1e3 / 4:
            break
        n *= 2
    n = max(1, int(n * target_ms / 1e3 / elapsed))
    times = []
    for _ in range(5):
        t0 = time.perf_counter()
        adapter.spin(n)
        times.append(time.perf_counter() - t0)
    return n, min(times) * 1e3


def default_workers() -> int:
    counter = getattr(os, "process_cpu_count", None)
    if counter is not None:
        return int(counter() or 1)
    try:
        return len(os.sched_getaffinity(0)) or 1
    except AttributeError:
        return os.cpu_count() or 1


def machine_ceiling(spin_n: int, calls: int, reps: int) -> dict[str, Any]:
    """The machine's own 2-thread speedup for the CPU tool at this moment: the tool called
    directly, ``calls`` times on one thread, then on two at once (no server, no client)."""
    import threading

    from benchmarks.server_tools import BenchToolsAdapter

    adapter = BenchToolsAdapter()

    def timed(threads: int) -> float:
        def work() -> None:
            for _ in range(calls):
                adapter.spin(spin_n)

        pool = [threading.Thread(target=work) for _ in range(threads)]
        t0 = time.perf_counter()
        for t in pool:
            t.start()
        for t in pool:
            t.join()
        return time.perf_counter() - t0

    speedups = [2 * timed(1) / timed(2) for _ in range(reps)]
    return {"speedup_median": statistics.median(speedups), "speedups": speedups}


def _aggregate(rounds: list[dict[str, Any]]) -> dict[str, Any]:
    """One (tool, server, streams) point over its rounds: median throughput, pooled latency."""
    rps = [r["requests_per_s"] for r in rounds]
    lat = sorted(x for r in rounds for x in r.get("latencies_ms", []))
    out: dict[str, Any] = {
        "requests_per_s": statistics.median(rps),
        "requests_per_s_rounds": rps,
        "requests": sum(r["requests"] for r in rounds),
        "p50_ms": statistics.median(lat) if lat else None,
        "p99_ms": lat[max(0, math.ceil(0.99 * len(lat)) - 1)] if lat else None,
        "failures": sum(r["failures"] for r in rounds),
        "failure_examples": [e for r in rounds for e in r["failure_examples"]][:3],
        "client_cpu_share": statistics.median(r["client_cpu_share"] for r in rounds),
    }
    return out


def run(impl: str, s: dict[str, Any], selected: set[str] | None) -> dict[str, Any]:
    """Start the servers, run the plan against all of them, interleaved, stop them.

    Every (tool, streams) point is measured on the three servers one right after the other,
    in an order that rotates from round to round, so a slow spell of the shared machine lands
    on all of them; a full run has two rounds (throughput: their median; latency
    percentiles: over the requests of all rounds).
    """
    if impl != "native":
        raise ValueError("the server group measures the native package's server only")
    quick = bool(s.get("quick"))
    cfg = settings(quick)
    tools = [name for name in TOOLS if selected is None or name in selected]
    spin_n, spin_ms = calibrate_spin(CPU_TOOL_MS)
    params = {
        "server_trivial": {"x": 7},
        "server_cpu": {"n": spin_n},
        "server_numpy": {"n": NUMPY_N},
    }
    reference = grpcio_python()
    numpy_ok = {"ours": _probe(sys.executable, "import numpy")}
    numpy_ok["serial"] = numpy_ok["nice5"] = numpy_ok["ours"]
    skipped: dict[str, str] = {}
    if reference is None:
        skipped["grpcio"] = (
            "no GIL interpreter with grpcio found (this one, $SNAKEPIT_GIL_PYTHON, .venv-gil "
            "of this checkout or of the main worktree)"
        )
    else:
        numpy_ok["grpcio"] = _probe(reference, "import numpy")
    servers = [name for name in SERVERS if name not in skipped]
    workers = default_workers()
    ceiling = (
        machine_ceiling(spin_n, cfg["ceiling_calls"], cfg["ceiling_reps"])
        if "server_cpu" in tools
        else None
    )

    phases: list[dict[str, Any]] = []
    for round_no in range(cfg["rounds"]):
        for case in tools:
            tool = TOOLS[case][0]
            for streams in STREAMS:
                turn = servers[round_no % len(servers) :] + servers[: round_no % len(servers)]
                for server_name in turn:
                    if tool == "numpy_sum" and not numpy_ok.get(server_name):
                        continue
                    phases.append(
                        {
                            "server": server_name,
                            "case": case,
                            "tool": tool,
                            "params": params[case],
                            "streams": streams,
                            "warmup_s": cfg["warmup_s"],
                            "duration_s": cfg["duration_s"],
                            "min_requests": cfg["min_requests"],
                        }
                    )
    if "server_cpu" in tools:
        phases.extend(
            {
                "server": server_name,
                "case": "ping",
                "tool": "spin",
                "params": params["server_cpu"],
                "streams": max(STREAMS),
                "pings": cfg["pings"],
                "warmup_s": cfg["ping_warmup_s"],
                "duration_s": cfg["duration_s"],
            }
            for server_name in servers
        )
    budget = 120.0 + sum(p["warmup_s"] + p["duration_s"] for p in phases) * 4

    running: dict[str, Running] = {}
    statuses: dict[str, int | None] = {}
    with tempfile.TemporaryDirectory(prefix="bench-server-") as tmp:
        directory = Path(tmp)
        try:
            for server_name in servers:
                running[server_name] = start_server(server_name, workers, directory)
            for phase in phases:
                phase["address"] = f"127.0.0.1:{running[phase['server']].port}"
            out = run_client(phases, directory, budget)
        finally:
            for server_name, server in running.items():
                statuses[server_name] = server.stop()
        for server_name, status in statuses.items():
            if status not in (0, None):
                raise RuntimeError(
                    f"{server_name} server exited with {status}:\n"
                    + running[server_name].stderr_tail()
                )

    collected: dict[tuple[str, str, int], list[dict[str, Any]]] = {}
    pings: dict[str, Any] = {}
    for phase, result in zip(phases, out["phases"], strict=True):
        if phase["case"] == "ping":
            result.pop("latencies_ms", None)
            pings[phase["server"]] = result
        else:
            collected.setdefault((phase["case"], phase["server"], phase["streams"]), []).append(
                result
            )
    results: dict[str, Any] = {case: {} for case in tools}
    for (case, server_name, streams), rounds in collected.items():
        results[case].setdefault(server_name, {})[str(streams)] = _aggregate(rounds)
    return {
        "info": {
            "client": f"{out['client']} on Python {python_version(out['python'])}",
            "server_python": f"{sys.executable} ({python_version(sys.executable)})",
            "reference_python": None
            if reference is None
            else f"{reference} ({python_version(reference)})",
            "workers": workers,
            "spin_n": spin_n,
            "spin_ms_here": spin_ms,
            "numpy_n": NUMPY_N,
            "numpy_available": numpy_ok,
            "free_threaded_server": bool(sysconfig.get_config_var("Py_GIL_DISABLED")),
            "streams": list(STREAMS),
            "window_s": cfg["duration_s"],
            "rounds": cfg["rounds"],
            "quick": quick,
        },
        "machine_ceiling": ceiling,
        "skipped_servers": skipped,
        "cases": results,
        "ping": pings,
    }
