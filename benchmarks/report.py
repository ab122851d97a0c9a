"""Readable tables of a run, as plain text or Markdown."""

from __future__ import annotations

from typing import Any

from benchmarks import cases as C


def _fmt_ns(v: float | None) -> str:
    return "-" if v is None else f"{v:,.1f}"


def _fmt_x(v: float | None, digits: int = 2) -> str:
    return "-" if v is None else f"{v:.{digits}f}x"


def _fmt_bytes(v: float | None) -> str:
    return "-" if v is None else f"{v:,.0f}"


def _group(data: dict[str, Any], impl: str, group: str) -> dict[str, Any] | None:
    out = data.get("impls", {}).get(impl, {}).get(group)
    if not out or not out.get("available") or out.get("error"):
        return None
    return out


class _Table:
    def __init__(
        self, title: str, header: list[str], note: str = "", left: tuple[str, ...] = ()
    ) -> None:
        self.title = title
        self.header = header
        self.rows: list[list[str]] = []
        self.note = note
        self.left = {0} | {header.index(h) for h in left}  # columns aligned left

    def add(self, *cells: Any) -> None:
        self.rows.append([str(c) for c in cells])

    def text(self) -> str:
        widths = [
            max(len(r[i]) for r in [self.header, *self.rows]) for i in range(len(self.header))
        ]

        def line(r: list[str]) -> str:
            cells = [
                c.ljust(w) if i in self.left else c.rjust(w)
                for i, (c, w) in enumerate(zip(r, widths, strict=True))
            ]
            return "  ".join(cells).rstrip()

        out = [self.title, "-" * len(self.title)]
        if self.note:
            out.append(self.note)
        out.append(line(self.header))
        out.extend(line(r) for r in self.rows)
        return "\n".join(out)

    def markdown(self) -> str:
        out = [f"### {self.title}", ""]
        if self.note:
            out += [self.note, ""]
        out.append("| " + " | ".join(self.header) + " |")
        out.append(
            "|"
            + "|".join(" --- " if i in self.left else " ---: " for i in range(len(self.header)))
            + "|"
        )
        for r in self.rows:
            out.append("| " + " | ".join(c.replace("|", "\\|") for c in r) + " |")
        return "\n".join(out)


def _header_lines(data: dict[str, Any]) -> list[str]:
    m = data["meta"]
    gil = "GIL disabled" if m.get("gil_enabled") is False else "GIL enabled"
    build = "free-threaded build" if m.get("free_threaded_build") else "GIL build"
    lines = [
        f"Interpreter: CPython {m['python_version']} ({build}, {gil} while measuring), "
        f"{m['executable']}",
        f"Machine:     {m['cpu_model']}, {m['cpu_count']} logical CPUs "
        f"({m['cpus_usable']} usable), {m['platform']}",
        f"Date:        {m['date_utc']}   mode: {'quick' if m['quick'] else 'full'}   "
        f"load average at start: {m['loadavg_start']}",
    ]
    drift = m.get("process_drift")
    if drift:
        lines.append(
            f"Processes:   the same d.get(k) costs {drift['native_process_ns']:.1f} ns in the "
            f"native processes and {drift['baseline_process_ns']:.1f} ns in the baseline ones "
            f"(x{drift['ratio']:.2f}); "
            "native-vs-baseline ratios carry that much noise"
        )
    lines.append(
        f"Load:        load average at end: {m.get('loadavg_end')} (on {m['cpu_count']} CPUs)"
    )
    busy = [
        f"{group} {res['others_cores']:.2f}"
        for groups in data.get("impls", {}).values()
        for group, res in groups.items()
        if res.get("others_cores") is not None
    ]
    if busy:
        lines.append(
            "Shared:      cores used by other work on the machine while each group ran: "
            + ", ".join(busy)
        )
    native = m.get("native") or {}
    if native:
        lines.append(
            f"Native:      {native.get('file')} (version {native.get('version')}, "
            f"clock {native.get('clock_source')})"
        )
    return lines


