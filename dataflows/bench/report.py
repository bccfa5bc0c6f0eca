"""`tidemark bench STAGE`: run one benchmark stage (or all) and report its figures as `Measurement`s,
each beside its same-run ceiling where the stage has one, rendered as the human table or as JSON lines
(dataflows/bench/measurement.py). The targets they are judged by are in the README."""

from __future__ import annotations

import math
import os
import platform
import sys
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any, TextIO

from dataflows.bench.measurement import Measurement, machine_conditions

BENCHES = ("core", "dataflow", "capture", "latency", "memory")
MIB = 1024 * 1024
BROKER = {"broker": "tansu", "broker_storage": "memory"}  # what every scratch stack of the benchmarks runs


def machine() -> str:
    return (f"{os.cpu_count()} cores, {platform.machine()}, Python {platform.python_version()}, "
            f"{datetime.now(UTC):%Y-%m-%d}")  # fmt: skip


def core(quick: bool) -> list[Measurement]:
    from dataflows.bench.core_bench import BATCH, CLOCK, run

    r = run(changes=6_000 if quick else 200_000, customers=600 if quick else 20_000, runs=3 if quick else 5)
    cond = {"changes": r.changes, "customers": r.customers, "batch": BATCH, "clock": CLOCK,
            "ceiling": "orjson decode + dict update of the same envelopes"}  # fmt: skip
    ceiling_us = 1e6 / r.ceiling_per_s
    m = lambda what, value, unit, ceiling: Measurement("core", what, value, unit, ceiling, r.runs, cond)  # noqa: E731
    return [m("decode, map and keyed step", r.per_s, "changes/s", r.ceiling_per_s),
            m("decode, map and keyed step, per change", 1e6 / r.per_s, "us/change", ceiling_us),
            m("decode and map, per change", r.ingest_us, "us/change", ceiling_us),
            m("keyed step, per change", r.keyed_us, "us/change", ceiling_us),
            # The partitioned core as the dataflow runs it: the sequencer is one key, so its rate bounds
            # any number of processes; the customer step is spread over them.
            m("partitioned: sequencer (one key), per change", r.sequencer_us, "us/change", ceiling_us),
            m("partitioned: customer step (spread over processes), per change", r.customer_us, "us/change",
              ceiling_us),
            m("partitioned: the sequencer's rate, the most any number of processes reach", 1e6 / r.sequencer_us,
              "changes/s", r.ceiling_per_s),
            # What a second process adds: Bytewax pickles every item that moves between workers.
            m("partitioned: moving a change between processes (its decoded change and messages, pickled and "
              "unpickled), per change", r.exchange_us, "us/change", ceiling_us)]  # fmt: skip


def dataflow(quick: bool) -> Iterator[Measurement]:
    import confluent_kafka

    from dataflows.bench.dataflow_bench import dataflow_run, workload

    changes, customers = (8_000, 2_000) if quick else (100_000, 20_000)
    envelopes, expected = workload(changes, customers)
    for processes in (1, 2):
        r = dataflow_run(envelopes, expected, processes)
        cond = {"processes": processes, "changes": changes, "customers": customers, **BROKER,
                "outputs_acknowledged": r.outputs, "lifecycle_events": r.events, "rss_bytes": list(r.rss_bytes),
                "ceiling": f"confluent-kafka {confluent_kafka.version()[0]} consume-and-produce passthrough, "
                           "idempotent, acks=all, same broker, just before"}  # fmt: skip
        yield Measurement("dataflow", "capture topics to every output acknowledged", r.changes_per_s, "changes/s",
                          r.passthrough_per_s, 1, cond)  # fmt: skip


