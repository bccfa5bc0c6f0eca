"""Dataflow throughput: capture topics in, Tidemark's outputs out, with one process and with two, beside
the same run's ceiling: a kafka-python consumer that reads the same records and produces each to another
topic (consume-and-produce passthrough) on the same broker.

Each run gets a fresh local stack (PostgreSQL, MariaDB, broker; no captures) whose capture topics are
preloaded with the workload's envelopes before the dataflow starts, so the dataflow, not the source,
sets the pace. The rate is taken from the lifecycle events' Kafka timestamps over the middle 80% of the
run (start-up and the final idle flush excluded), and every expected event must arrive: the expected
set comes from the same envelopes processed offline by one core.
"""

from __future__ import annotations

import statistics
import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass

import orjson
from kafka import KafkaConsumer, KafkaProducer, TopicPartition

from dataflows.bench.core_bench import offline_events
from dataflows.bench.workload import Envelope, generate
from dataflows.io.sinks import ensure_topics
from dataflows.memory import rss_bytes
from dataflows.outputs import LIFECYCLE_TOPIC
from dataflows.stack.local import LocalStack
from dataflows.stack.scratch import scratch_stack


@dataclass
class DataflowRun:
    processes: int
    changes_per_s: float
    events_per_s: float
    events: int
    expected: int
    rss_bytes: list[int]  # of each dataflow process at the end


@dataclass
class DataflowResult:
    changes: int
    customers: int
    passthrough_per_s: float
    runs: list[DataflowRun]


def preload(bootstrap: str, envelopes: Iterable[Envelope]) -> None:
    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=20, batch_size=256 * 1024)
    for e in envelopes:
        producer.send(e.topic, key=e.key, value=e.value)
    producer.flush(timeout=300)
    producer.close()


def passthrough(bootstrap: str, topics: list[str], records: int) -> float:
    """Records/s of consume-and-produce with kafka-python, from the first record read to the last acked."""
    consumer = KafkaConsumer(*topics, bootstrap_servers=bootstrap, group_id=f"bench-passthrough-{uuid.uuid4().hex}",
                             auto_offset_reset="earliest", enable_auto_commit=False, max_poll_records=5000)  # fmt: skip
    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=5)
    seen, start = 0, None
    deadline = time.monotonic() + 600
    while seen < records and time.monotonic() < deadline:
        for batch in consumer.poll(timeout_ms=500).values():
            start = start or time.perf_counter()
            for m in batch:
                producer.send("bench.passthrough", key=m.key, value=m.value)
            seen += len(batch)
    producer.flush(timeout=300)
    elapsed = time.perf_counter() - (start or time.perf_counter())
    consumer.close()
    producer.close()
    if seen < records:
        msg = f"passthrough read {seen} of {records} records"
        raise RuntimeError(msg)
    return records / elapsed


def event_times(bootstrap: str, expected: set[str], timeout_s: float) -> dict[str, int]:
    """Kafka timestamp (ms) of the first copy of each lifecycle event; returns once all expected arrived,
    or when nothing new came for 20 s."""
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, auto_offset_reset="earliest",
                             fetch_max_wait_ms=100)  # fmt: skip
    partitions = [TopicPartition(LIFECYCLE_TOPIC, p) for p in consumer.partitions_for_topic(LIFECYCLE_TOPIC) or ()]
    consumer.assign(partitions)
    consumer.seek_to_beginning(*partitions)
    seen: dict[str, int] = {}
    last_new = time.monotonic()
    deadline = time.monotonic() + timeout_s
    while not expected <= seen.keys() and time.monotonic() < deadline and time.monotonic() - last_new < 20:
        for batch in consumer.poll(timeout_ms=500).values():
            for m in batch:
                event_id = orjson.loads(m.value)["event_id"]
                if event_id not in seen:
                    seen[event_id] = m.timestamp
                    last_new = time.monotonic()
    consumer.close()
    return seen


def middle_rate(times_ms: list[int], fraction: float = 0.8) -> float:
    """Items per second over the middle `fraction` of their arrival times."""
    times = sorted(times_ms)
    lo, hi = int(len(times) * (1 - fraction) / 2), int(len(times) * (1 + fraction) / 2) - 1
    span_s = (times[hi] - times[lo]) / 1000
    return (hi - lo) / span_s if span_s > 0 else float("inf")


def dataflow_run(envelopes: list[Envelope], expected: set[str], processes: int) -> DataflowRun:
    with scratch_stack("tidemark-bench-", capture=False, dataflow=False, dataflow_processes=processes) as stack:
        ensure_topics(stack.settings.kafka_bootstrap, stack.all_topics())
        preload(stack.settings.kafka_bootstrap, envelopes)
        stack.start_dataflow(echo=lambda _l: None)
        times = event_times(stack.settings.kafka_bootstrap, expected, timeout_s=900)
        rss = _dataflow_rss(stack)
    events_per_s = middle_rate(list(times.values()))
    return DataflowRun(processes, events_per_s * len(envelopes) / len(expected), events_per_s, len(times.keys() & expected),
                       len(expected), rss)  # fmt: skip


def _dataflow_rss(stack: LocalStack) -> list[int]:
    out = []
    for name in stack.dataflow_names():
        record = stack.table.running(name)
        out.append(rss_bytes(record.pid) if record else 0)
    return out


def run(changes: int = 100_000, customers: int = 20_000, runs: int = 1) -> DataflowResult:
    envelopes = list(generate(changes, customers))
    expected = offline_events(envelopes)
    topics = sorted({e.topic for e in envelopes})
    with scratch_stack("tidemark-bench-", capture=False, dataflow=False) as stack:
        ensure_topics(stack.settings.kafka_bootstrap, stack.all_topics())
        preload(stack.settings.kafka_bootstrap, envelopes)
        ceiling = statistics.median(passthrough(stack.settings.kafka_bootstrap, topics, len(envelopes)) for _ in range(3))
    results = [dataflow_run(envelopes, expected, processes) for _ in range(runs) for processes in (1, 2)]
    return DataflowResult(changes, customers, ceiling, results)
