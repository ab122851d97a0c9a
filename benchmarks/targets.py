"""The performance targets (docs/performance.md says what each one is and why), judged from one
run's results.

Single-thread targets use the best round of each case (noise from other processes only ever
adds time, so the best round is the closest to the true cost); the same ratio from the
medians is reported next to it. Scaling targets use the median, over repetitions, of the
case's speedup divided by its ceiling's speedup measured just before it (paired runs).
"""

from __future__ import annotations

from typing import Any


def _group(data: dict[str, Any], impl: str, group: str) -> dict[str, Any] | None:
    out = data.get("impls", {}).get(impl, {}).get(group)
    if not out or not out.get("available") or out.get("error"):
        return None
    return out


def _ns(data: dict[str, Any], impl: str, name: str, stat: str) -> float | None:
    single = _group(data, impl, "single")
    if single is None:
        return None
    if name.startswith("floor:"):
        entry = single.get("floors", {}).get(name[len("floor:") :])
    else:
        entry = single.get("cases", {}).get(name)
    return None if entry is None else entry.get(stat)


def _ratio(a: float | None, b: float | None) -> float | None:
    if a is None or b is None or b == 0:
        return None
    return a / b


def _judge(value: float | None, op: str, limit: float) -> tuple[bool | None, str]:
    if value is None:
        return None, "not measured"
    if op == "<=":
        met = value <= limit
        if met:
            return True, f"{(1 - value / limit) * 100:.0f}% under the limit"
        if value > 2 * limit:
            return False, f"{value / limit:.1f}x the limit"
        return False, f"{(value / limit - 1) * 100:.0f}% over the limit"
    met = value >= limit
    if met:
        return True, f"{(value / limit - 1) * 100:.0f}% above the minimum"
    return False, f"{(1 - value / limit) * 100:.0f}% short of the minimum"


