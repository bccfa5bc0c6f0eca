"""Resident memory with many distinct customers, each on a fresh local stack.

Dataflow: capture topics preloaded with the creation of N customers in both systems (2N changes), one
dataflow process; its VmRSS once every customer is golden and a snapshot has been taken, and its peak
(VmHWM), which includes the snapshot of the core.

Capture: N new ERP customers committed in transactions of 100,000 rows while the ERP capture process
runs; its VmRSS and VmHWM once every row is on Kafka. The capture keeps no per-customer state, so this
shows what large transactions cost it (Debezium buffers none of them: pgoutput streams rows).

Core: the dataflow's core step (its keyed StatefulBatchLogic, taken from the flow) alone, in a fresh
Python process, fed the same 2N changes: the part of its resident memory that is the core's state
(above the process's baseline, after a full collection and malloc_trim), a lower bound of the
dataflow's in a fraction of its time. Then the snapshots the dataflow takes at the end of an epoch (of
every key touched in it, as Bytewax does), each after 1,000 more changes to random customers: their
cost per 1,000 customers changed, which should not depend on the customers held."""

from __future__ import annotations

import gc
import itertools
import multiprocessing
import os
import pickle
import queue as queue_module
import statistics
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bytewax.operators import StatefulBatchLogic

from dataflows.bench.capture_bench import insert_customers
from dataflows.bench.dataflow_bench import preload
from dataflows.bench.workload import generate
from dataflows.core.inputs import CoreInput
from dataflows.core.policy import Policy
from dataflows.io.sinks import ensure_topics
from dataflows.memory import return_free_memory, rss_bytes, tune_gc
from dataflows.stack.local import LocalStack, capture_process_name, read_capture_status
from dataflows.stack.scrape import scrape
from dataflows.stack.scratch import scratch_stack


@dataclass
class MemoryRun:
    process: str  # "dataflow" or "capture"
    customers: int
    rss_bytes: int
    peak_bytes: int
    seconds: float  # until every customer was golden (dataflow) or on Kafka (capture)


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


@dataclass(frozen=True)
class CoreStateRun:
    customers: int
    state_bytes: int  # resident above the process's baseline once every customer is golden
    seconds: float  # to ingest them
    full_snapshot_ms: float  # the costliest snapshot of the ingest (the sequencer's bases among them)
    snapshot_ms: tuple[float, ...]  # each later snapshot, after changes to `changed` customers
    changed: tuple[int, ...]

    @property
    def ms_per_1000_changed(self) -> float:
        return statistics.median(ms * 1000 / n for ms, n in zip(self.snapshot_ms, self.changed, strict=True))


class FlowCore:
    """The core's keyed logics as the dataflow holds them (dataflows/flows/partitioned.py): the sequencer's
    one key and one key per golden customer, hand-offs looped back at once; at each snapshot (the end of an
    epoch) a snapshot of every key touched since the last one, the sequencer's included (to checkpoint
    files in `checkpoints`, as the dataflow does, or whole when None)."""

    def __init__(self, policy: Policy, checkpoints: Path | None, partitions: int) -> None:
        from dataflows.core.customer import CustomerCore
        from dataflows.flows.checkpoints import CheckpointFiles
        from dataflows.flows.core_logic import CoreMetrics
        from dataflows.flows.partitioned import SequencerLogic, WarmStates, first_partition_key
        from dataflows.settings import WARM_CUSTOMERS

        # No expected streams: the benchmark feeds in commit order and flushes at the end of each feed.
        files = CheckpointFiles(checkpoints) if checkpoints is not None else None
        self.sequencer = SequencerLogic(policy, [], None, files)
        self.customers, self.counters, self.warm = CustomerCore(policy), CoreMetrics(), WarmStates(WARM_CUSTOMERS)
        self.handoff_key = first_partition_key(partitions)
        self.logics: dict[str, StatefulBatchLogic] = {}
        self.touched: set[str] = set()

    def feed(self, values: list[CoreInput]) -> None:
        self.deliver(self.sequencer.on_batch([values])[0])

    def flush(self) -> None:
        self.deliver(self.sequencer.on_eof()[0])

    def deliver(self, items: list[tuple[str, Any]]) -> None:
        """The sequencer's output `items`: its messages to the customer keys, and their hand-offs, carried out."""
        from dataflows.core.outputs import HandOff
        from dataflows.flows.partitioned import CustomerLogic

        pending = [kv for target, kv in items if target == "customer"]
        while pending:
            by_key: dict[str, list[tuple[str, Any]]] = {}
            for key, message in pending:
                by_key.setdefault(key, []).append((key, message))
            pending = []
            for key, batch in by_key.items():
                logic = self.logics.get(key) or self.logics.setdefault(
                    key, CustomerLogic(self.customers, self.counters, None, self.handoff_key, self.warm))
                self.touched.add(key)
                for out in logic.on_batch(batch)[0]:
                    if isinstance(out, HandOff):
                        pending.append(pickle.loads(out.payload))  # noqa: S301 - written just above

    def snapshot_ms(self) -> float:
        """Milliseconds of CPU (see core_bench.CLOCK) to snapshot every key touched since the last snapshot."""
        start = time.process_time()
        self.sequencer.snapshot()
        for key in self.touched:
            self.logics[key].snapshot()
        self.touched.clear()
        return (time.process_time() - start) * 1000


