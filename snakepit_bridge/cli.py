"""The ``snakepit-bridge`` command: ``hammer``, ``tools``, ``info`` and ``serve``.

Exit status: 0 all good; 1 request errors, checker warnings with ``--strict``, or an adapter that
fails (or raises ``SystemExit``) while being constructed; 2 usage errors (unknown adapter or tool,
an adapter module that fails or exits while being imported, constructor arguments that do not fit
the adapter's signature, bad ``--init-args`` or ``--args`` JSON, bad option values, more
``--threads`` than can be started), always reported as one line on stderr; 130 when a hammer
run was interrupted with Ctrl-C (its partial report is still printed). ``--json`` output is always
standard JSON (never ``NaN``). See ``docs/cli.md``.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import math
import os
import random
import re
import signal
import sys
import textwrap
import threading
import traceback
import warnings
from collections.abc import Sequence
from typing import IO, Any, NoReturn

from snakepit_bridge import environment, hammer, loading
from snakepit_bridge._json import json_safe
from snakepit_bridge._options import INIT_ARGS_HELP, init_args, positive_int, positive_number
from snakepit_bridge.base_adapter import ParameterSpec, ToolSpec, tool_specs
from snakepit_bridge.checker.report import advice
from snakepit_bridge.loading import InitArgs

PROG = "snakepit-bridge"
EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130


class _Parser(argparse.ArgumentParser):
    """An ArgumentParser whose errors are one line on stderr (exit 2), never a usage dump."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message} (see --help)\n")


def _add_adapter_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "adapter",
        nargs="?",
        default=loading.DEFAULT_ADAPTER,
        metavar="ADAPTER",
        help="adapter class as module:Class or module.Class (default: the built-in showcase)",
    )
    parser.add_argument(
        "--init-args",
        type=init_args,
        default=InitArgs(),
        metavar="JSON",
        help=INIT_ARGS_HELP,
    )


def _build_parser() -> argparse.ArgumentParser:
    from snakepit_bridge import __version__

    parser = _Parser(
        prog=PROG,
        description="Hammer, inspect and diagnose snakepit-bridge adapters.",
    )
    parser.add_argument("--version", action="version", version=f"{PROG} {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    run = commands.add_parser(
        "hammer",
        help="call one shared adapter from many threads at once and report",
        description=(
            "Call one shared adapter instance from many threads released together, then report "
            "requests, grouped errors, throughput, latency percentiles, the spread over threads, "
            "the adapter's get_stats() and (with --thread-safety-check) the checker's findings."
        ),
    )
    _add_adapter_argument(run)
    run.add_argument(
        "--tool",
        action="append",
        default=[],
        metavar="NAME",
        help="a tool to call; repeat to add tools (a repeated name gets more weight); "
        "default: a mix of the adapter's tools",
    )
    run.add_argument(
        "--args",
        dest="args_json",
        metavar="JSON",
        help='per-tool keyword arguments as a JSON object, e.g. \'{"ping": {"message": "hi"}}\'; '
        "merged over the default arguments",
    )
    amount = run.add_mutually_exclusive_group()
    amount.add_argument(
        "--requests",
        type=positive_int,
        default=None,
        metavar="M",
        help=f"total requests over all threads (default {hammer.DEFAULT_REQUESTS:,})",
    )
    amount.add_argument(
        "--duration",
        type=positive_number,
        default=None,
        metavar="SECONDS",
        help="run for this long instead of a number of requests",
    )
    run.add_argument(
        "--threads",
        type=positive_int,
        default=hammer.DEFAULT_THREADS,
        metavar="N",
        help=f"worker threads (default {hammer.DEFAULT_THREADS})",
    )
    run.add_argument(
        "--thread-safety-check",
        action="store_true",
        help="run with an enabled ThreadSafetyChecker and report its findings",
    )
    run.add_argument(
        "--strict",
        action="store_true",
        help="exit 1 on any checker warning (implies --thread-safety-check)",
    )
    run.add_argument("--json", action="store_true", help="print the report as JSON")
    run.add_argument(
        "--seed",
        type=int,
        default=None,
        help="seed of the request schedule and generated arguments (default: random, reported)",
    )
    run.add_argument("--quiet", action="store_true", help="no progress output on stderr")
    run.set_defaults(handler=_cmd_hammer)

    tools = commands.add_parser(
        "tools",
        help="list an adapter's tools and their parameter schemas",
        description="List an adapter's declared tools and their parameter schemas.",
    )
    _add_adapter_argument(tools)
    tools.add_argument("--json", action="store_true", help="print the tools as JSON")
    tools.set_defaults(handler=_cmd_tools)

    info = commands.add_parser(
        "info",
        help="package and interpreter facts (free-threading, GIL, native module, NumPy)",
        description="Print package and interpreter facts.",
    )
    info.add_argument("--json", action="store_true", help="print the facts as JSON")
    info.set_defaults(handler=_cmd_info)

    # Listed for --help only: main() hands `serve ...` to the server's own parser.
    commands.add_parser(
        "serve",
        help="run the gRPC worker server for Snakepit (see docs/server.md; needs the "
        "'server' extra)",
        add_help=False,
    )
    return parser