def compute(data: dict[str, Any]) -> list[dict[str, Any]]:
    targets: list[dict[str, Any]] = []

    def add(
        tid: str,
        what: str,
        op: str,
        limit: float,
        best: float | None,
        median: float | None,
        **extra: Any,
    ) -> None:
        met, by = _judge(best, op, limit)
        entry = {
            "id": tid,
            "what": what,
            "op": op,
            "limit": limit,
            "value": best,
            "value_from_medians": median,
            "met": met,
            "by": by,
        }
        entry.update(extra)
        targets.append(entry)

    def single_ratio(num: tuple[str, str], den: tuple[str, str], stat: str) -> float | None:
        return _ratio(_ns(data, num[0], num[1], stat), _ns(data, den[0], den[1], stat))

    def overhead(stat: str) -> float | None:
        tracked = _ns(data, "native", "tracked_call", stat)
        bare = _ns(data, "native", "floor:bare_call", stat)
        if tracked is None or bare is None or bare == 0:
            return None
        return (tracked - bare) / bare

    add(
        "tracked_overhead",
        "tracked call overhead (tracked - bare call) / bare call",
        "<=",
        0.5,
        overhead("best_ns"),
        overhead("median_ns"),
    )
    for tid, what, op, limit, num, den in (
        (
            "acquire_lock_vs_floor",
            "with a.acquire_lock() / with-over-C-context-manager floor",
            "<=",
            1.10,
            ("native", "acquire_lock"),
            ("native", "floor:c_with"),
        ),
        (
            "acquire_lock_vs_rlock",
            "with a.acquire_lock() / with threading.RLock()",
            "<=",
            0.80,
            ("native", "acquire_lock"),
            ("native", "floor:with_rlock"),
        ),
        (
            "tl_hit_vs_floor",
            "get_thread_local hit / d.get(k) floor",
            "<=",
            1.15,
            ("native", "tl_hit"),
            ("native", "floor:dict_get"),
        ),
        (
            "tl_hit_vs_local",
            "get_thread_local hit / getattr(threading.local(), k, None)",
            "<=",
            0.80,
            ("native", "tl_hit"),
            ("native", "floor:local_getattr"),
        ),
        (
            "tracked_vs_baseline",
            "tracked call: baseline / native",
            ">=",
            20.0,
            ("baseline", "tracked_call"),
            ("native", "tracked_call"),
        ),
        (
            "acquire_lock_vs_baseline",
            "with a.acquire_lock(): baseline / native",
            ">=",
            8.0,
            ("baseline", "acquire_lock"),
            ("native", "acquire_lock"),
        ),
        (
            "tl_miss_vs_baseline",
            "get_thread_local miss with default: baseline / native",
            ">=",
            8.0,
            ("baseline", "tl_miss_default"),
            ("native", "tl_miss_default"),
        ),
        (
            "get_stats_vs_baseline",
            "get_stats(): baseline / native",
            ">=",
            2.0,
            ("baseline", "get_stats"),
            ("native", "get_stats"),
        ),
        (
            "tl_hit_vs_baseline",
            "get_thread_local hit: baseline / native",
            ">=",
            3.0,
            ("baseline", "tl_hit"),
            ("native", "tl_hit"),
        ),
    ):
        add(
            tid,
            what,
            op,
            limit,
            single_ratio(num, den, "best_ns"),
            single_ratio(num, den, "median_ns"),
        )

    # Reference (not a target): the same floor on an object that has a __dict__, as adapters
    # do; the interpreter's method lookup then first misses in the instance dict.
    add(
        "tl_hit_vs_obj_floor",
        "(reference) get_thread_local hit / o.get(k), o with a __dict__",
        "<=",
        1.15,
        single_ratio(("native", "tl_hit"), ("native", "floor:dict_get_obj"), "best_ns"),
        single_ratio(("native", "tl_hit"), ("native", "floor:dict_get_obj"), "median_ns"),
        info=True,
    )
    if targets[-1]["met"] is not None:
        targets[-1]["by"] = "reference only, not a target: " + targets[-1]["by"]
        targets[-1]["met"] = None

    # get_stats must also report more than the baseline.
    nat = _group(data, "native", "single")
    base = _group(data, "baseline", "single")
    for t in targets:
        if t["id"] == "get_stats_vs_baseline" and nat and base:
            nk = set(nat["cases"].get("get_stats", {}).get("tracker_keys", []))
            bk = set(base["cases"].get("get_stats", {}).get("tracker_keys", []))
            t["native_tracker_keys"] = len(nk)
            t["baseline_tracker_keys"] = len(bk)
            if nk and bk and not (bk <= nk and len(nk) > len(bk)):
                t["met"] = False
                t["by"] += "; and the native tracker does not report more keys than the baseline"

    scaling = _group(data, "native", "scaling")
    free_threaded = bool(scaling and not scaling.get("gil_enabled", True))
    for tid, case, limit, reference in (
        ("scaling_tracked_2", "tracked_call", 0.95, False),
        ("scaling_tl_hit_2", "tl_hit", 0.95, False),
        # References: the interpreter's own C-call ceilings and the per-thread figures, which
        # say whether a shortfall above is ours (see docs/performance.md).
        ("scaling_c_method_2", "c_method", 0.95, True),
        ("scaling_forward_2", "forward_call", 0.95, True),
        ("scaling_tl_hit_bound_2", "tl_hit_bound", 0.95, True),
        ("scaling_tracked_per_thread_2", "tracked_call_per_thread", 0.95, True),
        ("scaling_tl_hit_per_thread_2", "tl_hit_per_thread", 0.95, True),
    ):
        value = ceiling = speedup = cpu_value = parallelism = quart = None
        if scaling:
            cases = scaling.get("cases", {})
            try:
                ceiling_name = cases[case]["ceiling"]
                mine, bare = cases[case]["threads"]["2"], cases[ceiling_name]["threads"]["2"]
                speedup, ceiling = mine["speedup_median"], bare["speedup_median"]
                value = mine["vs_ceiling_median"]
                quart = mine.get("vs_ceiling_quartiles")
                cpu_value = mine.get("vs_ceiling_cpu_median")
                parallelism = min(
                    mine.get("parallelism_median", 2.0), bare.get("parallelism_median", 2.0)
                )
            except (KeyError, TypeError):
                value = None
        where = "adapter per thread" if "per_thread" in case else "shared adapter"
        add(
            tid,
            ("(reference) " if reference else "")
            + f"2-thread scaling of {case} / scaling of a bare call ({where}), paired runs",
            ">=",
            limit,
            value,
            None,
            speedup=speedup,
            ceiling=ceiling,
            quartiles=quart,
            value_from_cpu_time=cpu_value,
            parallelism=parallelism,
            info=reference,
        )
        t = targets[-1]
        if reference:
            if t["met"] is not None:
                t["by"] = "reference only, not a target: " + t["by"]
                t["met"] = None
        elif not free_threaded and t["met"] is not None:
            t["met"] = None
            t["by"] = "no scaling target with the GIL enabled (reported only)"
        elif parallelism is not None and parallelism < 1.8 and t["met"] is not None:
            t["unreliable"] = True
            t["met_if_trusted"] = t["met"]
            t["met"] = None
            t["by"] = (
                f"not judged: on average only {parallelism:.2f} of the 2 threads were running "
                "(thread CPU time / wall time), so the machine was busy; re-run with two idle cores"
            )

    memory = _group(data, "native", "memory")
    flat = (memory or {}).get("cases", {}).get("flat_tracked_calls")
    entry = {
        "id": "memory_flat",
        "what": "memory after many tracked calls",
        "op": "flat",
        "limit": None,
        "value": None if flat is None else flat.get("traced_bytes_per_call"),
        "value_from_medians": None,
        "met": None if flat is None else bool(flat.get("flat")),
        "by": "not measured"
        if flat is None
        else (
            f"{flat['calls']:,} calls; over the last three quarters: traced growth "
            f"{flat['traced_steady_growth_bytes']} B, "
            f"RSS growth {flat['rss_steady_growth_bytes']} B"
        ),
    }
    targets.append(entry)
    targets += peer_targets(data)
    targets += server_targets(data)
    return targets


