"""`tidemark bench WHAT`: run one benchmark (or all) and print its figures, one line each, with the
machine they were measured on. Targets are from the benchmark issue; each line says met or missed."""

from __future__ import annotations

import os
import platform
from collections.abc import Callable
from datetime import UTC, datetime

BENCHES = ("core", "dataflow", "capture", "latency", "memory")
MIB = 1024 * 1024


def machine() -> str:
    return (f"{os.cpu_count()} cores, {platform.machine()}, Python {platform.python_version()}, "
            f"{datetime.now(UTC):%Y-%m-%d}")  # fmt: skip


def _verdict(ok: bool) -> str:
    return "target met" if ok else "TARGET MISSED"


def core(quick: bool) -> list[str]:
    from dataflows.bench.core_bench import run

    r = run(changes=50_000 if quick else 200_000, customers=5_000 if quick else 20_000, runs=3 if quick else 5)
    ok = r.core_per_s >= 50_000 and r.ratio >= 0.4
    return [f"core: {r.core_per_s:,.0f} changes/s (median of {r.runs}) for {r.changes:,} changes over {r.customers:,} "
            f"customers; plain-Python ceiling {r.ceiling_per_s:,.0f}/s; ratio {r.ratio:.1%}; target >= 50,000/s and "
            f">= 40%: {_verdict(ok)}"]  # fmt: skip


def dataflow(quick: bool) -> list[str]:
    from dataflows.bench.dataflow_bench import run

    r = run(changes=20_000 if quick else 100_000, customers=5_000 if quick else 20_000)
    lines = [f"dataflow: kafka-python consume-and-produce passthrough ceiling {r.passthrough_per_s:,.0f} records/s "
             f"(median of 3) over the same {r.changes:,} capture records"]  # fmt: skip
    for run_ in r.runs:
        per_process = run_.events_per_s / run_.processes
        lines.append(
            f"dataflow, {run_.processes} process(es): {run_.events_per_s:,.0f} lifecycle events/s "
            f"({run_.changes_per_s:,.0f} capture records/s, {run_.changes_per_s / r.passthrough_per_s:.1%} of the "
            f"passthrough); {run_.events:,} of {run_.expected:,} expected events; RSS "
            f"{', '.join(f'{b / MIB:,.0f} MiB' for b in run_.rss_bytes)}; target >= 25,000 events/s per process: "
            f"{_verdict(per_process >= 25_000)}"
        )
    return lines


def capture(quick: bool) -> list[str]:
    from dataflows.bench.capture_bench import run

    r = run(rows=10_000 if quick else 50_000, runs=1 if quick else 3)
    return [f"capture: {r.kafka_per_s:,.0f} rows/s to Kafka (acked) from one {r.rows:,}-row ERP transaction; same "
            f"engine with a no-op handler {r.noop_per_s:,.0f} rows/s; ratio {r.ratio:.1%} (medians of "
            f"{len(r.runs) // 2}); target >= 90%: {_verdict(r.ratio >= 0.9)}"]  # fmt: skip


def latency(quick: bool) -> list[str]:
    from dataflows.bench.latency_bench import run

    r = run(seconds=20 if quick else 60, ramp=(250, 500, 1000) if quick else (250, 500, 750, 1000, 1500, 2000, 3000),
            ramp_seconds=10 if quick else 20)  # fmt: skip
    lines = []
    for s in r.steady:
        check = f"; target p99 <= 1.5 s: {_verdict(s.p99_s <= 1.5)}" if s.target_per_s == 2000 else ""
        lines.append(f"end to end at {s.target_per_s:,}/s (achieved {s.achieved_per_s:,.0f}/s, {s.events:,} events): "
                     f"p50 {s.p50_s:.3f} s, p95 {s.p95_s:.3f} s, p99 {s.p99_s:.3f} s, lag growth {s.growth_s:+.2f} s; "
                     f"mean reorder wait {s.reorder_wait_s:.3f} s{check}")  # fmt: skip
    steps = ", ".join(f"{s.target_per_s:,}/s {'ok' if s.sustained else 'not sustained'} (p99 {s.p99_s:.2f} s)" for s in r.ramp)
    lines.append(f"end to end, highest rate sustained without growing lag: {r.highest_sustained:,}/s ({steps})")
    return lines


def memory(quick: bool) -> list[str]:
    from dataflows.bench.memory_bench import run

    runs = run((5_000, 20_000) if quick else (100_000, 1_000_000))
    lines = []
    for m in runs:
        target = m.process != "capture" and m.customers == 1_000_000
        check = f"; target (dataflow) <= 1 GiB: {_verdict(m.rss_bytes <= 1024 * MIB)}" if target else ""
        state = f", of which core state {m.state_bytes / MIB:,.0f} MiB" if m.state_bytes is not None else ""
        lines.append(f"memory, {m.process} with {m.customers:,} customers: RSS {m.rss_bytes / MIB:,.0f} MiB{state}, "
                     f"peak {m.peak_bytes / MIB:,.0f} MiB (took {m.seconds:,.0f} s to ingest){check}")  # fmt: skip
    return lines


def profile(quick: bool) -> list[str]:
    """Where the core's time goes: pyinstrument over one core pass, self time per module (the core
    bounds the dataflow's throughput and latency, so this explains those targets too)."""
    from collections import Counter

    from pyinstrument import Profiler

    from dataflows.bench.core_bench import core_pass
    from dataflows.bench.workload import generate

    envelopes = list(generate(5_000 if quick else 50_000, 500 if quick else 5_000))
    profiler = Profiler(interval=0.0005)
    profiler.start()
    core_pass(envelopes)
    session = profiler.stop()
    by_module: Counter[str] = Counter()
    # Built-ins and generated code (dataclass __init__, "<string>") count for the module that called them.
    stack = [(session.root_frame(), "?")]
    while stack:
        frame, caller = stack.pop()
        if frame is None:
            continue
        path = frame.file_path_short or ""
        module = path.removesuffix(".py").replace("/", ".") if path.endswith(".py") else caller
        by_module[module] += frame.total_self_time
        stack.extend((child, module) for child in frame.children)
    total = sum(by_module.values()) or 1.0
    top = ", ".join(f"{m} {t / total:.0%}" for m, t in by_module.most_common(12))
    return [f"profile of the core ({len(envelopes):,} changes, pyinstrument, self time by module): {top}"]


RUNNERS: dict[str, Callable[[bool], list[str]]] = {
    "core": core, "dataflow": dataflow, "capture": capture, "latency": latency, "memory": memory, "profile": profile}  # fmt: skip