def _tables(data: dict[str, Any]) -> list[_Table]:
    tables: list[_Table] = []
    nat_s = _group(data, "native", "single")
    base_s = _group(data, "baseline", "single")

    if nat_s or base_s:
        t = _Table(
            "Single-thread cost, ns per operation (loop overhead subtracted)",
            [
                "case",
                "native best",
                "native median",
                "baseline best",
                "baseline median",
                "baseline/native",
            ],
            "thread CPU time; best and median of the interleaved rounds of all passes; "
            "baseline/native from the best rounds",
        )
        for case in C.SINGLE_CASES:
            n = (nat_s or {}).get("cases", {}).get(case.name)
            b = (base_s or {}).get("cases", {}).get(case.name)
            if n is None and b is None:
                continue
            ratio = None
            if n and b and n["best_ns"]:
                ratio = b["best_ns"] / n["best_ns"]
            t.add(
                case.title,
                _fmt_ns(n and n["best_ns"]),
                _fmt_ns(n and n["median_ns"]),
                _fmt_ns(b and b["best_ns"]),
                _fmt_ns(b and b["median_ns"]),
                _fmt_x(ratio, 1),
            )
        tables.append(t)

        t = _Table(
            "Floors and stdlib references, ns per operation (same processes)",
            ["floor", "native process best", "median", "baseline process best", "median"],
            "bare call = undecorated method on the same adapter class; "
            "loop = raw loop cost per statement",
        )
        for case in C.FLOORS:
            n = (nat_s or {}).get("floors", {}).get(case.name)
            b = (base_s or {}).get("floors", {}).get(case.name)
            t.add(
                case.title,
                _fmt_ns(n and n["best_ns"]),
                _fmt_ns(n and n["median_ns"]),
                _fmt_ns(b and b["best_ns"]),
                _fmt_ns(b and b["median_ns"]),
            )
        tables.append(t)

    nat_sc = _group(data, "native", "scaling")
    base_sc = _group(data, "baseline", "scaling")
    if nat_sc or base_sc:
        counts = (nat_sc or base_sc or {}).get("thread_counts", [1, 2])
        t = _Table(
            "Scaling: speedup = serial time x N / parallel time (median of repetitions)",
            [
                "case",
                "threads",
                "native",
                "native ceiling",
                "native/ceiling",
                "ran at once",
                "native from CPU time",
                "baseline",
                "baseline ceiling",
                "serial ns/op native / baseline",
            ],
            "ceiling = a bare method call on an adapter shared the same way; "
            "native/ceiling = median over repetitions of the case's speedup / its ceiling's "
            "speedup measured just before it, with the quartiles; 'ran at once' = thread CPU "
            "time / wall time (N when the machine is otherwise idle); 'from CPU time' = "
            "N x serial / parallel CPU time per operation (contention costs CPU time, waiting for "
            "a core does not)",
        )
        for case in C.SCALING_CASES:
            n = (nat_sc or {}).get("cases", {}).get(case.name)
            b = (base_sc or {}).get("cases", {}).get(case.name)
            if n is None and b is None:
                continue
            for count in counts:
                if count == 1:
                    continue

                def fig(
                    res: dict[str, Any] | None,
                    name: str | None,
                    what: str = "speedup_median",
                    key: str = str(count),
                ) -> Any:
                    if res is None or name is None:
                        return None
                    entry = res.get("cases", {}).get(name)
                    return None if entry is None else entry["threads"][key].get(what)

                ns = fig(nat_sc, case.name)
                nc = fig(nat_sc, case.ceiling)
                bs = fig(base_sc, case.name)
                bc = fig(base_sc, case.ceiling)
                rel = fig(nat_sc, case.name, "vs_ceiling_median")
                quart = fig(nat_sc, case.name, "vs_ceiling_quartiles")
                rel_text = _fmt_x(rel)
                if rel is not None and quart:
                    rel_text += f" ({quart[0]:.2f}-{quart[1]:.2f})"
                par = fig(nat_sc, case.name, "parallelism_median")
                t.add(
                    case.title,
                    count,
                    _fmt_x(ns),
                    _fmt_x(nc) if case.ceiling else "(is the ceiling)",
                    rel_text if case.ceiling else "",
                    "-" if par is None else f"{par:.2f}",
                    _fmt_x(fig(nat_sc, case.name, "cpu_speedup_median")),
                    _fmt_x(bs),
                    _fmt_x(bc) if case.ceiling else "",
                    f"{_fmt_ns(n and n['serial_ns_per_op'])} / "
                    f"{_fmt_ns(b and b['serial_ns_per_op'])}",
                )
        tables.append(t)

    nat_m = _group(data, "native", "memory")
    base_m = _group(data, "baseline", "memory")
    if nat_m or base_m:
        t = _Table(
            "Memory",
            ["item", "native traced B", "native RSS B", "baseline traced B", "baseline RSS B"],
            "traced = tracemalloc (Python allocators only); RSS = resident set size change",
        )
        for name, key_t, key_r in (
            ("adapter", "traced_bytes_per_object", "rss_bytes_per_object"),
            ("adapter_used", "traced_bytes_per_object", "rss_bytes_per_object"),
            ("tl_value", "traced_bytes_per_value", "rss_bytes_per_value"),
        ):
            n = (nat_m or {}).get("cases", {}).get(name)
            b = (base_m or {}).get("cases", {}).get(name)
            if n is None and b is None:
                continue
            what = (n or b)["what"]
            t.add(
                f"per {what}",
                _fmt_bytes(n and n[key_t]),
                _fmt_bytes(n and n[key_r]),
                _fmt_bytes(b and b[key_t]),
                _fmt_bytes(b and b[key_r]),
            )
        n = (nat_m or {}).get("cases", {}).get("flat_tracked_calls")
        b = (base_m or {}).get("cases", {}).get("flat_tracked_calls")
        if n or b:

            def flat(res: dict[str, Any] | None, key: str) -> str:
                return "-" if res is None else f"{res[key] if res[key] is not None else '-'}"

            t.add(
                "growth over tracked calls, all (native: {}, baseline: {})".format(
                    f"{n['calls']:,}" if n else "-", f"{b['calls']:,}" if b else "-"
                ),
                flat(n, "traced_growth_bytes"),
                flat(n, "rss_growth_bytes"),
                flat(b, "traced_growth_bytes"),
                flat(b, "rss_growth_bytes"),
            )
            t.add(
                "growth over the last three quarters of those calls",
                flat(n, "traced_steady_growth_bytes"),
                flat(n, "rss_steady_growth_bytes"),
                flat(b, "traced_steady_growth_bytes"),
                flat(b, "rss_steady_growth_bytes"),
            )
        tables.append(t)

    nat_h = _group(data, "native", "hammer")
    if nat_h:
        h = nat_h.get("cases", {}).get("hammer_compute_intensive")
        if h is not None:
            t = _Table("Showcase hammer: compute_intensive", ["item", "value"], left=("value",))
            if h.get("skipped"):
                t.add("skipped", h["reason"])
            else:
                t.add(
                    "threads x requests",
                    f"{h['threads']} x {h['requests'] // h['threads']:,} = {h['requests']:,}",
                )
                t.add("arguments", f"4 floats, {h['kwargs'] or 'defaults'}")
                t.add("wall time", f"{h['wall_s']:.2f} s")
                t.add("requests per second", f"{h['requests_per_s']:,.0f}")
                for name, c in h["checks"].items():
                    got = c["got"]
                    if isinstance(got, list):
                        got = "all " + str(got[0]) if len(set(map(str, got))) == 1 else str(got)
                    expected = c["expected"]
                    if isinstance(expected, list):
                        expected = "all " + str(expected[0])
                    t.add(f"{name} {'ok' if c['ok'] else 'WRONG'}", f"{got} (expected {expected})")
                t.add("exact counts", "yes" if h["exact"] else "NO")
            tables.append(t)

    tables += _peer_tables(data)
    tables += _server_tables(data)

    # The peers' comparisons have their own table (above), with what differs in shape.
    targets = [tg for tg in data.get("targets") or [] if tg.get("group") != "peers"]
    if targets:
        gil_build = not data["meta"].get("free_threaded_build")
        t = _Table(
            "Targets",
            ["target", "limit", "value (best)", "from medians / CPU time", "status", "by"],
            "the targets are set for 3.13t; on a GIL build they are judged for information only"
            if gil_build
            else "",
            left=("status", "by"),
        )
        for tg in targets:
            status = _status(tg)
            if tg["op"] == "flat":
                limit, value, med = (
                    "flat",
                    ("-" if tg["value"] is None else f"{tg['value']:.4f} B/call"),
                    "-",
                )
            elif tg.get("unit") == "ms":
                limit = f"{tg['op']} {tg['limit']:.0f} ms"
                value = "-" if tg["value"] is None else f"{tg['value']:.1f} ms"
                med = "-"
            else:
                limit = f"{tg['op']} {tg['limit']:.2f}x"
                value = _fmt_x(tg["value"], 3)
                med = _fmt_x(tg["value_from_medians"], 3)
                if tg.get("quartiles"):
                    value += f" (quartiles {tg['quartiles'][0]:.2f}-{tg['quartiles'][1]:.2f})"
                elif tg.get("speedup") is not None:
                    value += f" ({tg['speedup']:.2f}x vs ceiling {tg['ceiling']:.2f}x)"
                if tg.get("value_from_cpu_time") is not None:
                    med = f"CPU time: {tg['value_from_cpu_time']:.3f}x"
                if tg.get("by_streams"):
                    med = ", ".join(f"{k} streams: {v:.2f}x" for k, v in tg["by_streams"].items())
            t.add(tg["what"], limit, value, med, status, tg["by"])
        tables.append(t)
    return tables