# --- the native peers and the server --------------------------------------------------------


def _peer_label(case: str) -> str:
    from benchmarks import peers as P

    c = P.CASE_BY_NAME.get(case)
    return case if c is None else c.title


def peer_targets(data: dict[str, Any]) -> list[dict[str, Any]]:
    """Our cases against the native peers (benchmarks/peers.py, ``COMPARISONS``)."""
    from benchmarks import peers as P

    group = _group(data, "native", "peers")
    if group is None:
        return []
    single = group.get("cases", {})
    scaling = group.get("scaling", {})
    paired = group.get("paired", {})
    availability = group.get("peers", {})
    free_threaded = not group.get("gil_enabled", True)
    out: list[dict[str, Any]] = []
    for comp in P.COMPARISONS:
        value = median = None
        against = None
        extra: dict[str, Any] = {}
        if comp.kind == "single":
            ours = single.get(comp.ours)
            candidates = [(p, single[p]) for p in comp.peers if p in single]
            if ours and candidates:
                # The fastest peer case measured (fewest ns per operation).
                against, peer = min(candidates, key=lambda item: item[1]["best_ns"])
                value = ours["best_ns"] / peer["best_ns"]
                median = ours["median_ns"] / peer["median_ns"]
                extra = {"ours_ns": ours["best_ns"], "peer_ns": peer["best_ns"]}
        else:
            candidates = [
                (p, paired[f"{comp.ours}/{p}"]) for p in comp.peers if f"{comp.ours}/{p}" in paired
            ]
            if candidates:
                # The best-scaling peer: the lowest ratio ours / peer.
                against, pair = min(candidates, key=lambda item: item[1]["median"])
                value = pair["median"]
                extra = {
                    "quartiles": pair["quartiles"],
                    "ours_speedup": scaling[comp.ours]["speedup_median"],
                    "peer_speedup": scaling[against]["speedup_median"],
                    "parallelism": min(
                        scaling[comp.ours]["parallelism_median"],
                        scaling[against]["parallelism_median"],
                    ),
                }
        met, by = _judge(value, comp.op, comp.limit)
        if value is None:
            missing = sorted(
                {
                    P.CASE_BY_NAME[p].who
                    for p in comp.peers
                    if P.CASE_BY_NAME[p].who in availability
                    and not availability[P.CASE_BY_NAME[p].who].get("available")
                }
            )
            reasons = "; ".join(f"{m}: {availability[m].get('reason')}" for m in missing)
            by = f"not measured: {reasons}" if reasons else "not measured"
        entry: dict[str, Any] = {
            "id": comp.id,
            "what": f"{_peer_label(comp.ours)} / {_peer_label(against) if against else 'peer'}"
            + (" (2-thread speedups, paired)" if comp.kind == "scaling" else " (ns)"),
            "op": comp.op,
            "limit": comp.limit,
            "value": value,
            "value_from_medians": median,
            "met": met,
            "by": by,
            "against": against,
            "shape": comp.shape,
            "info": not comp.target,
            "group": "peers",
        }
        entry.update(extra)
        if not comp.target and met is not None:
            entry["met"] = None
            entry["by"] = "reference only, not a target: " + by
        elif comp.kind == "scaling" and met is not None:
            if not free_threaded:
                entry["met"] = None
                entry["by"] = "no scaling target with the GIL enabled (reported only)"
            elif extra.get("parallelism", 2.0) < 1.8:
                entry["unreliable"] = True
                entry["met_if_trusted"] = met
                entry["met"] = None
                entry["by"] = (
                    f"not judged: only {extra['parallelism']:.2f} of the 2 threads ran at once "
                    "(the machine was busy); re-run with two idle cores"
                )
        out.append(entry)
    return out


