"""bench.py's figures: per-case medians with min and max, ratios, targets, and the tables.

A *case* is one row: a system (in one configuration) on one workload. Its runs
come from every round; a run is valid when the adapter finished and every job
it was given completed (counted from the system's own storage or handler).
A row with any invalid run is marked INVALID and left out of the ratios.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass, field
from typing import Any

from bench_systems import System

UNITS = {
    "rate": "jobs/s",
    "p50_ms": "p50 ms",
    "p95_ms": "p95 ms",
    "rss_before_mb": "RSS before MB",
    "rss_after_mb": "RSS after MB",
    "growth_mb": "growth MB",
    "offered_per_s": "offered/s",
    "completed_per_s": "completed/s",
    "max_depth": "max depth",
    "pickup_p50_ms": "pickup p50 ms",
    "pickup_p99_ms": "pickup p99 ms",
    "job_ms": "job ms",
    "overhead_ms": "slot overhead ms",
}


@dataclass
class Case:
    """One row: ``system`` on ``workload`` with adapter config ``cfg``."""

    workload: str
    table: str
    """the title of the table this row belongs to"""
    system: System
    engine: str
    label: str
    cfg: dict[str, Any]
    metrics: tuple[str, ...]
    timeout: float
    runs: list[dict[str, Any]] = field(default_factory=list)
    unavailable: str | None = None

    def record(self, result: dict[str, Any]) -> dict[str, Any]:
        """Keep one run's result, judged valid or not; return it."""
        error = result.get("error")
        completed, expected = result.get("completed"), result.get("expected")
        valid = error is None and completed is not None and completed == expected
        why = error or result.get("note") or (None if valid else f"{completed}/{expected} done")
        run = {"metrics": result.get("metrics") or {}, "valid": valid, "why": why}
        self.runs.append(run)
        return run

    @property
    def valid(self) -> bool:
        return self.unavailable is None and bool(self.runs) and all(r["valid"] for r in self.runs)

    def values(self, metric: str) -> list[float]:
        found = [run["metrics"].get(metric) for run in self.runs if run["valid"]]
        return [float(v) for v in found if v is not None]

    def median(self, metric: str) -> float | None:
        values = self.values(metric)
        return statistics.median(values) if values else None

    def status(self) -> str:
        if self.unavailable:
            return self.unavailable[:70]
        bad = [run for run in self.runs if not run["valid"]]
        if bad:
            return f"INVALID {len(bad)}/{len(self.runs)}: {str(bad[0]['why'])[:60]}"
        return f"{len(self.runs)} valid"


def fmt(value: float | None) -> str:
    if value is None:
        return "-"
    if abs(value) >= 100:
        return f"{value:,.0f}"
    if abs(value) >= 10:
        return f"{value:.1f}"
    return f"{value:.2f}"


def cell(case: Case, metric: str) -> str:
    values = case.values(metric)
    if not values:
        return "-"
    middle = statistics.median(values)
    if len(values) == 1:
        return fmt(middle)
    return f"{fmt(middle)} ({fmt(min(values))}–{fmt(max(values))})"


def best_peer(cases: list[Case], metric: str, lower: bool) -> Case | None:
    peers = [c for c in cases if c.system.peer and c.valid and c.median(metric) is not None]
    if not peers:
        return None
    pick = min if lower else max
    return pick(peers, key=lambda c: c.median(metric) or 0.0)


def floor(cases: list[Case]) -> Case | None:
    raw = [c for c in cases if c.system.name == "raw-sql" and c.valid]
    return raw[0] if raw else None


def ratio(a: float | None, b: float | None) -> float | None:
    if a is None or b is None or b == 0:
        return None
    return a / b


LOWER_IS_BETTER = {"p50_ms", "p95_ms", "pickup_p50_ms", "pickup_p99_ms", "growth_mb"}


