"""Core throughput: decode and map, then the keyed step (reorder, dedupe, identity, ownership, lifecycle,
outputs) in one process, each timed per change, beside the same run's plain-Python ceiling (JSON decode
of the same envelopes plus a dict update each). Decode and map run on every dataflow worker; the keyed
step is what partitioning must spread."""

from __future__ import annotations

import gc
import pickle
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import orjson

from dataflows.bench.workload import Envelope, generate
from dataflows.config.connectors import load_connectors
from dataflows.config.policy import build_policy
from dataflows.core.core import ConsistencyCore, CoreOutput
from dataflows.core.policy import Policy
from dataflows.ingest.decode import decode
from dataflows.ingest.mapping import SourceMapper
from dataflows.memory import tune_gc
from dataflows.settings import Settings

BATCH = 1000
# Process CPU time, not wall time: every pass here is one CPU-bound thread, and on a shared machine
# the wall clock also counts the other tenants' turns.
CLOCK = "process CPU time"


@dataclass(frozen=True)
class PassTiming:
    """Seconds one pass spent decoding and mapping, and in the core's keyed step (everything after map)."""

    changes: int
    ingest_s: float
    keyed_s: float

    @property
    def total_s(self) -> float:
        return self.ingest_s + self.keyed_s


@dataclass(frozen=True)
class CoreResult:
    changes: int
    customers: int
    runs: int
    ceiling_per_s: float  # JSON decode + dict update of the same envelopes
    per_s: float  # through decode, map and the keyed step
    ingest_us: float  # per change: decode + map
    keyed_us: float  # per change: the keyed step (reorder, dedupe, identity, ownership, lifecycle, outputs)
    sequencer_us: float  # per change, the partitioned core's one key: reorder, dedupe, identity
    customer_us: float  # per change, its customer keys: apply, ownership, lifecycle, outputs, hand-offs
    exchange_us: float  # per change, pickling what crosses processes (see `exchanged_s`)


def ceiling(envelopes: list[Envelope]) -> float:
    state: dict[tuple[str, Any], Any] = {}
    start = time.process_time()
    for e in envelopes:
        doc = orjson.loads(e.value)
        row = doc["after"] or doc["before"]
        state[(e.topic, row["id"])] = row
    return len(envelopes) / (time.process_time() - start)


def mappers_and_policy() -> tuple[dict[str, SourceMapper], Policy]:
    """What decode and map need per source, and the policy, from the project's connector files."""
    connectors = load_connectors(Settings().connectors_dir)
    return {name: SourceMapper(c) for name, c in connectors.items()}, build_policy(connectors.values())


def timed_pass(
    envelopes: list[Envelope], outputs: Callable[[CoreOutput], None] | None = None
) -> tuple[PassTiming, ConsistencyCore]:
    """One pass through a fresh core, in batches as the dataflow hands them over, timing decode and map
    apart from the keyed step; `outputs` (not timed) sees each batch's output."""
    mappers, policy = mappers_and_policy()
    core = ConsistencyCore(policy)
    now = time.time()
    ingest_s = keyed_s = 0.0
    for i in range(0, len(envelopes), BATCH):
        t0 = time.process_time()
        chunk = envelopes[i : i + BATCH]
        records = [decode(e.key, e.value, source=e.source, dialect=e.dialect) for e in chunk]
        batch = [mappers[e.source].map(r) for e, r in zip(chunk, records, strict=True)]  # type: ignore[arg-type]
        t1 = time.process_time()
        out = core.submit_batch(batch, now)
        t2 = time.process_time()
        ingest_s, keyed_s = ingest_s + t1 - t0, keyed_s + t2 - t1
        if outputs is not None:
            outputs(out)
    t0 = time.process_time()
    out = core.flush(now)
    keyed_s += time.process_time() - t0
    if outputs is not None:
        outputs(out)
    return PassTiming(len(envelopes), ingest_s, keyed_s), core