def server_targets(data: dict[str, Any]) -> list[dict[str, Any]]:
    """The server group's three targets (docs/performance.md, "Server")."""
    group = _group(data, "native", "server")
    if group is None:
        return []
    cases = group.get("cases", {})
    free_threaded = bool(group.get("info", {}).get("free_threaded_server"))
    out: list[dict[str, Any]] = []

    def rps(case: str, server: str, streams: int) -> float | None:
        entry = cases.get(case, {}).get(server, {}).get(str(streams))
        return None if entry is None else entry["requests_per_s"]

    def add(tid: str, what: str, op: str, limit: float, value: float | None, **extra: Any) -> None:
        met, by = _judge(value, op, limit)
        entry = {
            "id": tid,
            "what": what,
            "op": op,
            "limit": limit,
            "value": value,
            "value_from_medians": None,
            "met": met,
            "by": by,
            "group": "server",
        }
        entry.update(extra)
        out.append(entry)

    ratios = {}
    for streams in (8, 16):
        ours, serial = rps("server_cpu", "ours", streams), rps("server_cpu", "serial", streams)
        if ours is not None and serial:
            ratios[streams] = ours / serial
    ceiling = (group.get("machine_ceiling") or {}).get("speedup_median")
    add(
        "server_cpu_vs_serial",
        "CPU-bound tool, 8 and 16 streams: requests/s / the serial floor's (--max-workers 1)",
        ">=",
        1.7,
        min(ratios.values()) if ratios else None,
        by_streams=ratios,
        machine_ceiling=ceiling,
    )
    t = out[-1]
    if t["met"] is not None:
        if ceiling is not None:
            t["by"] += f"; the machine's own 2-thread speedup for the tool then: {ceiling:.2f}x"
        if not free_threaded:
            t["met"] = None
            t["by"] = "the GIL runs one pool thread at a time here: reported only; " + t["by"]
    trivial = {}
    for streams in (1, 8, 16):
        ours, ref = rps("server_trivial", "ours", streams), rps("server_trivial", "grpcio", streams)
        if ours is not None and ref:
            trivial[streams] = ours / ref
    add(
        "server_trivial_vs_grpcio",
        "trivial tool, 1, 8 and 16 streams: requests/s / the grpcio sync server's",
        ">=",
        0.5,
        min(trivial.values()) if trivial else None,
        by_streams=trivial,
    )
    if not trivial and "grpcio" in group.get("skipped_servers", {}):
        out[-1]["by"] = "not measured: " + group["skipped_servers"]["grpcio"]
    trivial_nice5 = {}
    for streams in (1, 8, 16):
        ours, ref = (
            rps("server_trivial", "nice5", streams),
            rps("server_trivial", "grpcio", streams),
        )
        if ours is not None and ref:
            trivial_nice5[streams] = ours / ref
    add(
        "server_trivial_vs_grpcio_nice5",
        "(reference) the same with --worker-nice 5",
        ">=",
        0.5,
        min(trivial_nice5.values()) if trivial_nice5 else None,
        by_streams=trivial_nice5,
        info=True,
    )
    if out[-1]["met"] is not None:
        out[-1]["by"] = "reference only, not a target: " + out[-1]["by"]
        out[-1]["met"] = None
    elif not trivial_nice5 and "grpcio" in group.get("skipped_servers", {}):
        out[-1]["by"] = "not measured: " + group["skipped_servers"]["grpcio"]
    ping = group.get("ping", {}).get("ours", {})
    add(
        "server_ping_p99",
        "Ping p99 latency, pool saturated by 16 streams of the CPU tool (ms)",
        "<=",
        50.0,
        ping.get("ping_p99_ms"),
        unit="ms",
    )
    return out
