"""The runner: one subprocess per implementation and group, then the tables and targets."""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks import cases as C
from benchmarks import report, targets
from benchmarks.standalone import environment
from benchmarks.worker import summarize_single

REPO = Path(__file__).resolve().parent.parent
WORKER_TIMEOUT_S = 1800
SINGLE_PASSES = 3  # single-thread processes per implementation in a full run


def merge_single(outs: list[dict[str, Any]]) -> dict[str, Any]:
    """Pool the rounds of several single-thread passes of one implementation."""
    if len(outs) == 1:
        return outs[0]
    raw: dict[str, dict[str, Any]] = {}
    for out in outs:
        for name, r in out["raw"].items():
            m = raw.setdefault(
                name,
                {"stmt": r["stmt"], "ops_per_round": [], "samples_ns": [], "wall_samples_ns": []},
            )
            m["ops_per_round"] += r["ops_per_round"]
            m["samples_ns"] += r["samples_ns"]
            m["wall_samples_ns"] += r["wall_samples_ns"]
    merged = dict(outs[0])
    merged.update(summarize_single(raw))
    merged["raw"] = raw
    merged["passes"] = len(outs)
    merged["pids"] = [o["pid"] for o in outs]
    merged["loadavg_end"] = outs[-1].get("loadavg_end")
    merged["elapsed_s"] = sum(o.get("elapsed_s", 0.0) for o in outs)
    merged["wall_s"] = sum(o.get("wall_s", 0.0) for o in outs)
    merged["gil_enabled"] = any(o.get("gil_enabled") for o in outs)
    merged["floors"]["c_with"]["description"] = outs[0].get("c_with_description")
    if "get_stats" in merged["cases"]:
        merged["cases"]["get_stats"]["keys"] = outs[0].get("get_stats_keys", [])
        merged["cases"]["get_stats"]["tracker_keys"] = outs[0].get("get_stats_tracker_keys", [])
    return merged


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def collect_meta(quick: bool) -> dict[str, Any]:
    return {
        "python_version": platform.python_version(),
        "python": sys.version,
        "executable": sys.executable,
        "free_threaded_build": environment.free_threaded_build(),
        "platform": platform.platform(),
        "cpu_model": cpu_model(),
        "cpu_count": os.cpu_count(),
        "cpus_usable": environment.cpu_count(),
        "date_utc": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "quick": quick,
        "loadavg_start": [round(x, 2) for x in os.getloadavg()]
        if hasattr(os, "getloadavg")
        else None,
    }


def resolve_cases(names: list[str]) -> dict[str, set[str] | None]:
    """Map each group to run to its selected case names (None: all of them)."""
    flat = [n for arg in names for n in arg.replace(",", " ").split() if n]
    if not flat or "all" in flat:
        return dict.fromkeys(C.GROUPS)
    selected: dict[str, set[str] | None] = {}
    for name in flat:
        if name in C.GROUPS:
            selected[name] = None
            continue
        found = False
        for group, members in C.CASES_BY_GROUP.items():  # e.g. tracked_call: single and scaling
            if name in members and not name.startswith("floor:"):
                found = True
                if selected.get(group, set()) is not None:
                    selected.setdefault(group, set()).add(name)  # type: ignore[union-attr]
        if not found:
            valid = sorted(
                {m for ms in C.CASES_BY_GROUP.values() for m in ms if not m.startswith("floor:")}
            )
            raise SystemExit(
                f"unknown case {name!r}; groups: {', '.join(C.GROUPS)}; cases: {', '.join(valid)}"
            )
    return selected