def table(title: str, cases: list[Case]) -> list[list[str]]:
    """Rows of one table: label, each metric as median (min–max), runs, ratios."""
    metrics = cases[0].metrics
    first = metrics[0]
    lower = first in LOWER_IS_BETTER
    best = best_peer(cases, first, lower)
    raw = floor(cases) if first == "rate" else None
    header = ["system", *[UNITS.get(m, m) for m in metrics], "runs"]
    with_ratios = best is not None or raw is not None
    if with_ratios:
        header += [f"÷ best peer ({best.label if best else '-'})", "÷ floor"]
    rows = [header]
    for case in cases:
        row = [case.label, *[cell(case, m) for m in metrics], case.status()]
        if with_ratios:
            mine = case.median(first) if case.valid else None
            is_ours = not case.system.peer and case.system.name != "raw-sql"
            to_best = ratio(mine, best.median(first)) if best and is_ours else None
            to_floor = ratio(mine, raw.median(first)) if raw and case.system.peer is False else None
            row += [
                f"{to_best:.2f}×" if to_best is not None else "",
                f"{to_floor:.0%}" if to_floor is not None and is_ours else "",
            ]
        rows.append(row)
    return rows


def render_text(rows: list[list[str]]) -> str:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = []
    for index, row in enumerate(rows):
        lines.append(
            "  ".join(
                c.ljust(w) if i == 0 else c.rjust(w)
                for i, (c, w) in enumerate(zip(row, widths, strict=True))
            )
        )
        if index == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


def render_markdown(rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(rows[0]) + " |", "|" + "---|" * len(rows[0])]
    lines += ["| " + " | ".join(row) + " |" for row in rows[1:]]
    return "\n".join(lines)


# -- targets -------------------------------------------------------------------------------------


@dataclass
class Target:
    text: str
    value: str
    met: bool | None
    """None: not measured in this run (missing case or invalid row)"""

    def line(self) -> str:
        verdict = {True: "MET", False: "MISSED", None: "n/a"}[self.met]
        return f"[{verdict:>6}] {self.text}: {self.value}"


def _find(cases: list[Case], workload: str, label: str) -> Case | None:
    for case in cases:
        if case.workload == workload and case.label == label and case.valid:
            return case
    return None


def _check(text: str, value: float | None, ok: bool | None, shown: str) -> Target:
    if value is None or ok is None:
        return Target(text, "not measured", None)
    return Target(text, shown, ok)


def targets(cases: list[Case]) -> list[Target]:
    """The issue's targets, each judged on this run's medians."""
    found: list[Target] = []

    def by(workload: str) -> list[Case]:
        return [c for c in cases if c.workload == workload]

    w1 = by("W1")
    ours1 = _find(w1, "W1", "ours basic enqueue_many")
    best1 = best_peer(w1, "rate", lower=False)
    raw1 = floor(w1)
    r = ratio(ours1.median("rate") if ours1 else None, best1.median("rate") if best1 else None)
    found.append(_check("W1 ≥ 1.5× best peer", r, r is not None and r >= 1.5, f"{r or 0:.2f}×"))
    r = ratio(ours1.median("rate") if ours1 else None, raw1.median("rate") if raw1 else None)
    found.append(_check("W1 ≥ 70 % of raw floor", r, r is not None and r >= 0.7, f"{r or 0:.0%}"))

    w3 = by("W3")
    best3 = best_peer(w3, "rate", lower=False)
    raw3 = floor(w3)
    for kind, label in (("async def", "async/asyncio/with"), ("def", "def/asyncio/with")):
        ours3 = _find(w3, "W3", f"ours basic {label}")
        mine = ours3.median("rate") if ours3 else None
        r = ratio(mine, best3.median("rate") if best3 else None)
        text = f"W3 {kind} ≥ 2× best peer"
        found.append(_check(text, r, r is not None and r >= 2, f"{r or 0:.2f}×"))
        r = ratio(mine, raw3.median("rate") if raw3 else None)
        found.append(
            _check(f"W3 {kind} ≥ 50 % of floor", r, r is not None and r >= 0.5, f"{r or 0:.0%}")
        )
        lite = _find(w3, "W3", f"ours lite {label}")
        r = ratio(lite.median("rate") if lite else None, mine)
        found.append(
            _check(f"Lite W3 {kind} ≥ Basic", r, r is not None and r >= 1, f"{r or 0:.2f}×")
        )

    w4 = by("W4")
    for kind, label in (("async def", "ours basic async"), ("def", "ours basic def")):
        ours4 = _find(w4, "W4", label)
        for metric, limit, text in (
            ("p50_ms", 0.7, f"W4 {kind} p50 ≤ 0.7× best peer"),
            ("p95_ms", 1.0, f"W4 {kind} p95 ≤ best peer"),
        ):
            best4 = best_peer(w4, metric, lower=True)
            r = ratio(
                ours4.median(metric) if ours4 else None, best4.median(metric) if best4 else None
            )
            found.append(_check(text, r, r is not None and r <= limit, f"{r or 0:.2f}×"))

    for engine in dict.fromkeys(c.engine for c in cases if c.workload in ("W5", "W6", "W7")):
        found += _engine_targets([c for c in cases if c.engine == engine], engine)
    return found