def _peer_tables(data: dict[str, Any]) -> list[_Table]:
    from benchmarks import peers as P

    group = _group(data, "native", "peers")
    if group is None:
        return []
    tables = []
    t = _Table(
        "Native peers: what was measured",
        ["library", "version", "measured"],
        "each peer is imported first in a throw-away process; one that is missing, fails to "
        "import or turns the GIL on in a free-threaded process is left out and named here",
        left=("version", "measured"),
    )
    for name, peer in group.get("peers", {}).items():
        t.add(
            name,
            peer.get("version") or "-",
            "yes" if peer.get("available") else f"no: {peer.get('reason')}",
        )
    tables.append(t)

    single, scaling = group.get("cases", {}), group.get("scaling", {})
    bare = group.get("floors", {}).get("bare_call", {})
    ceiling = scaling.get("bare_call", {})
    t = _Table(
        "Native peers: ns per operation (1 thread) and 2-thread scaling on one shared object",
        [
            "case",
            "library",
            "best ns",
            "median ns",
            "2-thread speedup",
            "/ ceiling",
            "ran at once",
        ],
        "single thread: thread CPU time, loop overhead subtracted, best and median of "
        "interleaved rounds; speedup = serial time x 2 / time of 2 threads at once on the same "
        "shared objects (median of repetitions); ceiling = a bare method call on the shared "
        f"adapter (a.bare(x): {_fmt_ns(bare.get('best_ns'))} ns, 2-thread speedup "
        f"{_fmt_x(ceiling.get('speedup_median'))}), '/ ceiling' the median of paired ratios",
        left=("library",),
    )
    for key, title in P.SECTIONS:
        rows = [c for c in P.CASES if c.section == key and c.name in single]
        if not rows:
            continue
        t.add(f"[{title}]", "", "", "", "", "", "")
        for case in rows:
            n, sc = single[case.name], scaling.get(case.name)
            t.add(
                case.title,
                case.who,
                _fmt_ns(n["best_ns"]),
                _fmt_ns(n["median_ns"]),
                _fmt_x(sc and sc["speedup_median"]),
                _fmt_x(sc and sc["vs_ceiling_median"]),
                "-" if not sc else f"{sc['parallelism_median']:.2f}",
            )
    tables.append(t)
    seen = group.get("stats_threads_seen")
    if seen:
        t.note += (
            f"; statistics: the trackers had seen {seen['native']} (ours) and "
            f"{seen['python']} (pure Python) threads"
        )

    targets = [tg for tg in data.get("targets") or [] if tg.get("group") == "peers"]
    if targets:
        t = _Table(
            "Native peers: comparisons",
            ["comparison", "value", "limit", "status", "shape"],
            "single thread: ours / the fastest peer measured, ns per operation (lower is "
            "better); 2 threads: our speedup / the best-scaling peer's, median of paired "
            "repetitions (higher is better)",
            left=("status", "shape"),
        )
        for tg in targets:
            value = _fmt_x(tg["value"], 3)
            if tg.get("quartiles"):
                value += f" ({tg['quartiles'][0]:.2f}-{tg['quartiles'][1]:.2f})"
            status = _status(tg)
            t.add(tg["what"], value, f"{tg['op']} {tg['limit']:.2f}x", status, tg["shape"])
        tables.append(t)
    return tables


