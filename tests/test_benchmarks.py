"""The benchmark runner works and its output is complete (quick mode). No timing is asserted."""

from __future__ import annotations

import importlib.util
import json
import math
import os
import subprocess
import sys
import sysconfig
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parent.parent


def _load(name: str) -> Any:
    """Import ``benchmarks.<name>`` from the checkout (benchmarks/ is not an installed package)."""
    if str(REPO) not in sys.path:
        sys.path.insert(0, str(REPO))
    return importlib.import_module(f"benchmarks.{name}")


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    out = tmp_path_factory.mktemp("bench") / "results.json"
    proc = subprocess.run(
        [sys.executable, "-m", "benchmarks", "--quick", "--json", "--out", str(out)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert proc.returncode == 0, f"runner failed ({proc.returncode}):\n{proc.stderr[-6000:]}"
    data = json.loads(proc.stdout)  # stdout is nothing but the JSON document
    assert json.loads(out.read_text()) == data
    return data


def _positive(value: Any, where: str) -> None:
    assert isinstance(value, (int, float)) and not isinstance(value, bool), f"{where}: {value!r}"
    assert math.isfinite(value) and value > 0, f"{where}: {value!r}"


def _finite(value: Any, where: str) -> None:
    assert isinstance(value, (int, float)) and not isinstance(value, bool), f"{where}: {value!r}"
    assert math.isfinite(value), f"{where}: {value!r}"


def test_runs_on_this_interpreter(run: dict[str, Any]) -> None:
    meta = run["meta"]
    assert run["schema"] == 1
    assert meta["quick"] is True
    assert meta["executable"] == sys.executable
    assert meta["python_version"].startswith(".".join(map(str, sys.version_info[:3])))
    assert meta["cpu_count"] and meta["date_utc"]
    cases = _load("cases")
    assert set(run["impls"]) == set(cases.IMPLS)
    for impl, groups in run["impls"].items():
        assert set(groups) == {g for g in cases.GROUPS if cases.group_applies(impl, g)}, impl
        for group, res in groups.items():
            assert res["available"], f"{impl}/{group}: {res.get('reason')}"
            assert not res.get("error"), (
                f"{impl}/{group}: {res.get('error')}\n{res.get('traceback')}"
            )


def test_free_threaded_build_keeps_the_gil_disabled(run: dict[str, Any]) -> None:
    free_threaded = bool(sysconfig.get_config_var("Py_GIL_DISABLED"))
    for impl, groups in run["impls"].items():
        for group, res in groups.items():
            assert res["free_threaded_build"] is free_threaded, f"{impl}/{group}"
            if free_threaded:
                assert res["gil_enabled"] is False, f"{impl}/{group}"


def test_single_thread_cases_and_floors_complete(run: dict[str, Any]) -> None:
    cases = _load("cases")
    for impl in cases.IMPLS:
        single = run["impls"][impl]["single"]
        assert set(single["cases"]) == {c.name for c in cases.SINGLE_CASES}, impl
        assert set(single["floors"]) == {c.name for c in cases.FLOORS}, impl
        for kind in ("cases", "floors"):
            for name, entry in single[kind].items():
                for key in ("best_ns", "median_ns"):
                    _positive(entry[key], f"{impl} {kind} {name} {key}")
                assert entry["rounds"] >= 1
                for sample in entry["samples_ns"]:
                    _positive(sample, f"{impl} {name} sample")
        stats = single["cases"]["get_stats"]
        assert {"adapter_class", "thread_safe", "tracker"} <= set(stats["keys"])
        assert {"total_requests", "active_threads", "threads_seen"} <= set(stats["tracker_keys"])


def test_scaling_complete(run: dict[str, Any]) -> None:
    cases = _load("cases")
    for impl in cases.IMPLS:
        scaling = run["impls"][impl]["scaling"]
        counts = scaling["thread_counts"]
        assert counts[0] == 1 and 2 in counts
        expected = {c.name for c in cases.SCALING_CASES if impl == "native" or not c.native_only}
        assert set(scaling["cases"]) == expected
        assert "forward_call" in expected or impl == "baseline"
        for name, entry in scaling["cases"].items():
            _positive(entry["serial_ns_per_op"], f"{impl} {name} serial")
            _positive(entry["ops_per_thread"], f"{impl} {name} ops")
            assert set(entry["threads"]) == {str(c) for c in counts}
            for count, figures in entry["threads"].items():
                _positive(figures["speedup_median"], f"{impl} {name} x{count}")
                for speedup in figures.get("speedups", []):
                    _positive(speedup, f"{impl} {name} x{count}")
                if count == "1":
                    continue
                if entry["ceiling"] is None:
                    assert "vs_ceiling_median" not in figures
                    continue
                # One paired sample per repetition: the case against its ceiling run just before.
                assert len(figures["vs_ceiling"]) == entry["reps"]
                _positive(figures["vs_ceiling_median"], f"{impl} {name} x{count} vs ceiling")
                low, high = figures["vs_ceiling_quartiles"]
                assert low <= figures["vs_ceiling_median"] <= high


def test_memory_complete(run: dict[str, Any]) -> None:
    cases = _load("cases")
    for impl in cases.IMPLS:
        memory = run["impls"][impl]["memory"]["cases"]
        assert set(memory) == set(cases.MEMORY_CASES)
        _positive(memory["adapter"]["traced_bytes_per_object"], f"{impl} adapter")
        _positive(memory["adapter_used"]["traced_bytes_per_object"], f"{impl} adapter_used")
        _finite(memory["tl_value"]["traced_bytes_per_value"], f"{impl} tl_value")
        for name in ("adapter", "adapter_used"):
            if memory[name]["rss_bytes_per_object"] is not None:
                _finite(memory[name]["rss_bytes_per_object"], f"{impl} {name} rss")
        flat = memory["flat_tracked_calls"]
        _positive(flat["calls"], f"{impl} flat calls")
        _finite(flat["traced_growth_bytes"], f"{impl} flat traced")
        assert isinstance(flat["flat"], bool)
        # Every call was counted by the adapter's tracker (warm-up included).
        assert flat["tracker_total_requests"] >= flat["calls"]


def test_hammer_counts_exact_or_skipped_with_reason(run: dict[str, Any]) -> None:
    for impl in ("native", "baseline"):
        hammer = run["impls"][impl]["hammer"]["cases"]["hammer_compute_intensive"]
        if hammer.get("skipped"):
            assert hammer["reason"], impl
            continue
        assert impl == "native"
        assert hammer["exact"], hammer["checks"]
        assert hammer["threads"] == 16
        _positive(hammer["requests_per_s"], "hammer")


def test_targets_judged(run: dict[str, Any]) -> None:
    ids = [t["id"] for t in run["targets"]]
    assert len(ids) == len(set(ids))
    assert set(ids) - {t["id"] for t in run["targets"] if t.get("group")} == {
        "tracked_overhead",
        "acquire_lock_vs_floor",
        "acquire_lock_vs_rlock",
        "tl_hit_vs_floor",
        "tl_hit_vs_local",
        "tl_hit_vs_obj_floor",
        "tracked_vs_baseline",
        "acquire_lock_vs_baseline",
        "tl_miss_vs_baseline",
        "get_stats_vs_baseline",
        "tl_hit_vs_baseline",
        "scaling_tracked_2",
        "scaling_tl_hit_2",
        "scaling_c_method_2",
        "scaling_forward_2",
        "scaling_tl_hit_bound_2",
        "scaling_tracked_per_thread_2",
        "scaling_tl_hit_per_thread_2",
        "memory_flat",
    }
    peers = _load("peers")
    assert {t["id"] for t in run["targets"] if t.get("group") == "peers"} == {
        c.id for c in peers.COMPARISONS
    }
    assert {t["id"] for t in run["targets"] if t.get("group") == "server"} == {
        "server_cpu_vs_serial",
        "server_trivial_vs_grpcio",
        "server_trivial_vs_grpcio_nice5",
        "server_ping_p99",
    }
    for target in run["targets"]:
        assert target["met"] in (True, False, None)
        if target.get("group") in ("peers", "server"):
            if target["value"] is None:  # a peer or the grpcio reference was not there
                assert target["by"].startswith("not measured"), target
            else:
                _positive(target["value"], target["id"])
            continue
        if target["id"] == "tracked_overhead":  # a difference of two timings: any sign
            _finite(target["value"], target["id"])
        elif target["op"] != "flat":
            _positive(target["value"], target["id"])


def test_tables_render(run: dict[str, Any]) -> None:
    report = _load("report")
    text = report.text(run)
    markdown = report.markdown(run)
    for case in _load("cases").SINGLE_CASES:
        assert case.title in text and case.title in markdown
    assert "Targets" in text and "Scaling" in text and "Memory" in text
    assert "Native peers: comparisons" in text and "Server: requests/s and latency" in text
    for peer in _load("peers").PEER_NAMES:
        assert peer in text  # measured or named as missing


def test_peers_complete(run: dict[str, Any]) -> None:
    peers = _load("peers")
    group = run["impls"]["native"]["peers"]
    assert set(group["peers"]) == set(peers.PEER_NAMES)
    available = {name for name, p in group["peers"].items() if p["available"]}
    for name, peer in group["peers"].items():
        if not peer["available"]:
            assert peer["reason"], name
    expected = {c.name for c in peers.CASES if c.who not in peers.PEER_NAMES or c.who in available}
    assert set(group["cases"]) == expected
    for name, entry in group["cases"].items():
        _positive(entry["best_ns"], name)
        _positive(entry["median_ns"], name)
    scaled = {c.name for c in peers.CASES if c.scaling and c.name in expected}
    assert set(group["scaling"]) == scaled | {"bare_call"}
    for name, entry in group["scaling"].items():
        _positive(entry["speedup_median"], name)
        _positive(entry["vs_ceiling_median"], name)
        assert entry["reps"] == 1  # quick mode
    for comp in peers.COMPARISONS:
        if comp.kind != "scaling":
            continue
        for peer_case in comp.peers:
            assert (f"{comp.ours}/{peer_case}" in group["paired"]) == (peer_case in scaled)
    # get_stats() was measured with 16 live threads' counts in both trackers.
    assert group["stats_threads_seen"] == {"native": 16, "python": 16}
    if sysconfig.get_config_var("Py_GIL_DISABLED"):
        assert "fastrlock" not in available  # it would turn the GIL on (see peers.probe)


def test_server_complete(run: dict[str, Any]) -> None:
    server = _load("server")
    group = run["impls"]["native"]["server"]
    servers = set(server.SERVERS) - set(group["skipped_servers"])
    assert {"ours", "nice5", "serial"} <= servers
    for name, reason in group["skipped_servers"].items():
        assert name == "grpcio" and reason
    assert set(group["cases"]) == set(server.TOOLS)
    for case, by_server in group["cases"].items():
        if case == "server_numpy":
            runnable = {s for s in servers if group["info"]["numpy_available"][s]}
        else:
            runnable = servers
        assert set(by_server) == runnable, case
        for name, by_streams in by_server.items():
            assert set(by_streams) == {str(n) for n in server.STREAMS}
            for streams, entry in by_streams.items():
                where = f"{case} {name} {streams}"
                assert entry["failures"] == 0, (where, entry["failure_examples"])
                # The window is extended until a few requests completed (min_requests).
                assert entry["requests"] >= 1, where
                _positive(entry["requests_per_s"], where)
                assert 0 < entry["p50_ms"] <= entry["p99_ms"], where
    assert set(group["ping"]) == servers
    for name, ping in group["ping"].items():
        assert ping["pings"] == 20, name  # quick mode
        assert 0 < ping["ping_p50_ms"] <= ping["ping_p99_ms"] <= ping["ping_max_ms"], name
    _positive(group["info"]["spin_n"], "spin_n")


def _shadow(directory: Path, names: list[str]) -> str:
    """A directory that makes each named package unimportable when first on PYTHONPATH."""
    for name in names:
        package = directory / name
        package.mkdir()
        (package / "__init__.py").write_text(
            f"raise ImportError('{name} made unimportable by the test')\n"
        )
    return str(directory)


def test_missing_peers_are_named_and_the_run_goes_on(tmp_path: Path) -> None:
    peers = _load("peers")
    env = dict(os.environ)
    env["PYTHONPATH"] = _shadow(tmp_path, list(peers.PEER_NAMES))
    out = tmp_path / "results.json"
    proc = subprocess.run(
        [sys.executable, "-m", "benchmarks", "--quick", "--cases", "peers", "--out", str(out)],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-6000:]
    group = json.loads(out.read_text())["impls"]["native"]["peers"]
    for name in peers.PEER_NAMES:
        assert group["peers"][name]["available"] is False
        assert "made unimportable by the test" in group["peers"][name]["reason"]
        assert f"peer {name} not measured" in proc.stdout  # the report names it
    # Our cases, the stdlib's and the pure-Python tracker's are all still measured.
    assert set(group["cases"]) == {c.name for c in peers.CASES if c.who not in peers.PEER_NAMES}
    targets = {t["id"]: t for t in json.loads(out.read_text())["targets"]}
    assert targets["peers_tl"]["value"] is None
    assert "ft_utils: cannot be imported" in targets["peers_tl"]["by"]
    assert targets["peers_stats_16"]["value"] is not None  # needs no peer


def test_skipped_groups_do_not_run(tmp_path: Path) -> None:
    out = tmp_path / "results.json"
    proc = subprocess.run(
        [
            *(sys.executable, "-m", "benchmarks", "--quick", "--json", "--out", str(out)),
            *("--cases", "peers", "server", "--skip", "peers", "server"),
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr[-6000:]
    data = json.loads(out.read_text())
    assert data["impls"] == {"native": {}, "baseline": {}}
    assert {"peers", "server"} <= set(data["skipped_groups"])
    assert "benchmarks: " not in proc.stderr  # no group was started


def test_load_client_percentiles_and_rounds() -> None:
    load = _load("server_load")
    assert load.percentile([], 99) is None
    assert load.percentile([3.0], 99) == 3.0
    values = [float(x) for x in range(1, 101)]
    assert load.percentile(values, 50) == 50.0
    assert load.percentile(values, 99) == 99.0
    assert load.percentile(list(reversed(values)), 100) == 100.0
    server = _load("server")
    rounds = [
        {
            "requests_per_s": r,
            "requests": 2,
            "latencies_ms": lat,
            "failures": 0,
            "failure_examples": [],
            "client_cpu_share": 0.1,
        }
        for r, lat in ((10.0, [1.0, 2.0]), (30.0, [3.0, 4.0]), (20.0, [5.0, 6.0]))
    ]
    point = server._aggregate(rounds)
    assert point["requests_per_s"] == 20.0  # the median round
    assert point["requests"] == 6
    assert point["p50_ms"] == 3.5 and point["p99_ms"] == 6.0  # over all rounds' requests


def test_server_profile_splits_cpu_by_thread() -> None:
    proc = subprocess.run(
        [
            *(sys.executable, "-m", "benchmarks.server_profile", "--json"),
            *("--tool", "echo", "--streams", "2", "--seconds", "1.0"),
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-6000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["server_exit_status"] == 0
    assert result["tool"] == "echo" and result["streams"] == 2
    _positive(result["requests_per_s"], "requests/s")
    # Every request is parsed and answered on the event loop, and runs on a pool thread. /proc
    # counts CPU time in clock ticks (10 ms), so on a busy machine one thread group's share of a
    # short run can round down to 0: each share is a finite non-negative figure, and together
    # they account for some CPU.
    loop_us = result["event_loop_cpu_us_per_request"]
    pool_us = result["other_threads_cpu_us_per_request"]
    _finite(loop_us, "event loop")
    _finite(pool_us, "pool")
    assert loop_us >= 0 and pool_us >= 0, (loop_us, pool_us)
    _positive(loop_us + pool_us, "event loop and pool together")


def test_full_and_quick_settings_have_the_same_keys() -> None:
    """The tests run quick mode only: a key missing from the full settings would fail there."""
    worker, server = _load("worker"), _load("server")
    assert set(worker.SETTINGS["full"]) == set(worker.SETTINGS["quick"])
    assert set(server.settings(False)) == set(server.settings(True))
