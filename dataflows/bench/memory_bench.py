"""Resident memory with many distinct customers, each on a fresh local stack.

Dataflow: capture topics preloaded with the creation of N customers in both systems (2N changes), one
dataflow process; its VmRSS once every customer is golden and a snapshot has been taken, and its peak
(VmHWM), which includes the snapshot of the core.

Capture: N new ERP customers committed in transactions of 100,000 rows while the ERP capture process
runs; its VmRSS and VmHWM once every row is on Kafka. The capture keeps no per-customer state, so this
shows what large transactions cost it (Debezium buffers none of them: pgoutput streams rows).

Core: the consistency core alone, in a fresh Python process, fed the same 2N changes: its resident
memory once every customer is golden, after a full collection and malloc_trim, and the part of it that
is the core's state (above the process's baseline). A lower bound of the dataflow's, in a fraction of
its time."""

from __future__ import annotations

import gc
import itertools
import multiprocessing
import os
import time
from dataclasses import dataclass

from dataflows.bench.capture_bench import insert_customers
from dataflows.bench.dataflow_bench import preload
from dataflows.bench.workload import generate
from dataflows.io.sinks import ensure_topics
from dataflows.memory import return_free_memory, rss_bytes
from dataflows.stack.local import LocalStack, capture_process_name, read_capture_status
from dataflows.stack.scrape import scrape
from dataflows.stack.scratch import scratch_stack


@dataclass
class MemoryRun:
    process: str  # "dataflow", "capture" or "core"
    customers: int
    rss_bytes: int
    peak_bytes: int
    seconds: float  # until every customer was golden (dataflow, core) or on Kafka (capture)
    state_bytes: int | None = None  # core: above the process's baseline


def dataflow_memory(customers: int, timeout_s: float = 10_800) -> MemoryRun:
    with scratch_stack("tidemark-bench-", capture=False, dataflow=False) as stack:
        ensure_topics(stack.settings.kafka_bootstrap, stack.all_topics())
        # Envelopes are produced as generated: a million customers' envelopes need not be held at once.
        preload(stack.settings.kafka_bootstrap, generate(2 * customers, customers, create_share=1.0))
        stack.start_dataflow(echo=lambda _l: None)
        started = time.monotonic()
        url = stack.dataflow_metrics_url()
        while time.monotonic() - started < timeout_s:
            golden = scrape(url).get("tidemark_golden_customers")
            if golden and golden[0][1] >= customers:
                break
            time.sleep(2)
        else:
            msg = f"{customers} customers not golden after {timeout_s}s"
            raise TimeoutError(msg)
        seconds = time.monotonic() - started
        time.sleep(stack.settings.snapshot_interval_s * 2)  # at least one snapshot of the full core
        record = stack.table.running("dataflow-0")
        if record is None:
            msg = "the dataflow process exited"
            raise RuntimeError(msg)
        return MemoryRun("dataflow", customers, rss_bytes(record.pid), rss_bytes(record.pid, "VmHWM"), seconds)


def _acked(stack: LocalStack, topic: str) -> int:
    """Records of `topic` the ERP capture has had acknowledged by the broker (its status file). Not the
    topic's end offsets: the local broker's ListOffsets under-reports them after large bursts."""
    return int(read_capture_status(stack.capture_state_dir("erp")).get("records_by_topic", {}).get(topic, 0))


def capture_memory(customers: int, timeout_s: float = 3600) -> MemoryRun:
    with scratch_stack("tidemark-bench-", dataflow=False) as stack:
        before = _acked(stack, "erp.erp.customers")
        started = time.monotonic()
        for first in range(0, customers, 100_000):
            insert_customers(stack, 20_000_000 + first, min(100_000, customers - first))
        while _acked(stack, "erp.erp.customers") - before < customers:
            if time.monotonic() - started > timeout_s:
                msg = f"{customers} ERP rows not on Kafka after {timeout_s}s"
                raise TimeoutError(msg)
            time.sleep(1)
        seconds = time.monotonic() - started
        record = stack.table.running(capture_process_name("erp"))
        if record is None:
            msg = "the ERP capture process exited"
            raise RuntimeError(msg)
        return MemoryRun("capture", customers, rss_bytes(record.pid), rss_bytes(record.pid, "VmHWM"), seconds)


def _trimmed_rss() -> int:
    gc.collect()
    return_free_memory()
    return rss_bytes(os.getpid())


def _core_memory_child(customers: int, out: multiprocessing.Queue) -> None:  # type: ignore[type-arg]
    from dataflows.config.connectors import load_connectors
    from dataflows.core.core import ConsistencyCore
    from dataflows.ingest.decode import decode
    from dataflows.ingest.mapping import SourceMapper
    from dataflows.config.policy import build_policy
    from dataflows.settings import Settings

    connectors = load_connectors(Settings().connectors_dir)
    mappers = {name: SourceMapper(c) for name, c in connectors.items()}
    core = ConsistencyCore(build_policy(connectors.values()))
    baseline, started, now = _trimmed_rss(), time.monotonic(), time.time()
    envelopes = generate(2 * customers, customers, create_share=1.0)  # streamed: never all in memory
    while chunk := list(itertools.islice(envelopes, 2000)):
        core.submit_batch([mappers[e.source].map(decode(e.key, e.value, source=e.source, dialect=e.dialect))  # type: ignore[arg-type]
                           for e in chunk], now)  # fmt: skip
    core.flush(now)
    seconds, rss = time.monotonic() - started, _trimmed_rss()
    out.put(MemoryRun("core", len(core.records), rss, rss_bytes(os.getpid(), "VmHWM"), seconds, rss - baseline))


def core_memory(customers: int) -> MemoryRun:
    context = multiprocessing.get_context("spawn")  # a fresh interpreter: nothing else in its heap
    queue = context.Queue()
    child = context.Process(target=_core_memory_child, args=(customers, queue))
    child.start()
    result = queue.get()
    child.join()
    return result


def run(customers: tuple[int, ...] = (100_000, 1_000_000)) -> list[MemoryRun]:
    return [measure(n) for n in customers for measure in (core_memory, capture_memory, dataflow_memory)]