def _status(tg: dict[str, Any]) -> str:
    if tg.get("info"):
        return "info"
    if tg.get("unreliable"):
        return "unreliable"
    return {True: "met", False: "NOT MET", None: "n/a"}[tg["met"]]


def _server_tables(data: dict[str, Any]) -> list[_Table]:
    from benchmarks import server as S

    group = _group(data, "native", "server")
    if group is None:
        return []
    info = group.get("info", {})
    ceiling = (group.get("machine_ceiling") or {}).get("speedup_median")
    note = (
        f"load client: {info.get('client')}; our server on {info.get('server_python')}, "
        f"grpcio reference on {info.get('reference_python') or '- (not run)'}; pool: "
        f"{info.get('workers')} threads (ours, nice5 and grpcio), 1 (serial); CPU tool: "
        f"spin({info.get('spin_n')}) = {_fmt_ns(info.get('spin_ms_here'))} ms on one thread of "
        f"this interpreter at calibration; NumPy tool: n = {info.get('numpy_n')}; "
        f"{info.get('rounds')} interleaved round(s) of {info.get('window_s')} s per point "
        "(requests/s: median of rounds; latency: over all rounds); the machine's own 2-thread "
        f"speedup for the CPU tool, called directly: {_fmt_x(ceiling)}"
    )
    for name, reason in group.get("skipped_servers", {}).items():
        note += f"; {name} not run: {reason}"
    servers = [name for name in S.SERVERS if name not in group.get("skipped_servers", {})]
    header = ["tool", "streams"]
    for name in servers:
        header += [f"{name} req/s", f"{name} p50 ms", f"{name} p99 ms"]
    header += ["ours/serial", "ours/grpcio", "nice5/grpcio"]
    t = _Table("Server: requests/s and latency", header, note)
    for case, (_tool, title) in S.TOOLS.items():
        by_server = group.get("cases", {}).get(case)
        if not by_server:
            continue
        for streams in S.STREAMS:
            row: list[Any] = [title, streams]
            figures = {}
            for name in servers:
                entry = by_server.get(name, {}).get(str(streams))
                figures[name] = entry
                if entry is None:
                    row += ["-", "-", "-"]
                    continue
                fail = f" ({entry['failures']} failed)" if entry.get("failures") else ""
                row += [
                    f"{entry['requests_per_s']:,.0f}{fail}",
                    _fmt_ms(entry.get("p50_ms")),
                    _fmt_ms(entry.get("p99_ms")),
                ]
            for mine, other in (("ours", "serial"), ("ours", "grpcio"), ("nice5", "grpcio")):
                a, b = figures.get(mine), figures.get(other)
                row.append(
                    _fmt_x(a["requests_per_s"] / b["requests_per_s"])
                    if a and b and b["requests_per_s"]
                    else "-"
                )
            t.add(*row)
    tables = [t]
    pings = group.get("ping", {})
    if pings:
        t = _Table(
            "Server: Ping latency with the pool saturated",
            ["server", "pings", "p50 ms", "p99 ms", "max ms", "CPU tool req/s meanwhile"],
            "16 streams of the CPU tool keep every pool thread busy; Pings are sent one after "
            "another on the same connection",
        )
        for name in servers:
            p = pings.get(name)
            if p is None:
                continue
            t.add(
                name,
                p.get("pings", 0),
                _fmt_ms(p.get("ping_p50_ms")),
                _fmt_ms(p.get("ping_p99_ms")),
                _fmt_ms(p.get("ping_max_ms")),
                f"{p['requests_per_s']:,.0f}",
            )
        tables.append(t)
    return tables


