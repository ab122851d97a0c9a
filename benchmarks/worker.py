"""One measurement process: one implementation, one group of cases.

Run by the runner as ``python -m benchmarks.worker --impl native --group single --out FILE``;
it writes one JSON object to FILE (stdout is left to whatever the measured code prints).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import sys
import time
import traceback
from typing import Any

from benchmarks import cases as C
from benchmarks.standalone import environment
from benchmarks.timing import (
    UNROLL,
    LoopCase,
    ThreadRun,
    calibrate,
    compile_loop,
    env_values,
    measure_interleaved,
    run_in_threads,
    summarize,
)

# Full runs: each round of a single-thread case takes ~40 ms, each thread of a scaling run
# ~300 ms. Quick runs (CI): fixed, small loop counts; they only prove the runner works.
SETTINGS: dict[str, dict[str, Any]] = {
    "full": {
        "rounds": 5,  # per pass; the runner runs three passes per implementation, alternating
        "round_ns": 40e6,
        "fixed_n": None,
        "scaling_reps": 7,
        "scaling_thread_ns": 300e6,
        "scaling_fixed_n": None,
        "mem_objects": 20_000,
        "mem_values": 100_000,
        "flat_calls": 1_000_000,
        "flat_warmup": 100_000,
        "hammer_threads": 16,
        "hammer_total": 100_000,
        "peer_rounds": 7,
        "peer_scaling_reps": 5,
        "peer_scaling_thread_ns": 200e6,
        "quick": False,
    },
    "quick": {
        "rounds": 3,
        "round_ns": None,
        "fixed_n": 300,  # x UNROLL = 3,000 operations per round
        "scaling_reps": 1,
        "scaling_thread_ns": None,
        "scaling_fixed_n": 300,
        "mem_objects": 1_000,
        "mem_values": 2_000,
        "flat_calls": 20_000,
        "flat_warmup": 2_000,
        "hammer_threads": 16,
        "hammer_total": 1_600,
        "peer_rounds": 3,
        "peer_scaling_reps": 1,
        "peer_scaling_thread_ns": None,
        "quick": True,
    },
}


def scaling_thread_counts() -> list[int]:
    """Thread counts besides 1 (the serial reference): 2 and os.cpu_count()."""
    return sorted({2, max(2, os.cpu_count() or 2)})


# --- single-thread ----------------------------------------------------------------------------


def run_single(impl: str, s: dict[str, Any], selected: set[str] | None) -> dict[str, Any]:
    base, decorator, quiet, info = C.load_impl(impl)
    bench_cls = C.make_bench_class(base, decorator, quiet)
    env = C.single_env(bench_cls)
    cm_env, cm_stmt, cm_desc = C.c_context_floor()
    env.update(cm_env)
    names = list(env)
    args = env_values(env, names)

    loops: list[LoopCase] = []
    stmts: dict[str, str] = {}
    for case in C.FLOORS:  # always measured: every target is judged against them
        stmt = cm_stmt if case.name == "c_with" else case.stmt
        key = "floor:" + case.name
        stmts[key] = stmt
        loops.append(LoopCase(key, compile_loop(stmt, names, label=key), args))
    for case in C.SINGLE_CASES:
        if selected is not None and case.name not in selected:
            continue
        stmts[case.name] = case.stmt
        loops.append(LoopCase(case.name, compile_loop(case.stmt, names, label=case.name), args))

    measure_interleaved(loops, rounds=s["rounds"], target_ns=s["round_ns"], fixed_n=s["fixed_n"])
    raw = raw_single(loops, stmts)
    out = summarize_single(raw)
    out["floors"]["c_with"]["description"] = cm_desc
    out["info"] = info
    out["raw"] = raw
    out["c_with_description"] = cm_desc
    if "get_stats" in out["cases"]:
        stats = env["a"].get_stats()
        tracker = stats.get("tracker", {})
        out["get_stats_keys"] = sorted(stats)
        out["get_stats_tracker_keys"] = sorted(tracker) if isinstance(tracker, dict) else []
        out["cases"]["get_stats"]["keys"] = out["get_stats_keys"]
        out["cases"]["get_stats"]["tracker_keys"] = out["get_stats_tracker_keys"]
    return out


def raw_single(loops: list[LoopCase], stmts: dict[str, str]) -> dict[str, dict[str, Any]]:
    """Each measured loop's statement, operations per round and rounds (CPU and wall ns)."""
    return {
        lc.name: {
            "stmt": stmts[lc.name],
            "ops_per_round": [lc.n * UNROLL],
            "samples_ns": [round(x, 3) for x in lc.samples],
            "wall_samples_ns": [round(x, 3) for x in lc.wall_samples],
        }
        for lc in loops
    }