def _engine_targets(cases: list[Case], engine: str) -> list[Target]:
    """W5-W7's targets for ours on one engine."""
    found: list[Target] = []
    w5 = [c for c in cases if c.workload == "W5" and c.valid]
    one = next((c for c in w5 if c.cfg.get("procs") == 1), None)
    three = next((c for c in w5 if c.cfg.get("procs") == 3), None)
    r = ratio(three.median("rate") if three else None, one.median("rate") if one else None)
    text = f"W5 {engine}: 3 processes ≥ 2× one process"
    found.append(_check(text, r, r is not None and r >= 2, f"{r or 0:.2f}×"))
    fetches = sorted(
        (c for c in w5 if c.cfg.get("part") == "fetch"), key=lambda c: int(c.cfg["finished"])
    )
    if len(fetches) >= 2:
        small, big = fetches[0], fetches[-1]
        r = ratio(big.median("p50_ms"), small.median("p50_ms"))
        text = (
            f"W5 {engine}: fetch p50 with {big.cfg['finished']:,} finished rows "
            f"≤ 1.2× with {small.cfg['finished']:,}"
        )
        found.append(_check(text, r, r is not None and r <= 1.2, f"{r or 0:.2f}×"))
    else:
        found.append(
            Target(f"W5 {engine}: fetch flat beside 1M finished rows", "not measured", None)
        )

    w6 = next((c for c in cases if c.workload == "W6" and c.valid), None)
    growth = w6.median("growth_mb") if w6 else None
    text = f"W6 {engine}: RSS growth < 20 MB"
    found.append(_check(text, growth, growth is not None and growth < 20, f"{fmt(growth)} MB"))

    w7 = [c for c in cases if c.workload == "W7" and c.valid]
    top = next((c for c in w7 if c.cfg.get("rate") == 2000), None)
    text = (
        f"W7 {engine}: keeps up with 2,000 jobs/s at 16 slots (≥ 95 %, depth ≤ 500, p99 < 100 ms)"
    )
    if top is not None:
        p99, depth = top.median("pickup_p99_ms"), top.median("max_depth")
        done, offered = top.median("completed_per_s"), top.median("offered_per_s")
        keeps = (
            p99 is not None
            and depth is not None
            and done is not None
            and offered is not None
            and p99 < 100
            and depth <= 0.25 * 2000
            and done >= 0.95 * offered
        )
        shown = (
            f"completed {fmt(done)}/s of {fmt(offered)}/s, max depth {fmt(depth)}, "
            f"pickup p99 {fmt(p99)} ms"
        )
        found.append(Target(text, shown, keeps))
    else:
        found.append(Target(text, "not measured", None))
    saturated = next((c for c in w7 if c.cfg.get("part") == "saturated"), None)
    overhead = saturated.median("overhead_ms") if saturated else None
    found.append(
        _check(
            f"W7 {engine}: per-slot overhead on a 1 ms job < 2 ms",
            overhead,
            overhead is not None and overhead < 2,
            f"{fmt(overhead)} ms",
        )
    )
    return found
