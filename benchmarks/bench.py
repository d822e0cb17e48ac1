"""Ours against peer job queues and a raw-SQL floor, same server, same workloads (issue 10).

``nox -s bench -- <args>`` or ``python benchmarks/bench.py <args>``; see
benchmarks/README.md. Per round, every (workload, system) case runs once, in
a subprocess on that system's own interpreter (benchmarks/bench_systems.py),
on a fresh database, and prints one JSON line; cases are interleaved round
by round (and their order rotated) so host noise spreads over all of them.
Each figure is the median of the rounds, with min and max; ratios are taken
within the run. The tables are printed and written as markdown to
``benchmarks/results/<date>-<host>-<sha>.md`` (``--out`` elsewhere).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import shlex
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench_report import Case, render_markdown, render_text, table, targets
from bench_systems import (
    OURS,
    PEERS,
    RAW,
    ROOT,
    Databases,
    System,
    interpreter,
    pg_url,
    run_adapter,
)

WORKLOADS = ("W1", "W2", "W3", "W4", "W5", "W6", "W7")
DESCRIPTIONS = {
    "W1": "one call inserting {jobs:,} jobs (the system's bulk path), jobs/s",
    "W2": "{w2:,} single inserts, one transaction each, inserts/s",
    "W3": "{jobs:,} pre-inserted no-op jobs, one process, one queue of limit 20, "
    "until all completed, jobs/s",
    "W4": "idle runtime, {w4:,} jobs inserted 20 ms apart by another process: "
    "insert commit -> process start",
    "W5": "W3 ({jobs:,} jobs) with 1, 2 and 3 worker processes on one database; "
    "fetch latency (20 jobs) beside finished rows",
    "W6": "RSS of one process before and after {w6:,} jobs",
    "W7": "sustained load, {duration:g} s per rate: 1 ms async def jobs, 16 slots; "
    "and 16 slots saturated",
}


def parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--workload", default="W1,W2,W3,W4,W5,W6,W7", help="comma-separated")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument(
        "--peers", default="all", help=f"all, none, or some of {','.join(PEERS)} (comma-separated)"
    )
    parser.add_argument("--no-floor", action="store_true", help="leave out the raw-SQL floor")
    parser.add_argument("--jobs", type=int, default=None, help="W1/W3/W5 jobs (10,000)")
    parser.add_argument("--engine", default="basic,lite", help="ours' engines: basic, lite")
    parser.add_argument("--duration", type=float, default=None, help="W7 seconds per rate (60)")
    parser.add_argument("--quick", action="store_true", help="smoke sizes: a few hundred jobs")
    parser.add_argument("--out", default=None, help="results directory (benchmarks/results)")
    parser.add_argument("--db-prefix", default="oban_bench_", help="prefix of created databases")
    args = parser.parse_args(argv)
    args.workloads = [w.strip().upper() for w in args.workload.split(",") if w.strip()]
    unknown = set(args.workloads) - set(WORKLOADS)
    if unknown:
        parser.error(f"unknown workloads: {sorted(unknown)}")
    if args.peers == "all":
        args.peer_names = list(PEERS)
    elif args.peers == "none":
        args.peer_names = []
    else:
        args.peer_names = [p.strip() for p in args.peers.split(",") if p.strip()]
        if set(args.peer_names) - set(PEERS):
            parser.error(f"unknown peers: {sorted(set(args.peer_names) - set(PEERS))}")
    args.engines = [e.strip() for e in args.engine.split(",") if e.strip()]
    quick = args.quick
    args.jobs = args.jobs or (300 if quick else 10_000)
    args.w2 = 100 if quick else 1_000
    args.w4 = 30 if quick else 200
    args.w6 = 2_000 if quick else 100_000
    args.duration = args.duration or (3.0 if quick else 60.0)
    args.finished = (1_000, 20_000) if quick else (10_000, 1_000_000)
    args.rates = (200, 1_000) if quick else (200, 1_000, 2_000)
    if not args.db_prefix.startswith("oban_bench_"):
        parser.error("--db-prefix must start with oban_bench_ (the only databases we may drop)")
    return args


def ours_cases(args: argparse.Namespace, workload: str) -> list[Case]:
    cases: list[Case] = []

    def add(
        table_name: str,
        engine: str,
        label: str,
        cfg: dict[str, Any],
        metrics: tuple[str, ...],
        timeout: float,
    ) -> None:
        cases.append(Case(workload, table_name, OURS, engine, label, cfg, metrics, timeout))

    rate = ("rate",)
    for engine in args.engines:
        if workload == "W1":
            add(
                "W1",
                engine,
                f"ours {engine} enqueue_many",
                {"jobs": args.jobs, "api": "sync"},
                rate,
                300,
            )
            add(
                "W1",
                engine,
                f"ours {engine} enqueue_many_async",
                {"jobs": args.jobs, "api": "async"},
                rate,
                300,
            )
        elif workload == "W2":
            add("W2", engine, f"ours {engine} enqueue", {"jobs": args.w2, "api": "sync"}, rate, 300)
            add(
                "W2",
                engine,
                f"ours {engine} enqueue_async",
                {"jobs": args.w2, "api": "async"},
                rate,
                300,
            )
        elif workload == "W3":
            variants = [
                (kind, loop, mode)
                for kind in ("async", "def")
                for loop in ("asyncio", "trio")
                for mode in ("with", "async-with")
            ]
            if args.quick:
                variants = [("async", "asyncio", "with"), ("def", "trio", "async-with")]
            for kind, loop, mode in variants:
                cfg = {
                    "jobs": args.jobs,
                    "worker": "async" if kind == "async" else "sync",
                    "loop": loop,
                    "mode": mode,
                }
                add(
                    "W3",
                    engine,
                    f"ours {engine} {kind}/{loop}/{mode}",
                    cfg,
                    rate,
                    120 + args.jobs / 20,
                )
        elif workload == "W4":
            for kind in ("async", "def"):
                cfg = {"jobs": args.w4, "worker": "async" if kind == "async" else "sync"}
                add("W4", engine, f"ours {engine} {kind}", cfg, ("p50_ms", "p95_ms"), 120)
        elif workload == "W5":
            for procs in (1, 2, 3):
                cfg = {"jobs": args.jobs, "procs": procs}
                add(
                    "W5 processes",
                    engine,
                    f"ours {engine} {procs} process{'es' if procs > 1 else ''}",
                    cfg,
                    rate,
                    120 + args.jobs / 20,
                )
            for finished in args.finished:
                cfg = {
                    "jobs": 0,
                    "part": "fetch",
                    "finished": finished,
                    "fetches": 100 if args.quick else 500,
                }
                add(
                    "W5 fetch",
                    engine,
                    f"ours {engine} fetch, {finished:,} finished rows",
                    cfg,
                    ("p50_ms", "p95_ms"),
                    600,
                )
        elif workload == "W6":
            cfg = {"jobs": args.w6, "warmup": 500 if args.quick else 2_000}
            add(
                "W6",
                engine,
                f"ours {engine}",
                cfg,
                ("rss_before_mb", "rss_after_mb", "growth_mb"),
                120 + args.w6 / 50,
            )
        elif workload == "W7":
            metrics = (
                "offered_per_s",
                "completed_per_s",
                "max_depth",
                "pickup_p50_ms",
                "pickup_p99_ms",
            )
            for offered in args.rates:
                cfg = {"jobs": 0, "rate": offered, "duration": args.duration}
                add(
                    "W7 sustained",
                    engine,
                    f"ours {engine} {offered:,}/s offered",
                    cfg,
                    metrics,
                    args.duration + 120,
                )
            cfg = {"jobs": 500 if args.quick else 5_000, "part": "saturated"}
            add(
                "W7 saturated",
                engine,
                f"ours {engine} 16 slots saturated",
                cfg,
                ("rate", "job_ms", "overhead_ms"),
                300,
            )
    return cases


def peer_cases(args: argparse.Namespace, workload: str, systems: list[System]) -> list[Case]:
    sizes = {"W1": args.jobs, "W2": args.w2, "W3": args.jobs, "W4": args.w4}
    metrics = ("p50_ms", "p95_ms") if workload == "W4" else ("rate",)
    return [
        Case(
            workload,
            workload,
            system,
            "basic",
            system.name,
            {"jobs": sizes[workload]},
            metrics,
            120 + sizes[workload] / 20,
        )
        for system in systems
        if workload in system.workloads
    ]


def machine() -> dict[str, str]:
    cpu = "unknown"
    memory = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal"):
                memory = f"{int(line.split()[1]) / 1024 / 1024:.1f} GiB"
                break
    except OSError:
        pass
    uptime = subprocess.run(["uptime"], capture_output=True, text=True, check=False).stdout.strip()
    sha = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        check=False,
    ).stdout.strip()
    dirty = subprocess.run(
        ["git", "status", "--porcelain", "--", "oban"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        check=False,
    ).stdout.strip()
    return {
        "host": socket.gethostname(),
        "nproc": str(os.cpu_count()),
        "cpu": cpu,
        "memory": memory,
        "load at start": uptime,
        "platform": platform.platform(),
        "commit": sha + (" (oban/ modified)" if dirty else ""),
    }


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    started = dt.datetime.now()
    info = machine()
    dbs = Databases(pg_url(), args.db_prefix)
    log_dir = Path(tempfile.mkdtemp(prefix="oban-bench-logs-"))
    print(f"oban benchmark: {', '.join(args.workloads)}; {args.rounds} round(s); logs in {log_dir}")
    print(f"load at start: {info['load at start']}")
    pg_version = dbs.server_version()
    if pg_version is None:
        print(f"PostgreSQL at {pg_url()} is unreachable: only Lite runs")
        args.engines = [e for e in args.engines if e == "lite"]

    systems: dict[str, tuple[System, str | None, str | None]] = {}
    chosen = [OURS] + ([] if args.no_floor or pg_version is None else [RAW])
    chosen += [PEERS[name] for name in args.peer_names] if pg_version else []
    for system in chosen:
        python, why = interpreter(system)
        systems[system.name] = (system, python, why)
    versions: dict[str, dict[str, str]] = {}
    for name, (system, python, why) in systems.items():
        if python is None:
            print(f"  {name}: {why}")
            continue
        got = run_adapter(
            python, system, {"workload": "versions"}, 120, log_dir / f"{name}-versions.log"
        )
        versions[name] = got.get("versions") or {"error": str(got.get("error"))}

    cases: list[Case] = []
    for workload in args.workloads:
        if "basic" in args.engines or "lite" in args.engines:
            cases += ours_cases(args, workload)
        if workload in ("W1", "W2", "W3", "W4") and pg_version:
            available = [s for s, python, _ in systems.values() if s is not OURS and python]
            cases += peer_cases(args, workload, available)
            for name, (system, python, why) in systems.items():
                if python is None and workload in system.workloads:
                    case = Case(
                        workload,
                        workload,
                        system,
                        "basic",
                        name,
                        {},
                        ("p50_ms", "p95_ms") if workload == "W4" else ("rate",),
                        0,
                    )
                    case.unavailable = why
                    cases.append(case)

    for round_no in range(1, args.rounds + 1):
        print(f"\nround {round_no}/{args.rounds}")
        for workload in args.workloads:
            runnable = [c for c in cases if c.workload == workload and c.unavailable is None]
            if not runnable:
                continue
            shift = (round_no - 1) % len(runnable)
            for case in runnable[shift:] + runnable[:shift]:
                python = systems[case.system.name][1]
                assert python is not None
                url = dbs.create(case.system.name, case.engine)
                cfg = dict(case.cfg, workload=workload, url=url)
                began = time.perf_counter()
                log_path = (
                    log_dir / f"{workload}-{case.label.replace(' ', '_').replace('/', '-')}.log"
                )
                try:
                    result = run_adapter(python, case.system, cfg, case.timeout, log_path)
                finally:
                    try:
                        dbs.drop(url)
                    except Exception as exc:  # keep going; the name is in the log
                        print(f"    could not drop {url}: {exc}")
                run = case.record(result)
                shown = ", ".join(
                    f"{k}={v:.4g}" for k, v in run["metrics"].items() if isinstance(v, (int, float))
                )
                state = "ok" if run["valid"] else f"INVALID ({run['why']})"
                took = time.perf_counter() - began
                print(f"  {workload} {case.label:<44} {shown}  [{state}, {took:.1f} s]")
                sys.stdout.flush()
    dbs.close()

    sections: list[str] = []
    print()
    for workload in args.workloads:
        for title in dict.fromkeys(c.table for c in cases if c.workload == workload):
            rows = table(title, [c for c in cases if c.table == title])
            heading = f"{title}: " + DESCRIPTIONS[workload].format(
                jobs=args.jobs, w2=args.w2, w4=args.w4, w6=args.w6, duration=args.duration
            )
            print(heading)
            print(render_text(rows))
            print()
            sections.append(f"### {heading}\n\n{render_markdown(rows)}\n")
        if workload == "W7":
            sections.append(w7_windows(cases))
    goals = targets(cases)
    print("targets (ratios of this run's medians):")
    for goal in goals:
        print("  " + goal.line())
    invalid = [c.label + f" ({c.workload})" for c in cases if c.runs and not c.valid]
    print(
        f"\nrows: {sum(1 for c in cases if c.valid)} valid, {len(invalid)} invalid"
        + (f": {', '.join(invalid)}" if invalid else "")
    )
    raw = [
        {
            "workload": c.workload,
            "system": c.label,
            "runs": [
                dict(r, metrics={k: v for k, v in r["metrics"].items() if k != "windows"})
                for r in c.runs
            ],
        }
        for c in cases
        if c.runs
    ]
    path = write_markdown(args, argv, info, versions, pg_version, sections, goals, started, raw)
    print(f"results written to {path}")
    return 0


def w7_windows(cases: list[Case]) -> str:
    """Every 5 s window of each W7 rate's last valid run, as the issue asks."""
    parts = []
    for case in cases:
        if case.workload != "W7" or case.cfg.get("part") == "saturated":
            continue
        runs = [r for r in case.runs if r["valid"]]
        if not runs:
            continue
        windows = runs[-1]["metrics"].get("windows") or []
        rows = [["t (s)", "completed/s", "depth", "pickup p50 ms", "pickup p99 ms"]]
        for window in windows:
            rows.append(
                [
                    f"{window['t']:g}",
                    f"{window['completed_per_s']:,.0f}",
                    str(window["depth"]),
                    "-" if window["pickup_p50_ms"] is None else f"{window['pickup_p50_ms']:.1f}",
                    "-" if window["pickup_p99_ms"] is None else f"{window['pickup_p99_ms']:.1f}",
                ]
            )
        parts.append(f"#### {case.label}, last round, every 5 s\n\n{render_markdown(rows)}\n")
    return "\n".join(parts)