def _fmt_ms(v: float | None) -> str:
    return "-" if v is None else f"{v:,.2f}"


def _problems(data: dict[str, Any]) -> list[str]:
    out = []
    for impl, groups in data.get("impls", {}).items():
        for group, res in groups.items():
            if not res.get("available", True):
                out.append(f"{impl}: not available ({res.get('reason')})")
                break
            if res.get("error"):
                out.append(f"{impl}/{group}: FAILED: {res['error']}")
            if res.get("gil_enabled") and res.get("free_threaded_build"):
                out.append(
                    f"{impl}/{group}: the GIL was enabled while measuring on a free-threaded build"
                )
            for name, peer in (res.get("peers") or {}).items():
                if not peer.get("available"):
                    out.append(f"{impl}/{group}: peer {name} not measured: {peer.get('reason')}")
            for name, reason in (res.get("skipped_servers") or {}).items():
                out.append(f"{impl}/{group}: {name} server not run: {reason}")
            for name, case in (res.get("cases") or {}).items():
                if isinstance(case, dict) and case.get("skipped"):
                    out.append(f"{impl}/{group}: {name} skipped: {case['reason']}")
    return out


def text(data: dict[str, Any]) -> str:
    parts = ["snakepit-bridge benchmarks", "=" * 26, *_header_lines(data), ""]
    for t in _tables(data):
        parts += [t.text(), ""]
    problems = _problems(data)
    if problems:
        parts += ["Notes", "-----", *problems, ""]
    return "\n".join(parts)


def markdown(data: dict[str, Any]) -> str:
    parts = ["```", *_header_lines(data), "```", ""]
    for t in _tables(data):
        parts += [t.markdown(), ""]
    problems = _problems(data)
    if problems:
        parts += ["Notes:", "", *[f"- {p}" for p in problems], ""]
    return "\n".join(parts)