def run_worker(
    impl: str, group: str, quick: bool, selected: set[str] | None, scaling_reps: int | None = None
) -> dict[str, Any]:
    fd, path = tempfile.mkstemp(prefix=f"bench-{impl}-{group}-", suffix=".json")
    os.close(fd)
    cmd = [
        sys.executable,
        "-m",
        "benchmarks.worker",
        "--impl",
        impl,
        "--group",
        group,
        "--out",
        path,
    ]
    if quick:
        cmd.append("--quick")
    if selected:
        cmd += ["--cases", ",".join(sorted(selected))]
    timeout = WORKER_TIMEOUT_S
    if scaling_reps is not None and group in ("scaling", "peers"):
        cmd += ["--scaling-reps", str(scaling_reps)]
        timeout = max(timeout, 60 * scaling_reps)
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), env.get("PYTHONPATH", "")) if p)
    busy_before, ours_before = machine_busy_s(), own_cpu_s()
    started = time.perf_counter()
    try:
        proc = subprocess.run(
            cmd,
            cwd=REPO,
            env=env,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        try:
            with open(path, encoding="utf-8") as f:
                out = json.load(f)
        except (OSError, ValueError):
            out = {
                "impl": impl,
                "group": group,
                "available": True,
                "error": f"worker exited with status {proc.returncode} and no result",
                "stderr": proc.stderr[-4000:],
            }
        if proc.returncode != 0 and not out.get("error"):
            out["error"] = f"worker exited with status {proc.returncode}"
        if out.get("error"):
            out.setdefault("stderr", proc.stderr[-4000:])
    except subprocess.TimeoutExpired:
        out = {
            "impl": impl,
            "group": group,
            "available": True,
            "error": f"timed out after {timeout} s",
        }
    finally:
        try:
            os.unlink(path)
        except OSError:
            pass
    out["wall_s"] = time.perf_counter() - started
    busy_after, ours_after = machine_busy_s(), own_cpu_s()
    if busy_before is not None and busy_after is not None and out["wall_s"] > 0:
        # CPU time the rest of the machine used meanwhile, in cores: on a shared machine this
        # says how disturbed a group's figures are (0 = it had the machine to itself).
        others = (busy_after - busy_before) - (ours_after - ours_before)
        out["others_cores"] = round(max(0.0, others) / out["wall_s"], 2)
    return out


def machine_busy_s() -> float | None:
    """CPU seconds all processes of the machine have used since boot (Linux), else None."""
    try:
        with open("/proc/stat", encoding="ascii") as f:
            fields = f.readline().split()[1:]
        values = [int(x) for x in fields]
    except (OSError, ValueError):
        return None
    idle = values[3] + (values[4] if len(values) > 4 else 0)  # idle + iowait
    guest = sum(values[8:10]) if len(values) > 9 else 0  # counted in user/nice already
    return (sum(values) - idle - guest) / os.sysconf("SC_CLK_TCK")


def own_cpu_s() -> float:
    """CPU seconds this process and its waited-for children have used."""
    me = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + children.ru_utime + children.ru_stime


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks",
        description="Benchmarks of the native core against the pure-Python baseline and the "
        "stdlib.",
    )
    parser.add_argument(
        "--quick", action="store_true", help="a few thousand iterations per case (CI smoke run)"
    )
    parser.add_argument(
        "--json", action="store_true", help="print the results as JSON instead of tables"
    )
    parser.add_argument("--markdown", action="store_true", help="print the tables as Markdown")
    parser.add_argument("--out", metavar="FILE", help="also write the JSON results to FILE")
    parser.add_argument(
        "--impl",
        default=",".join(C.IMPLS),
        help=f"comma-separated implementations (default: {','.join(C.IMPLS)})",
    )
    parser.add_argument(
        "--cases",
        nargs="*",
        default=[],
        metavar="NAME",
        help=f"cases or groups to run (groups: {', '.join(C.GROUPS)}; default: all)",
    )
    parser.add_argument(
        "--skip",
        nargs="*",
        default=[],
        metavar="GROUP",
        help="groups to leave out (e.g. --skip server peers)",
    )
    parser.add_argument(
        "--scaling-reps",
        type=int,
        metavar="N",
        help="repetitions of every scaling case (default: 7, peers 5; 1 with --quick); more "
        "narrows the medians",
    )
    ns = parser.parse_args(argv)
    if ns.scaling_reps is not None and ns.scaling_reps < 1:
        parser.error("--scaling-reps must be at least 1")
    impls = [i for i in ns.impl.split(",") if i]
    for impl in impls:
        if impl not in C.IMPLS:
            parser.error(f"unknown implementation {impl!r}; expected {', '.join(C.IMPLS)}")
    selection = resolve_cases(ns.cases)
    for group in (g for arg in ns.skip for g in arg.replace(",", " ").split() if g):
        if group not in C.GROUPS:
            parser.error(f"unknown group {group!r} to skip; groups: {', '.join(C.GROUPS)}")
        selection.pop(group, None)

    data: dict[str, Any] = {
        "schema": 1,
        "meta": collect_meta(ns.quick),
        "impls": {},
        "expected_cases": {g: list(C.CASES_BY_GROUP[g]) for g in selection},
        "skipped_groups": sorted(set(C.GROUPS) - set(selection)),
        "selection": {g: (None if s is None else sorted(s)) for g, s in selection.items()},
    }
    status = 0
    # The single-thread group runs in alternating passes (native, baseline, native, ...), each
    # a fresh process, and the rounds of all passes are pooled: a slow spell on a shared
    # machine then hits both implementations instead of one.
    passes = 1 if ns.quick else SINGLE_PASSES
    order: list[tuple[str, str]] = []
    if "single" in selection:
        order += [(impl, "single") for _ in range(passes) for impl in impls]
    order += [
        (impl, group)
        for impl in impls
        for group in C.GROUPS
        if group in selection and group != "single" and C.group_applies(impl, group)
    ]
    single_outs: dict[str, list[dict[str, Any]]] = {impl: [] for impl in impls}
    for impl in impls:
        data["impls"][impl] = {}
    for impl, group in order:
        if any(not out.get("available", True) for out in data["impls"][impl].values()):
            continue  # the implementation cannot be imported
        if group == "single" and data["impls"][impl].get("single", {}).get("error"):
            continue  # a failed pass is reported as is; no more passes
        print(f"benchmarks: {impl} / {group} ...", end="", file=sys.stderr, flush=True)
        out = run_worker(impl, group, ns.quick, selection[group], ns.scaling_reps)
        if group == "single" and out.get("available", True) and not out.get("error"):
            single_outs[impl].append(out)
            data["impls"][impl]["single"] = merge_single(single_outs[impl])
        else:
            data["impls"][impl][group] = out
        if not out.get("available", True):
            print(f" not available: {out.get('reason')}", file=sys.stderr)
            continue
        if out.get("error"):
            status = 1
            print(f" FAILED: {out['error']}", file=sys.stderr)
            if out.get("traceback") or out.get("stderr"):
                print(out.get("traceback") or out.get("stderr"), file=sys.stderr)
        else:
            busy = out.get("others_cores")
            note = "" if busy is None else f" (other work on the machine: {busy:.2f} cores)"
            print(f" {out['wall_s']:.1f} s{note}", file=sys.stderr)
        if out.get("info"):
            data["meta"].setdefault(impl, out["info"])
        if "gil_enabled" in out:  # enabled in any process: say so (the table header shows it)
            data["meta"]["gil_enabled"] = bool(data["meta"].get("gil_enabled")) or bool(
                out["gil_enabled"]
            )

    hammer = (
        data["impls"]
        .get("native", {})
        .get("hammer", {})
        .get("cases", {})
        .get("hammer_compute_intensive")
    )
    if hammer and not hammer.get("skipped") and not hammer.get("exact"):
        status = 1
        print("benchmarks: the showcase hammer's counts are NOT exact", file=sys.stderr)
    if "native" in impls and any(
        not g.get("available", True) for g in data["impls"]["native"].values()
    ):
        status = 2
        print(
            "benchmarks: the native module is not importable; run `make setup` "
            "(or pass --impl baseline)",
            file=sys.stderr,
        )
    try:
        nat_f = data["impls"]["native"]["single"]["floors"]["dict_get"]["best_ns"]
        base_f = data["impls"]["baseline"]["single"]["floors"]["dict_get"]["best_ns"]
        data["meta"]["process_drift"] = {
            "floor": "dict_get",
            "native_process_ns": nat_f,
            "baseline_process_ns": base_f,
            "ratio": base_f / nat_f,
        }
    except (KeyError, TypeError, ZeroDivisionError):
        pass
    data["meta"]["loadavg_end"] = (
        [round(x, 2) for x in os.getloadavg()] if hasattr(os, "getloadavg") else None
    )
    data["targets"] = targets.compute(data) if "native" in impls else []

    if ns.out:
        with open(ns.out, "w", encoding="utf-8") as f:
            json.dump(data, f, indent=2)
    if ns.json:
        print(json.dumps(data, indent=2))
    elif ns.markdown:
        print(report.markdown(data))
    else:
        print(report.text(data))
    return status