def write_markdown(
    args: argparse.Namespace,
    argv: list[str] | None,
    info: dict[str, str],
    versions: dict[str, dict[str, str]],
    pg_version: str | None,
    sections: list[str],
    goals: list[Any],
    started: dt.datetime,
    raw: list[dict[str, Any]],
) -> Path:
    out = Path(args.out) if args.out else ROOT / "benchmarks" / "results"
    out.mkdir(parents=True, exist_ok=True)
    sha = info["commit"].split()[0] or "nogit"
    path = out / f"{started:%Y-%m-%d}-{info['host']}-{sha}.md"
    if path.exists():
        path = out / f"{started:%Y-%m-%d-%H%M%S}-{info['host']}-{sha}.md"
    given = shlex.join(sys.argv[1:] if argv is None else argv)
    if os.environ.get("NOX_CURRENT_SESSION") == "bench":
        command = f"nox -s bench -- {given}"
    else:
        command = f"python benchmarks/bench.py {given}"
    lines = [
        f"# Benchmark results, {started:%Y-%m-%d %H:%M}",
        "",
        f"Command: `{command.strip()}`",
        "",
        "| | |",
        "|---|---|",
        *[f"| {key} | {value} |" for key, value in info.items()],
        f"| PostgreSQL | {pg_version or 'unreachable'} |",
        f"| SQLite | {sqlite3.sqlite_version} |",
        f"| finished | {dt.datetime.now():%Y-%m-%d %H:%M} |",
        "",
        "Versions, read with importlib.metadata inside each system's own environment:",
        "",
        *[
            f"- **{name}**: " + ", ".join(f"{k} {v}" for k, v in found.items())
            for name, found in versions.items()
        ],
        "",
        (
            f"Each figure: median of {args.rounds} round(s), (min–max); a row with any run that "
            "did not complete every job is INVALID and left out of the ratios. Ratios are ours "
            "÷ the best valid peer and ours ÷ the raw-SQL floor, on this run's medians."
        ),
        "",
        *sections,
        "### Targets",
        "",
        *[f"- {goal.line()}" for goal in goals],
        "",
        "<details><summary>raw results (JSON)</summary>",
        "",
        "```json",
        json.dumps({"args": vars(args), "cases": raw}, default=str),
        "```",
        "</details>",
        "",
    ]
    path.write_text("\n".join(lines))
    return path


if __name__ == "__main__":
    sys.exit(main())