EPOCH_CHANGES = 20_000


def _feed_child(customers: int, changes_per_snapshot: int, runs: int, conn: Any) -> None:
    """The workload, generated in a process of its own: its rows of every customer are not the core's state.
    Sends the creations in chunks, None, then `runs` chunks of updates, then None."""
    envelopes = generate(2 * customers + runs * changes_per_snapshot, customers, create_share=1.0)
    creates = itertools.islice(envelopes, 2 * customers)
    while chunk := list(itertools.islice(creates, 2000)):
        conn.send(chunk)
    conn.send(None)
    for _ in range(runs):
        conn.send(list(itertools.islice(envelopes, changes_per_snapshot)))
    conn.send(None)
    conn.close()


def _core_state_child(
    customers: int, changes_per_snapshot: int, runs: int, out: multiprocessing.Queue, conn: Any,  # type: ignore[type-arg]
    incremental: bool = True,
) -> None:
    from dataflows.config.connectors import load_connectors
    from dataflows.config.policy import build_policy
    from dataflows.ingest.decode import decode
    from dataflows.ingest.mapping import SourceMapper
    from dataflows.settings import Settings

    settings = Settings()
    connectors = load_connectors(settings.connectors_dir)
    mappers = {name: SourceMapper(c) for name, c in connectors.items()}
    tune_gc()  # as in the dataflow: a full collection inside a snapshot would be timed as the snapshot's
    with tempfile.TemporaryDirectory(prefix="tidemark-checkpoints-") as checkpoints:
        where = Path(checkpoints) if incremental else None
        core = FlowCore(build_policy(connectors.values()), where, settings.topic_partitions)
        to_input = lambda e: mappers[e.source].map(decode(e.key, e.value, source=e.source, dialect=e.dialect))  # noqa: E731
        baseline, started = _trimmed_rss(), time.monotonic()
        # Every customer created in both systems, then random updates; streamed, never all in memory. An
        # epoch ends every EPOCH_CHANGES (the dataflow's 5 s at a few thousand changes/s): its keys snapshot.
        fed = full_ms = 0.0
        while (chunk := conn.recv()) is not None:
            core.feed([to_input(e) for e in chunk])
            fed += len(chunk)
            if fed % EPOCH_CHANGES < len(chunk):
                full_ms = max(full_ms, core.snapshot_ms())
        core.flush()
        full_ms = max(full_ms, core.snapshot_ms())
        seconds, state = time.monotonic() - started, _trimmed_rss() - baseline
        snapshots, changed = [], []
        while (chunk := conn.recv()) is not None:
            core.feed([to_input(e) for e in chunk])
            core.flush()
            snapshots.append(core.snapshot_ms())
            changed.append(len({e.key for e in chunk}))  # every table's row id is its customer's number
    out.put(CoreStateRun(customers, state, seconds, full_ms, tuple(snapshots), tuple(changed)))


def core_state(customers: int, changes_per_snapshot: int = 1000, runs: int = 3,
               incremental: bool = True) -> CoreStateRun:  # fmt: skip
    """The flow's core alone in a fresh interpreter (nothing else in its heap; the workload is generated in
    another process): resident bytes of its state, and the snapshots the dataflow would take after a batch
    of changes (incremental=False: the sequencer's snapshotted whole, for comparison)."""
    context = multiprocessing.get_context("spawn")
    queue = context.Queue()
    receive, send = context.Pipe(duplex=False)
    feeder = context.Process(target=_feed_child, args=(customers, changes_per_snapshot, runs, send))
    child = context.Process(target=_core_state_child,
                            args=(customers, changes_per_snapshot, runs, queue, receive, incremental))
    feeder.start()
    child.start()
    send.close()
    receive.close()
    while True:  # a child that died (its traceback is on stderr) must fail the stage, not hang it
        try:
            result = queue.get(timeout=5)
            break
        except queue_module.Empty:
            if not child.is_alive():
                feeder.kill()
                msg = f"the core-state process exited with code {child.exitcode} before its result"
                raise RuntimeError(msg) from None
    child.join()
    feeder.join()
    return result


@dataclass(frozen=True)
class MemoryResult:
    core: list[CoreStateRun]
    processes: list[MemoryRun]  # the dataflow (and the capture) on local stacks


def run(customers: tuple[int, ...] = (100_000, 1_000_000), stack_customers: tuple[int, ...] | None = None,
        capture: bool = True, runs: int = 3) -> MemoryResult:  # fmt: skip
    """The core's state and snapshots at each size; the dataflow (and capture) processes at `stack_customers`
    (default: the same sizes) on fresh stacks."""
    cores = [core_state(n, runs=runs) for n in customers]
    kinds = (capture_memory, dataflow_memory) if capture else (dataflow_memory,)
    stacks = [measure(n) for n in (customers if stack_customers is None else stack_customers) for measure in kinds]
    return MemoryResult(cores, stacks)