def capture(quick: bool) -> list[Measurement]:
    from dataflows.bench.capture_bench import run

    r = run(rows=10_000 if quick else 50_000, runs=2 if quick else 3)  # one 10,000-row run varied 49-93%
    cond = {"rows": r.rows, "transaction_rows": r.rows, **BROKER, "source": "PostgreSQL 15, Debezium embedded",
            "ceiling": "the same engine with a no-op handler"}  # fmt: skip
    return [Measurement("capture", "one ERP transaction to Kafka, acknowledged", r.kafka_per_s, "changes/s",
                        r.noop_per_s, len(r.runs) // 2, cond)]  # fmt: skip


def latency(quick: bool) -> list[Measurement]:
    from dataflows.bench.latency_bench import CUSTOMERS, run

    seconds, ramp_seconds = (10, 8) if quick else (60, 20)
    r = run(seconds=seconds, ramp=(1000, 3000) if quick else (500, 1000, 1500, 2000, 3000, 4000, 6000),
            ramp_seconds=ramp_seconds, warm_up_s=5 if quick else 10)  # fmt: skip
    base = {**BROKER, "customers": CUSTOMERS, "processes": 1, "path": "ERP commit to lifecycle event on Kafka"}
    s = r.steady[0]
    if not s.events:
        msg = f"no lifecycle events arrived at {s.target_per_s}/s"
        raise RuntimeError(msg)
    cond = {**base, "target_per_s": s.target_per_s, "achieved_per_s": round(s.achieved_per_s), "seconds": seconds,
            "events": s.events, "lag_growth_s": round(s.growth_s, 3),
            "reorder_wait_s": None if math.isnan(s.reorder_wait_s) else round(s.reorder_wait_s, 3)}  # fmt: skip
    out = [Measurement("latency", f"p{q} at {s.target_per_s:,} changes/s", v, "s", None, 1, cond)
           for q, v in ((50, s.p50_s), (95, s.p95_s), (99, s.p99_s))]  # fmt: skip
    steps = {f"{x.target_per_s}/s": "ok" if x.sustained else f"not sustained (lag growth {x.growth_s:+.1f} s)"
             for x in r.ramp}  # fmt: skip
    out.append(Measurement("latency", "highest rate sustained without growing lag", r.highest_sustained, "changes/s",
                           None, 1, {**base, "step_seconds": ramp_seconds, "steps": steps}))  # fmt: skip
    return out


def memory(quick: bool) -> list[Measurement]:
    from dataflows.bench.memory_bench import run

    r = run((2_000, 10_000) if quick else (100_000, 1_000_000), stack_customers=(1_000,) if quick else None,
            capture=not quick, runs=2 if quick else 3)  # fmt: skip
    out = []
    for c in r.core:
        cond = {"customers": c.customers, "changes": 2 * c.customers, "processes": 1,
                "basis": "the flow's core step alone in a fresh process, resident above its baseline"}  # fmt: skip
        out.append(Measurement("memory", f"core state at {c.customers:,} customers", c.state_bytes / c.customers,
                               "bytes/customer", None, 1, cond))  # fmt: skip
        snap = {"customers": c.customers, "processes": 1, "changes_between": 1000, "changed": list(c.changed),
                "full_snapshot_ms": round(c.full_snapshot_ms, 1), "clock": "process CPU time",
                "basis": "the flow's snapshot of every key touched since the last one"}  # fmt: skip
        out.append(Measurement("memory", f"snapshot with {c.customers:,} customers held", c.ms_per_1000_changed,
                               "ms/1000 changed", None, len(c.snapshot_ms), snap))  # fmt: skip
    for p in r.processes:
        cond = {"customers": p.customers, "processes": 1, **BROKER, "peak_bytes": p.peak_bytes,
                "ingest_seconds": round(p.seconds, 1)}  # fmt: skip
        if p.process == "dataflow":
            cond["basis"] = "whole process RSS, baseline included"
            out.append(Measurement("memory", f"dataflow process at {p.customers:,} customers",
                                   p.rss_bytes / p.customers, "bytes/customer", None, 1, cond))  # fmt: skip
        else:
            out.append(Measurement("memory", f"capture process after {p.customers:,} ERP rows", p.rss_bytes, "bytes",
                                   None, 1, cond))  # fmt: skip
    return out


def profile(quick: bool) -> list[Measurement]:
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
    cond = {"changes": len(envelopes), "profiler": "pyinstrument", "basis": "self time by module of one core pass"}
    return [Measurement("profile", f"self time in {m}", t / total, "share", None, 1, cond)
            for m, t in by_module.most_common(12)]  # fmt: skip


RUNNERS: dict[str, Callable[[bool], Iterable[Measurement]]] = {
    "core": core, "dataflow": dataflow, "capture": capture, "latency": latency, "memory": memory, "profile": profile}  # fmt: skip


def run_stage(stage: str, quick: bool) -> Iterator[Measurement]:
    """A stage's figures as they are measured, each with the machine's conditions beside its own."""
    machine_ = machine_conditions(quick)
    for m in RUNNERS[stage](quick):
        yield replace(m, conditions={**machine_, **m.conditions})


@contextmanager
def json_stdout() -> Iterator[TextIO]:
    """A stream onto the real stdout for the JSON lines; meanwhile whatever else writes to file descriptor 1
    (a print, the JVM of the capture engine, the stack's child processes) goes to stderr instead."""
    sys.stdout.flush()
    out = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)
    try:
        yield out
    finally:
        sys.stdout.flush()
        out.flush()
        os.dup2(out.fileno(), 1)
        out.close()


def stage_names(what: str) -> tuple[str, ...]:
    return BENCHES if what == "all" else (what,)


def conditions_shown_once(quick: bool) -> dict[str, Any]:
    """The machine's conditions, printed once above the human table rather than under every row."""
    return {k: v for k, v in machine_conditions(quick).items() if k != "measured_at"}