def tolerate_unencodable_output() -> None:
    """Write what the terminal's encoding cannot hold as backslash escapes, never raise.

    The report carries text from the adapter (names, messages, statistics, tracebacks) that a
    terminal's encoding (``cp1252``, ``ascii``) may not have; Python's stdout is strict and would
    end the command with a ``UnicodeEncodeError`` in the middle of the report. stderr already
    escapes by default; the encoding itself is left as it is.
    """
    for stream in (sys.stdout, sys.stderr):
        reconfigure = getattr(stream, "reconfigure", None)
        if reconfigure is not None and getattr(stream, "errors", None) == "strict":
            try:
                reconfigure(errors="backslashreplace")
            except (ValueError, OSError):  # a closed or detached stream: nothing to protect
                pass


# The commands that import a user's adapter module.
ADAPTER_COMMANDS = frozenset({"hammer", "tools", "serve"})


def import_from_working_directory() -> None:
    """Put the working directory first on ``sys.path``, as ``python -m snakepit_bridge`` does.

    A console script's ``sys.path`` starts with the script's own directory (the venv's ``bin``),
    not the working directory, so ``snakepit-bridge hammer proj.adapters:Adapter`` run from the
    project's folder would not find ``proj``. Nothing changes when the directory is already on
    the path, or when the interpreter runs isolated (``-I``) or with ``-P`` /
    ``PYTHONSAFEPATH``, which ask Python not to add it. The Snakepit launcher never comes here:
    it runs the server in isolated mode (docs/server.md).
    """
    if sys.flags.isolated or sys.flags.safe_path:
        return
    try:
        cwd = os.getcwd()
    except OSError:  # the directory was removed under us: nothing to import from
        return
    if any(os.path.abspath(entry or os.curdir) == cwd for entry in sys.path):
        return
    sys.path.insert(0, cwd)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status."""
    args = list(sys.argv[1:] if argv is None else argv)
    tolerate_unencodable_output()
    if args[:1] and args[0] in ADAPTER_COMMANDS:
        import_from_working_directory()
    if args[:1] == ["serve"]:
        # The server parses its own arguments (Snakepit's, unknown ones included).
        from snakepit_bridge.server.__main__ import run

        return run(args[1:], prog=f"{PROG} serve")
    parser = _build_parser()
    try:
        options = parser.parse_args(argv)
    except SystemExit as exc:  # --help, --version, and argparse's usage errors
        return exc.code if isinstance(exc.code, int) else EXIT_USAGE
    try:
        return int(options.handler(options))
    except (hammer.UsageError, loading.AdapterLoadError) as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except loading.AdapterConstructionError as exc:
        # The adapter's own bug: its traceback is what its author needs.
        cause = exc.__cause__ or exc
        traceback.print_exception(type(cause), cause, cause.__traceback__, file=sys.stderr)
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return EXIT_FAILED
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        # Output piped into a command that stopped reading (`| head`): not an error of ours.
        _silence_stdout()
        return EXIT_OK


def _print_json(data: Any) -> None:
    """``data`` as standard JSON on stdout: what JSON cannot hold (objects, NaN, infinities)
    is written as its ``repr``, never as the non-standard ``NaN`` / ``Infinity``."""
    json.dump(json_safe(data), sys.stdout, indent=2, allow_nan=False)
    sys.stdout.write("\n")


def _silence_stdout() -> None:
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    os.close(devnull)


# --------------------------------------------------------------------------------------------
# hammer
# --------------------------------------------------------------------------------------------


def _parse_tool_arguments(text: str | None) -> dict[str, dict[str, Any]]:
    if text is None:
        return {}
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise hammer.UsageError(f"--args is not valid JSON: {exc}") from None
    if not isinstance(value, dict):
        raise hammer.UsageError(
            "--args must be a JSON object mapping tool names to argument objects, "
            'e.g. {"ping": {"message": "hi"}}'
        )
    for name, arguments in value.items():
        if not isinstance(arguments, dict):
            raise hammer.UsageError(
                f"--args: the arguments of tool {name!r} must be a JSON object, "
                f"not {type(arguments).__name__}"
            )
    return value


def _cmd_hammer(options: argparse.Namespace) -> int:
    arguments = _parse_tool_arguments(options.args_json)
    adapter_class = loading.load_adapter_class(options.adapter)
    if not options.tool:
        _require_numpy_for_the_showcase_mix(adapter_class)
    build_adapter = loading.adapter_factory(adapter_class, options.init_args)
    seed = options.seed if options.seed is not None else random.SystemRandom().randrange(2**32)
    requests = options.requests if options.duration is None else None
    if requests is None and options.duration is None:
        requests = hammer.DEFAULT_REQUESTS
    _interrupt_on_sigint()
    if options.thread_safety_check or options.strict:
        from snakepit_bridge.thread_safety_checker import ThreadSafetyWarning

        # The report lists every finding; Python's warning printout would only repeat them.
        warnings.simplefilter("ignore", ThreadSafetyWarning)
    err = sys.stderr
    progress = None if options.quiet else ProgressDisplay(err, requests, options.duration)

    def announce(adapter: Any, mix: Sequence[hammer.ToolCall]) -> None:
        if progress is not None:
            amount = f"{requests:,} requests" if requests else f"{options.duration:g} s"
            tools = ", ".join(call.tool for call in mix)
            progress.line(
                f"hammer: {loading.adapter_spec(adapter_class)}, {options.threads} threads, "
                f"{amount}, seed {seed}; tools: {tools}"
            )

    left_out: list[ToolSpec] = []

    def make_mix(adapter: Any) -> list[hammer.ToolCall]:
        mix = hammer.build_mix(adapter, options.tool, arguments, seed)
        if not options.tool:
            # The default mix takes only the tools it can call: say which it left out.
            chosen = {call.tool for call in mix}
            left_out.extend(spec for spec in tool_specs(adapter) if spec.name not in chosen)
        return mix

    result = hammer.run_hammer(
        build_adapter,
        make_mix,
        threads=options.threads,
        requests=requests,
        duration=options.duration,
        seed=seed,
        thread_safety_check=options.thread_safety_check or options.strict,
        strict=options.strict,
        on_progress=progress,
        progress_interval=progress.interval if progress is not None else 1.0,
        on_started=announce,
    )
    if progress is not None:
        progress.finish(result.interrupted)
    if options.json:
        _print_json(result.to_dict())
    else:
        sys.stdout.write(render_report(result, options.init_args, left_out))
    sys.stdout.flush()
    return result.exit_code


SHOWCASE_MODULE = "snakepit_bridge.adapters.threaded_showcase"


def _require_numpy_for_the_showcase_mix(adapter_class: type) -> None:
    """The showcase's default mix calls its NumPy tools: without NumPy, say so before the run
    (a usage error) instead of reporting most requests as failed.

    The showcase module is only looked at when it is already imported, which it is when the
    adapter is the showcase or a subclass: another adapter's run never imports NumPy for this.
    """
    showcase = sys.modules.get(SHOWCASE_MODULE)
    if showcase is None or showcase.NUMPY_AVAILABLE:
        return
    if issubclass(adapter_class, showcase.ThreadedShowcaseAdapter):
        raise hammer.UsageError(
            "the showcase adapter's default mix needs NumPy, which is not installed: "
            "pip install 'snakepit-bridge[numpy]' (or hammer tools that do not need it, "
            "e.g. --tool ping)"
        )


def _interrupt_on_sigint() -> None:
    """Make SIGINT raise KeyboardInterrupt, which the run turns into a partial report.

    Python leaves SIGINT ignored when it started ignored, as it does for background jobs of
    non-interactive shells and some process supervisors; a hammer run must still stop on it.
    """
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGINT, signal.default_int_handler)


class ProgressDisplay:
    """Progress on stderr: a redrawn bar on a terminal, plain lines otherwise (logs, CI)."""

    def __init__(self, stream: IO[str], requests: int | None, duration: float | None) -> None:
        self.stream = stream
        self.tty = _isatty(stream)
        self.interval = 0.1 if self.tty else 1.0
        self.requests = requests
        self.duration = duration
        self._bar_drawn = False

    def line(self, text: str) -> None:
        self._clear_bar()
        self.stream.write(text + "\n")
        self.stream.flush()

    def __call__(self, progress: hammer.Progress) -> None:
        target = f"/{self.requests:,}" if self.requests else ""
        timing = f"{progress.elapsed:5.1f}s" + (f"/{self.duration:g}s" if self.duration else "")
        counts = (
            f"{progress.completed:,}{target} requests, {progress.rate:,.0f} req/s, "
            f"{progress.errors:,} errors, {timing}"
        )
        if self.tty:
            width = 30
            filled = int(progress.fraction * width)
            bar = "#" * filled + "-" * (width - filled)
            self.stream.write(f"\r[{bar}] {progress.fraction:4.0%} {counts}\x1b[K")
            self._bar_drawn = True
        else:
            self.stream.write(f"progress: {progress.fraction:.0%} {counts}\n")
        self.stream.flush()

    def finish(self, interrupted: bool) -> None:
        self._clear_bar()
        if interrupted:
            self.line("hammer: interrupted; partial report follows")

    def _clear_bar(self) -> None:
        if self._bar_drawn:
            self.stream.write("\r\x1b[K")
            self._bar_drawn = False


def _isatty(stream: IO[str]) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


def render_report(
    result: hammer.HammerResult,
    init: InitArgs | None = None,
    left_out: Sequence[ToolSpec] = (),
) -> str:
    """The human-readable hammer report (``init``: the adapter's constructor arguments;
    ``left_out``: the tools the default mix did not take)."""
    data = result.to_dict()
    lines: list[str] = []
    add = lines.append
    title = "Hammer report (INTERRUPTED: partial)" if result.interrupted else "Hammer report"
    add(title)
    add("=" * len(title))
    env = data["environment"]
    gil = "enabled" if env["gil_enabled"] else "disabled"
    build = "free-threaded build" if env["free_threaded_build"] else "GIL build"
    add(f"adapter     {data['adapter']}" + (f", init args {init}" if init else ""))
    add(f"python      {env['implementation']} {env['python']} ({build}), GIL {gil}")
    if env["free_threaded_build"] and env["gil_enabled"]:
        add(
            f"warning     the GIL is enabled on this free-threaded build ({_gil_cause()}): the "
            "threads took turns, so this run measures nothing about free threading"
        )
    amount = (
        f"{result.target_requests:,} requests"
        if result.target_requests
        else f"{result.target_duration:g} s"
    )
    add(f"run         {result.threads} threads, {amount}, seed {result.seed}")
    if left_out:
        needs = ", ".join(
            f"{spec.name} (needs {', '.join(p.name for p in spec.required_parameters)})"
            for spec in left_out
        )
        add(
            f"left out    {needs}: the default mix calls only tools it has arguments for; "
            "give theirs with --args"
        )
    if result.unfinished_workers:
        add(f"            {result.unfinished_workers} worker(s) stuck in a request are not counted")
    req = data["requests"]
    add(
        f"requests    {req['completed']:,} completed, {req['succeeded']:,} succeeded, "
        f"{req['failed']:,} failed"
    )
    add(f"elapsed     {data['elapsed_seconds']:.3f} s")
    add(f"throughput  {data['throughput_per_second']:,.1f} requests/s")
    lat = data["latency_ms"]
    add(
        f"latency ms  p50 {lat['p50']:.3f}  p90 {lat['p90']:.3f}  p99 {lat['p99']:.3f}  "
        f"max {lat['max']:.3f}"
    )
    spread = data["threads"]
    add(
        f"threads     {spread['count']} (requests per thread: min {spread['min']:,}, "
        f"max {spread['max']:,}, mean {spread['mean']:,}, stdev {spread['stdev']:,})"
    )
    add("")
    add("per tool")
    name_width = max([len(n) for n in data["per_tool"]] + [4])
    add(
        f"  {'tool':<{name_width}}  {'requests':>9}  {'errors':>7}  "
        f"{'p50 ms':>9}  {'p90 ms':>9}  {'p99 ms':>9}  {'max ms':>9}"
    )
    for name, stats in data["per_tool"].items():
        t = stats["latency_ms"]
        add(
            f"  {name:<{name_width}}  {stats['requests']:>9,}  {stats['errors']:>7,}  "
            f"{t['p50']:>9.3f}  {t['p90']:>9.3f}  {t['p99']:>9.3f}  {t['max']:>9.3f}"
        )
    if result.error_groups:
        add("")
        add(f"errors ({len(result.error_groups)} kind(s), {result.failed:,} request(s))")
        for number, group in enumerate(result.error_groups, 1):
            add(f"  [{number}] {group.count:,} x {group.tool}: {group.type}: {group.message}")
            add(f"      at {group.location}")
            add(textwrap.indent(group.traceback.rstrip("\n"), "      | "))
    add("")
    add("adapter get_stats()")
    lines.extend(render_stats(data["adapter_stats"], "  "))
    if result.thread_safety is not None:
        add("")
        findings = result.checker_warnings
        undeclared = list((result.thread_safety.get("undeclared_adapters") or {}).values())
        add(
            f"thread-safety checker: {len(findings)} warning(s)"
            + (
                f", {len(undeclared)} adapter class(es) not declared thread-safe"
                if undeclared
                else ""
            )
            + (" (--strict)" if result.strict else "")
        )
        for finding in [*findings, *undeclared]:
            add(f"  - {finding}")
        # The checker's recommendations, with their level as a word rather than an emoji.
        for level, text in advice(result.thread_safety):
            add(f"  {level}: {text}")
    add("")
    add(f"result: {verdict(result)}")
    return "\n".join(lines) + "\n"


def _gil_cause() -> str:
    """Why a free-threaded build runs with the GIL, as far as the process can tell."""
    if sys._xoptions.get("gil") == "1":
        return "-X gil=1"
    if os.environ.get("PYTHON_GIL") == "1":
        return "PYTHON_GIL=1"
    return "an imported extension module does not declare free-threading support"


def render_stats(value: Any, indent: str = "") -> list[str]:
    """An adapter's ``get_stats()`` (made JSON-safe) as indented ``key: value`` lines.

    Readable at a glance rather than exact (``--json`` keeps every digit): numbers that are not
    integers are shown with three significant digits, never in exponent notation down to a
    microsecond; a table of counts (every value a number, such as requests per thread) is
    sorted naturally by key, so ``worker-2`` comes before ``worker-10``; other mappings keep
    the adapter's order; values are aligned within each mapping.
    """
    if isinstance(value, dict):
        if not value:
            return [f"{indent}{{}}"]
        items = list(value.items())
        counts = all(_is_number(v) for v in value.values())
        if counts:
            items.sort(key=lambda item: _natural_key(str(item[0])))
        texts = {key: _stat_text(item) for key, item in items if not _is_nested(item)}
        width = max((len(str(key)) for key in texts), default=0) + 1
        numbers = max(len(text) for text in texts.values()) if counts else 0
        out: list[str] = []
        for key, item in items:
            if key in texts:
                out.append(f"{indent}{f'{key}:':<{width}} {texts[key]:>{numbers}}".rstrip())
            else:
                out.append(f"{indent}{key}:")
                out.extend(render_stats(item, indent + "  "))
        return out
    if _is_nested(value):  # a list holding mappings or lists
        out = []
        for item in value:
            nested = render_stats(item, indent + "  ")
            out.append(f"{indent}- {nested[0].lstrip()}")
            out.extend(nested[1:])
        return out
    return [f"{indent}{_stat_text(value)}"]


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _is_nested(value: Any) -> bool:
    if isinstance(value, dict):
        return bool(value)
    return isinstance(value, list) and any(isinstance(v, (dict, list)) for v in value)


def _natural_key(text: str) -> tuple[Any, ...]:
    """``worker-2`` before ``worker-10``; a bucket such as ``(other threads)`` last."""
    parts = re.split(r"(\d+)", text)
    return (text.startswith("("), *((0, int(p)) if p.isdigit() else (1, p) for p in parts))


def _stat_text(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return _round_float(value)
    if isinstance(value, list):
        return "[" + ", ".join(_stat_text(v) for v in value) + "]"
    if isinstance(value, str):
        return (
            value
            if value.isprintable() and value.strip() == value and value
            else json.dumps(value, ensure_ascii=False)
        )
    return str(value)


def _round_float(value: float) -> str:
    """Three significant digits in plain notation (``0.000818``, ``0.245``, ``12.3``, ``1235``)."""
    if value == 0:
        return "0"
    if not math.isfinite(value):
        return repr(value)
    magnitude = math.floor(math.log10(abs(value)))
    if magnitude < -6:
        return f"{value:.2e}"
    decimals = max(0, 2 - magnitude)
    text = f"{value:.{decimals}f}"
    return text.rstrip("0").rstrip(".") if "." in text else text


def verdict(result: hammer.HammerResult) -> str:
    """The report's last line, after ``result:``: agrees with the exit status and with every
    finding above it.

    ``OK`` only when nothing was found; ``WARNING`` when the checker warned (without
    ``--strict``) or found adapter classes not declared thread-safe, and the exit status stays
    0; ``FAILED`` for exit status 1, ``INTERRUPTED`` for 130. Each names what it counts.
    """
    findings = []
    if result.failed:
        findings.append(f"{result.failed:,} request(s) raised")
    warned = len(result.checker_warnings)
    if warned:
        findings.append(
            f"{warned} checker warning(s)" + (" with --strict" if result.strict else "")
        )
    undeclared = len((result.thread_safety or {}).get("undeclared_adapters") or {})
    if undeclared:
        findings.append(f"{undeclared} adapter class(es) not declared thread-safe")
    code = result.exit_code
    if code == EXIT_INTERRUPTED:
        head = "INTERRUPTED"
    elif code == EXIT_FAILED:
        head = "FAILED"
    elif findings:
        head = "WARNING"
    else:
        return "OK"
    text = head + (": " + "; ".join(findings) if findings else "")
    if head == "WARNING":
        # Not a failure of this run; say whether --strict would make it one.
        text += " (exit status 0" + ("; --strict fails on them" if warned else "") + ")"
    return text


# --------------------------------------------------------------------------------------------
# tools
# --------------------------------------------------------------------------------------------


def _cmd_tools(options: argparse.Namespace) -> int:
    adapter_class = loading.load_adapter_class(options.adapter)
    adapter = loading.construct_adapter(loading.adapter_factory(adapter_class, options.init_args))
    specs = tool_specs(adapter)
    if options.json:
        payload = {
            "adapter": loading.adapter_spec(adapter_class),
            "tools": [spec.to_dict() for spec in specs],
        }
        _print_json(payload)
        return EXIT_OK
    print(f"{loading.adapter_spec(adapter_class)}: {len(specs)} tool(s)")
    if not specs:
        return EXIT_OK
    rows = [
        (
            spec.name,
            "yes" if spec.supports_streaming else "no",
            ", ".join(_describe_parameter(p) for p in spec.parameters) or "-",
            spec.description.strip().splitlines()[0] if spec.description.strip() else "",
        )
        for spec in specs
    ]
    headers = ("TOOL", "STREAMING", "PARAMETERS", "DESCRIPTION")
    widths = [max(len(row[i]) for row in [headers, *rows]) for i in range(3)]
    for row in [headers, *rows]:
        line = f"{row[0]:<{widths[0]}}  {row[1]:<{widths[1]}}  {row[2]:<{widths[2]}}  {row[3]}"
        print(line.rstrip())
    return EXIT_OK


def _describe_parameter(param: ParameterSpec) -> str:
    prefix = {"var_positional": "*", "var_keyword": "**"}.get(param.kind, "")
    text = f"{prefix}{param.name}: {param.type}"
    if param.has_default:
        text += f" = {json.dumps(json_safe(param.default))}"
    return text


# --------------------------------------------------------------------------------------------
# info
# --------------------------------------------------------------------------------------------


def collect_info() -> dict[str, Any]:
    """Package and interpreter facts, for ``snakepit-bridge info``."""
    from snakepit_bridge import _native

    try:
        # The distribution's metadata, not an import: importing NumPy could itself change the
        # GIL state that this command reports.
        numpy_version: str | None = importlib.metadata.version("numpy")
    except importlib.metadata.PackageNotFoundError:
        numpy_version = None
    return {**environment.environment(), "native_module": _native.__file__, "numpy": numpy_version}


def _cmd_info(options: argparse.Namespace) -> int:
    facts = collect_info()
    if options.json:
        _print_json(facts)
        return EXIT_OK
    rows = [
        ("snakepit-bridge", facts["package_version"]),
        ("python", f"{facts['implementation']} {facts['python']} ({facts['executable']})"),
        ("free-threaded", "yes" if facts["free_threaded_build"] else "no"),
        ("GIL", "enabled" if facts["gil_enabled"] else "disabled"),
        ("native module", facts["native_module"]),
        ("numpy", facts["numpy"] or "not installed"),
    ]
    width = max(len(name) for name, _ in rows)
    for name, value in rows:
        print(f"{name:<{width}}  {value}")
    return EXIT_OK
