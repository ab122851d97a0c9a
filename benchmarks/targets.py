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
    return targets