def summarize_single(raw: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Per-case figures from raw per-round samples (CPU time; loop overhead subtracted).

    Used on one worker's rounds and again by the runner on the rounds of several passes.
    """
    loop = raw["floor:loop"]["samples_ns"]
    loop_best, loop_median = min(loop), statistics.median(loop)
    wall_loop = raw["floor:loop"]["wall_samples_ns"]
    wall_best, wall_median = min(wall_loop), statistics.median(wall_loop)
    cases: dict[str, Any] = {}
    floors: dict[str, Any] = {}
    for name, r in raw.items():
        if name == "floor:loop":
            entry: dict[str, Any] = {
                "best_ns": loop_best,
                "median_ns": loop_median,
                "rounds": len(loop),
                "note": "loop overhead per statement; subtracted from every other figure",
            }
        else:
            entry = summarize(r["samples_ns"], loop_best, loop_median)
            wall = summarize(r["wall_samples_ns"], wall_best, wall_median)
            entry["wall_best_ns"] = wall["best_ns"]
            entry["wall_median_ns"] = wall["median_ns"]
        entry["stmt"] = r["stmt"]
        entry["ops_per_round"] = r["ops_per_round"]
        entry["samples_ns"] = r["samples_ns"]
        if name.startswith("floor:"):
            floors[name[len("floor:") :]] = entry
        else:
            cases[name] = entry
    return {"cases": cases, "floors": floors}


# --- scaling ----------------------------------------------------------------------------------


def run_scaling(impl: str, s: dict[str, Any], selected: set[str] | None) -> dict[str, Any]:
    """Scaling of each case, each repetition paired with a fresh run of its ceiling.

    On a shared 2-vCPU machine the cost of a contended cache line changes from minute to
    minute (where the host places the two vCPUs), by more than the effects measured here.
    So every case is judged against its ceiling measured *just before it*: per repetition,
    the ceiling runs (serially, then in parallel), then the case does, and the ratio of the
    two speedups is one sample. Cases run in a different order in every repetition.
    """
    base, decorator, quiet, info = C.load_impl(impl)
    bench_cls = C.make_bench_class(base, decorator, quiet)
    shared = bench_cls()
    shared.set_thread_local("hit", 1)
    forward = C.make_forward_object(bench_cls) if impl == "native" else None
    counts = scaling_thread_counts()
    available = [c for c in C.SCALING_CASES if impl == "native" or not c.native_only]
    wanted = available
    if selected is not None:  # every figure is reported next to its ceiling
        names = {c.name for c in available if c.name in selected}
        names |= {c.ceiling for c in available if c.name in names and c.ceiling}
        wanted = [c for c in available if c.name in names]

    plan: dict[str, tuple[C.ScalingCase, Any, Any, int]] = {}
    for case in wanted:
        fn = compile_loop(case.stmt, C.SCALING_NAMES, label=case.name)

        def make_args(
            _i: int, _shared: bool = case.shared, _own: bool = case.own_class
        ) -> tuple[Any, ...]:
            if _shared:
                a = shared
            elif _own:
                a = C.make_bench_class(base, decorator, quiet)()
            else:
                a = bench_cls()
            a.set_thread_local("hit", 1)
            return (a, 1, "hit", forward, a.get_thread_local)

        if s["scaling_fixed_n"] is not None:
            n = s["scaling_fixed_n"]
        else:
            n = calibrate(fn, make_args(0), s["scaling_thread_ns"])
        plan[case.name] = (case, fn, make_args, n)

    serial: dict[str, list[ThreadRun]] = {name: [] for name in plan}
    parallel: dict[str, dict[int, list[ThreadRun]]] = {
        name: {c: [] for c in counts} for name in plan
    }
    paired: dict[str, dict[int, list[float]]] = {name: {c: [] for c in counts} for name in plan}
    paired_cpu: dict[str, dict[int, list[float]]] = {name: {c: [] for c in counts} for name in plan}

    def measure(name: str) -> tuple[ThreadRun, dict[int, ThreadRun]]:
        _case, fn, make_args, n = plan[name]
        one = run_in_threads(fn, make_args, 1, n)
        many = {count: run_in_threads(fn, make_args, count, n) for count in counts}
        serial[name].append(one)
        for count, run in many.items():
            parallel[name][count].append(run)
        return one, many

    # Cases with a ceiling run right after a fresh run of it; a ceiling that no selected case
    # uses runs on its own.
    judged = [name for name, (case, *_rest) in plan.items() if case.ceiling]
    ceilings = {plan[name][0].ceiling for name in judged}
    order = judged + [name for name in plan if name not in judged and name not in ceilings]
    rng = random.Random(0)  # a fixed seed: the same orders in every run
    for _ in range(s["scaling_reps"]):
        rng.shuffle(order)
        for name in order:
            case = plan[name][0]
            if case.ceiling is None:
                measure(name)
                continue
            c1, cn = measure(case.ceiling)
            m1, mn = measure(name)
            for count in counts:
                paired[name][count].append(
                    speedup(m1, mn[count], count) / speedup(c1, cn[count], count)
                )
                case_cpu, ceiling_cpu = (
                    cpu_speedup(m1, mn[count], count),
                    cpu_speedup(c1, cn[count], count),
                )
                if case_cpu is not None and ceiling_cpu is not None:
                    paired_cpu[name][count].append(case_cpu / ceiling_cpu)

    results: dict[str, Any] = {}
    for name, (case, _fn, _make_args, n) in plan.items():
        ops = n * UNROLL
        runs1 = serial[name]
        by_threads: dict[str, Any] = {
            "1": {"speedup_median": 1.0, "note": "serial reference (one thread)"},
        }
        for count in counts:
            runs = parallel[name][count]
            # Each parallel run is compared with the serial run just before it.
            sp = [speedup(r1, rn, count) for r1, rn in zip(runs1, runs, strict=True)]
            cpu_sp = [
                x
                for x in (cpu_speedup(r1, rn, count) for r1, rn in zip(runs1, runs, strict=True))
                if x is not None
            ]
            par = [rn.parallelism for rn in runs]
            entry: dict[str, Any] = {
                "speedup_median": statistics.median(sp),
                "speedup_min": min(sp),
                "speedup_max": max(sp),
                "speedups": [round(x, 4) for x in sp],
                "parallel_s_median": statistics.median(r.wall_ns for r in runs) / 1e9,
                # Diagnostics for a shared machine: how many threads really ran at once, and
                # the speedup the CPU time per operation implies (contention costs CPU time;
                # waiting for a core does not).
                "parallelism_median": statistics.median(par),
                "cpu_speedup_median": statistics.median(cpu_sp) if cpu_sp else None,
            }
            ratios = paired[name][count]
            if ratios:
                entry["vs_ceiling_median"] = statistics.median(ratios)
                entry["vs_ceiling_quartiles"] = quartiles(ratios)
                entry["vs_ceiling"] = [round(x, 4) for x in ratios]
                cpu_ratios = paired_cpu[name][count]
                entry["vs_ceiling_cpu_median"] = (
                    statistics.median(cpu_ratios) if cpu_ratios else None
                )
            by_threads[str(count)] = entry
        results[name] = {
            "stmt": case.stmt,
            "shared_adapter": case.shared,
            "ceiling": case.ceiling,
            "ops_per_thread": ops,
            "serial_s_median": statistics.median(r.wall_ns for r in runs1) / 1e9,
            "serial_ns_per_op": statistics.median(r.wall_ns for r in runs1) / ops,
            "serial_cpu_ns_per_op": statistics.median(r.cpu_ns[0] for r in runs1) / ops,
            "reps": s["scaling_reps"],
            "threads": by_threads,
        }
    return {"info": info, "thread_counts": [1, *counts], "cases": results}


def speedup(one: ThreadRun, many: ThreadRun, count: int) -> float:
    """Serial time x N / parallel time."""
    return one.wall_ns * count / many.wall_ns


def cpu_speedup(one: ThreadRun, many: ThreadRun, count: int) -> float | None:
    """The speedup the CPU time per operation implies (None when no CPU time was recorded)."""
    total = sum(many.cpu_ns)
    return one.cpu_ns[0] * count / (total / count) if total else None


def quartiles(values: list[float]) -> list[float]:
    """First and third quartile (inclusive method); both equal the value for one sample."""
    if len(values) < 2:
        return [values[0], values[0]]
    q = statistics.quantiles(values, n=4, method="inclusive")
    return [q[0], q[2]]


# --- entry point ------------------------------------------------------------------------------


def run_group(
    impl: str, group: str, quick: bool, selected: set[str] | None, scaling_reps: int | None = None
) -> dict[str, Any]:
    s = dict(SETTINGS["quick" if quick else "full"])
    if scaling_reps is not None:
        s["scaling_reps"] = scaling_reps
        s["peer_scaling_reps"] = scaling_reps
    if group == "single":
        return run_single(impl, s, selected)
    if group == "scaling":
        return run_scaling(impl, s, selected)
    if group == "memory":
        from benchmarks import memory

        return memory.run(impl, s, selected)
    if group == "hammer":
        from benchmarks import showcase_counts

        return showcase_counts.run(impl, s, selected)
    if group == "peers":
        from benchmarks import peers

        return peers.run(impl, s, selected)
    if group == "server":
        from benchmarks import server

        return server.run(impl, s, selected)
    raise ValueError(f"unknown group {group!r}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.worker")
    parser.add_argument("--impl", required=True, choices=C.IMPLS)
    parser.add_argument("--group", required=True, choices=C.GROUPS)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--cases", default="", help="comma-separated case names (default: all)")
    parser.add_argument("--scaling-reps", type=int, default=None)
    parser.add_argument("--out", required=True)
    ns = parser.parse_args(argv)
    selected = {c for c in ns.cases.split(",") if c} or None

    out: dict[str, Any] = {
        "impl": ns.impl,
        "group": ns.group,
        "pid": os.getpid(),
        "python": sys.version,
        "free_threaded_build": environment.free_threaded_build(),
        "loadavg_start": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
    }
    started = time.perf_counter()
    status = 0
    try:
        out.update(run_group(ns.impl, ns.group, ns.quick, selected, ns.scaling_reps))
        out["available"] = True
    except ImportError as exc:
        out["available"] = False
        out["reason"] = f"{type(exc).__name__}: {exc}"
    except Exception as exc:  # noqa: BLE001 - reported to the runner
        out["available"] = True
        out["error"] = f"{type(exc).__name__}: {exc}"
        out["traceback"] = traceback.format_exc()
        status = 1
    out["gil_enabled"] = environment.gil_enabled()
    out["elapsed_s"] = time.perf_counter() - started
    out["loadavg_end"] = list(os.getloadavg()) if hasattr(os, "getloadavg") else None
    with open(ns.out, "w", encoding="utf-8") as f:
        json.dump(out, f)
    return status


if __name__ == "__main__":
    sys.exit(main())
