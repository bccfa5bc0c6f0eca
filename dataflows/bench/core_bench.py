"""Core throughput: decode, map, reorder, dedupe, identity, ownership and lifecycle in one process,
beside the same run's plain-Python ceiling (JSON decode of the same envelopes plus a dict update each)."""

from __future__ import annotations

import gc
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import orjson

from dataflows.bench.workload import Envelope, generate
from dataflows.config.connectors import load_connectors
from dataflows.core.core import ConsistencyCore, CoreOutput
from dataflows.ingest.decode import decode
from dataflows.ingest.mapping import SourceMapper
from dataflows.config.policy import build_policy
from dataflows.settings import Settings

BATCH = 1000


@dataclass
class CoreResult:
    changes: int
    customers: int
    core_per_s: float
    ceiling_per_s: float
    runs: int

    @property
    def ratio(self) -> float:
        return self.core_per_s / self.ceiling_per_s


def ceiling(envelopes: list[Envelope]) -> float:
    state: dict[tuple[str, Any], Any] = {}
    start = time.perf_counter()
    for e in envelopes:
        doc = orjson.loads(e.value)
        row = doc["after"] or doc["before"]
        state[(e.topic, row["id"])] = row
    return len(envelopes) / (time.perf_counter() - start)


def core_pass(envelopes: list[Envelope], outputs: Callable[[CoreOutput], None] | None = None) -> tuple[float, ConsistencyCore]:
    """Changes/s of one pass through a fresh core; `outputs` (outside the timing's intent) sees each output."""
    connectors = load_connectors(Settings().connectors_dir)
    mappers = {name: SourceMapper(c) for name, c in connectors.items()}
    core = ConsistencyCore(build_policy(connectors.values()))
    now = time.time()
    start = time.perf_counter()
    for i in range(0, len(envelopes), BATCH):  # batches, as the dataflow hands them to the core
        batch = []
        for e in envelopes[i : i + BATCH]:
            record = decode(e.key, e.value, source=e.source, dialect=e.dialect)
            batch.append(mappers[e.source].map(record))  # type: ignore[arg-type]
        out = core.submit_batch(batch, now)
        if outputs is not None:
            outputs(out)
    out = core.flush(now)
    if outputs is not None:
        outputs(out)
    return len(envelopes) / (time.perf_counter() - start), core


def offline_events(envelopes: list[Envelope]) -> set[str]:
    """Ids of the lifecycle events one core derives from these envelopes in commit order."""
    ids: set[str] = set()
    core_pass(envelopes, lambda out: ids.update(e["event_id"] for e in out.events))
    return ids


def run(changes: int = 200_000, customers: int = 20_000, runs: int = 5) -> CoreResult:
    envelopes = list(generate(changes, customers))
    core_rates, ceilings = [], []
    for _ in range(runs):
        gc.collect()
        ceilings.append(ceiling(envelopes))
        gc.collect()
        rate, core = core_pass(envelopes)
        core_rates.append(rate)
        assert len(core.records) == customers, "every customer pair linked into one golden customer"
    return CoreResult(changes, customers, statistics.median(core_rates), statistics.median(ceilings), runs)