def exchanged_s(items: list[Any]) -> float:
    """CPU seconds to pickle and unpickle `items` as Bytewax does with every item that goes from one worker
    to another (timely's exchange: pickle, highest protocol)."""
    t0 = time.process_time()
    for item in items:
        pickle.loads(pickle.dumps(item, protocol=pickle.HIGHEST_PROTOCOL))  # noqa: S301 - our own bytes
    return time.process_time() - t0


def partitioned_pass(envelopes: list[Envelope]) -> tuple[float, float, float]:
    """Seconds the partitioned core spends in its sequencer and in its customer keys for `envelopes`, as the
    dataflow's logics run them in one process (decoded and mapped first, untimed; no snapshots, which the
    memory stage times); and the seconds it would spend moving each change between processes: the decoded
    changes to the sequencer's worker (a batch at a time), its messages to their customers' workers (one
    each; with N processes, (N-1)/N of both cross)."""
    from dataflows.bench.memory_bench import FlowCore

    mappers, policy = mappers_and_policy()
    inputs = [mappers[e.source].map(decode(e.key, e.value, source=e.source, dialect=e.dialect)) for e in envelopes]
    flow = FlowCore(policy, None, partitions=1)
    steps = [lambda i=i: flow.sequencer.on_batch([inputs[i : i + BATCH]]) for i in range(0, len(inputs), BATCH)]
    sequencer_s = customer_s = 0.0
    # The flow sends the sequencer a batch at a time (flows/partitioned.py), its messages one by one.
    exchange_s = exchanged_s([("seq", inputs[i : i + BATCH]) for i in range(0, len(inputs), BATCH)])
    for step in [*steps, flow.sequencer.on_eof]:  # the end of input releases what the reorder buffer holds
        t0 = time.process_time()
        items = step()[0]
        t1 = time.process_time()
        flow.deliver(items)
        sequencer_s, customer_s = sequencer_s + t1 - t0, customer_s + time.process_time() - t1
        exchange_s += exchanged_s([keyed for target, keyed in items if target == "customer"])
    return sequencer_s, customer_s, exchange_s


def core_pass(envelopes: list[Envelope], outputs: Callable[[CoreOutput], None] | None = None) -> tuple[float, ConsistencyCore]:
    """Changes/s of one pass through a fresh core (decode, map and keyed step); see `timed_pass`."""
    timing, core = timed_pass(envelopes, outputs)
    return len(envelopes) / timing.total_s, core


def offline_events(envelopes: list[Envelope]) -> set[str]:
    """Ids of the lifecycle events one core derives from these envelopes in commit order."""
    ids: set[str] = set()
    core_pass(envelopes, lambda out: ids.update(e["event_id"] for e in out.events))
    return ids


def run(changes: int = 200_000, customers: int = 20_000, runs: int = 5) -> CoreResult:
    """Medians over `runs` alternating passes of the ceiling and the core (drift on a shared machine hits both),
    with the garbage collector tuned as in the dataflow."""
    tune_gc()
    envelopes = list(generate(changes, customers))
    timings, ceilings, partitioned = [], [], []
    for _ in range(runs):
        gc.collect()
        ceilings.append(ceiling(envelopes))
        gc.collect()
        timing, core = timed_pass(envelopes)
        timings.append(timing)
        gc.collect()
        partitioned.append(partitioned_pass(envelopes))
        if len(core.records) != customers:
            msg = f"{len(core.records)} golden customers from {customers} linked pairs: the workload no longer links"
            raise RuntimeError(msg)
    per_change = lambda seconds: statistics.median(seconds) / changes * 1e6  # noqa: E731
    return CoreResult(changes, customers, runs, statistics.median(ceilings),
                      changes / statistics.median(t.total_s for t in timings),
                      per_change([t.ingest_s for t in timings]), per_change([t.keyed_s for t in timings]),
                      per_change([p[0] for p in partitioned]), per_change([p[1] for p in partitioned]),
                      per_change([p[2] for p in partitioned]))  # fmt: skip
