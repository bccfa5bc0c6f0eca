"""Dataflow throughput: capture topics in, every output acknowledged (Kafka topics, customer_360, CRM
write-back), with one process and with two, each beside a ceiling measured on the same broker just
before: a confluent-kafka (librdkafka) consumer that reads the same records and produces each to
another topic, idempotent with acks=all (consume-and-produce passthrough).

Each run gets a fresh local stack (PostgreSQL, MariaDB, broker; no captures) whose capture topics are
preloaded with the workload's envelopes before the dataflow starts, so the dataflow, not the source,
sets the pace. The dataflow processes' own counters of acknowledged writes are sampled every 0.25 s
from the moment every process reads; the rate counts until 90% of the run's writes are acknowledged
(start-up and the final idle flush excluded). The run counts only when the dataflow drained every capture record and
every expected lifecycle event is on its topic: the expected set comes from the same envelopes
processed offline by one core.
"""

from __future__ import annotations

import sys
import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass

import orjson
from confluent_kafka import Consumer, Producer, TopicPartition

from dataflows.bench.core_bench import offline_events
from dataflows.bench.workload import Envelope, generate
from dataflows.io.sinks import ensure_topics
from dataflows.memory import rss_bytes
from dataflows.outputs import LIFECYCLE_TOPIC
from dataflows.stack.local import LocalStack
from dataflows.stack.scrape import last_error, scrape
from dataflows.stack.scratch import scratch_stack

PASSTHROUGH_TOPIC = "bench.passthrough"
PRODUCER = {"enable.idempotence": True, "acks": "all", "linger.ms": 5, "batch.size": 1_000_000,
            "queue.buffering.max.messages": 1_000_000}  # fmt: skip


@dataclass(frozen=True)
class DataflowRun:
    processes: int
    changes: int
    changes_per_s: float  # with every output acknowledged
    passthrough_per_s: float  # the ceiling, same stack, just before
    outputs: int  # writes acknowledged, all targets
    events: int  # expected lifecycle events found on the topic (all of them, or the run fails)
    rss_bytes: tuple[int, ...]  # of each dataflow process at the end


def _producer(bootstrap: str) -> Producer:
    return Producer({"bootstrap.servers": bootstrap, **PRODUCER})


def _flush(producer: Producer, what: str) -> None:
    if left := producer.flush(300):
        msg = f"{what}: {left} records not acknowledged after 300 s"
        raise RuntimeError(msg)


def preload(bootstrap: str, envelopes: Iterable[Envelope]) -> None:
    producer = _producer(bootstrap)
    for e in envelopes:
        while True:
            try:
                producer.produce(e.topic, key=e.key, value=e.value)
                break
            except BufferError:  # the local queue is full: let deliveries drain it
                producer.poll(0.1)
    _flush(producer, "preload")


def passthrough(bootstrap: str, topics: list[str], records: int) -> float:
    """Records/s of consume-and-produce with confluent-kafka, from the first record read to the last acknowledged."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"bench-passthrough-{uuid.uuid4().hex}",
                         "auto.offset.reset": "earliest", "enable.auto.commit": False})  # fmt: skip
    consumer.subscribe(topics)
    producer = _producer(bootstrap)
    seen, start = 0, None
    deadline = time.monotonic() + 600
    try:
        while seen < records and time.monotonic() < deadline:
            for m in consumer.consume(num_messages=1000, timeout=0.05):  # returns once 1,000 are there
                if m.error():
                    continue
                start = start or time.perf_counter()
                producer.produce(PASSTHROUGH_TOPIC, key=m.key(), value=m.value())
                seen += 1
            producer.poll(0)
        _flush(producer, "passthrough")
        elapsed = time.perf_counter() - (start or time.perf_counter())
    finally:
        consumer.close()
    if seen < records:
        msg = f"passthrough read {seen} of {records} records"
        raise RuntimeError(msg)
    return records / elapsed


def lifecycle_event_ids(bootstrap: str, expected: set[str], quiet_s: float = 20.0) -> set[str]:
    """Ids of the lifecycle events on their topic; returns once all expected are seen, or when nothing new
    came for `quiet_s`."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"bench-events-{uuid.uuid4().hex}",
                         "auto.offset.reset": "earliest", "enable.auto.commit": False})  # fmt: skip
    partitions = consumer.list_topics(LIFECYCLE_TOPIC, timeout=30).topics[LIFECYCLE_TOPIC].partitions
    consumer.assign([TopicPartition(LIFECYCLE_TOPIC, p, 0) for p in partitions])
    seen: set[str] = set()
    last_new = time.monotonic()
    try:
        while not expected <= seen and time.monotonic() - last_new < quiet_s:
            for m in consumer.consume(num_messages=10_000, timeout=0.5):
                if not m.error():
                    seen.add(orjson.loads(m.value())["event_id"])
                    last_new = time.monotonic()
    finally:
        consumer.close()
    return seen


@dataclass(frozen=True)
class Sample:
    at: float  # monotonic seconds
    acknowledged: int  # writes acknowledged by every sink of every process
    drained: bool  # every process read all its capture records and released its reorder buffer
    events: int = 0  # lifecycle events the cores emitted, all processes


def sample(urls: list[str]) -> Sample | None:
    """One reading of every dataflow process's counters; None while a process does not answer yet."""
    at = time.monotonic()
    names = ("tidemark_sink_writes_total", "tidemark_consumer_lag_messages", "tidemark_reorder_buffer_depth",
             "tidemark_lifecycle_events_total")  # fmt: skip
    totals = dict.fromkeys(names, 0.0)
    for url in urls:
        samples = scrape(url)
        if not samples or "tidemark_consumer_lag_messages" not in samples:
            return None
        for name in totals:
            totals[name] += sum(v for _, v in samples.get(name, []))
    drained = totals["tidemark_consumer_lag_messages"] == 0 and totals["tidemark_reorder_buffer_depth"] == 0
    return Sample(at, int(totals["tidemark_sink_writes_total"]), drained,
                  int(totals["tidemark_lifecycle_events_total"]))


def exited(stack: LocalStack) -> str | None:
    """Why a dataflow process of the stack is no longer running (its newest error), or None while all run."""
    for name in stack.dataflow_names():
        if stack.table.running(name) is None:
            return f"{name} exited: {last_error(stack.table.log_dir / f'{name}.log') or 'no error logged'}"
    return None


def watch(stack: LocalStack, timeout_s: float, events: int, quiet_s: float = 3.0) -> list[Sample]:
    """Samples every 0.25 s until the dataflow drained, its cores emitted the `events` lifecycle events the
    workload yields, and no write was acknowledged for `quiet_s`. Drained alone is not enough: with two
    processes, the customer step can still hold work (handed over, not yet applied) while nothing is
    lagging or buffered, and a pause longer than `quiet_s` there (a snapshot) ended runs early and
    reported 13,000 changes/s from a sixth of the writes."""
    urls = [stack.dataflow_metrics_url(i) for i in range(len(stack.dataflow_names()))]
    samples: list[Sample] = []
    changed_at = deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if problem := exited(stack):
            raise RuntimeError(problem)
        s = sample(urls)
        if s is not None:
            if not samples or s.acknowledged != samples[-1].acknowledged:
                changed_at = s.at
            samples.append(s)
            if s.drained and s.events >= events and s.acknowledged and s.at - changed_at >= quiet_s:
                return samples
        time.sleep(0.25)
    msg = f"the dataflow did not drain within {timeout_s:.0f} s"
    raise TimeoutError(msg)


def acknowledged_rate(samples: list[Sample], changes: int, share: float = 0.9) -> float:
    """Changes/s from the first sample (every process reading) to the first with `share` of the run's writes
    acknowledged, counting the changes behind the writes acknowledged by then. The rest is left out: it
    holds the final flush, released only when the input has been idle for the reorder's idle timeout.
    Not a middle window: the core releases a batch's outputs at once, so writes come in bursts."""
    total = samples[-1].acknowledged
    done = next(s for s in samples if s.acknowledged >= share * total)
    if done.at <= samples[0].at:
        msg = "the writes were acknowledged before the first sample: use more changes"
        raise RuntimeError(msg)
    return done.acknowledged / total * changes / (done.at - samples[0].at)


def dataflow_run(envelopes: list[Envelope], expected: set[str], processes: int) -> DataflowRun:
    with scratch_stack("tidemark-bench-", capture=False, dataflow=False, dataflow_processes=processes) as stack:
        bootstrap = stack.settings.kafka_bootstrap
        ensure_topics(bootstrap, {**stack.all_topics(), PASSTHROUGH_TOPIC: stack.settings.topic_partitions})
        preload(bootstrap, envelopes)
        ceiling = passthrough(bootstrap, sorted({e.topic for e in envelopes}), len(envelopes))
        stack.start_dataflow(echo=lambda _l: None)
        samples = watch(stack, timeout_s=900, events=len(expected))
        found = lifecycle_event_ids(bootstrap, expected) & expected
        rss = tuple(_rss(stack, name) for name in stack.dataflow_names())
    if len(found) != len(expected):
        msg = f"{processes} process(es): {len(found)} of {len(expected)} expected lifecycle events on {LIFECYCLE_TOPIC}"
        raise RuntimeError(msg)
    outputs = samples[-1].acknowledged
    return DataflowRun(processes, len(envelopes), acknowledged_rate(samples, len(envelopes)), ceiling, outputs,
                       len(found), rss)  # fmt: skip


def _rss(stack: LocalStack, name: str) -> int:
    record = stack.table.running(name)
    return rss_bytes(record.pid) if record else 0


def workload(changes: int, customers: int) -> tuple[list[Envelope], set[str]]:
    """The envelopes every run preloads, and the lifecycle event ids one core derives from them offline."""
    envelopes = list(generate(changes, customers))
    return envelopes, offline_events(envelopes)


def main(changes: int, customers: int, processes: list[int]) -> None:
    """The dataflow at a size of one's own, one JSON line per run: `python -m dataflows.bench.dataflow_bench
    CHANGES CUSTOMERS PROCESSES...` (the README's steady-state rows: 60000 12000 1 2)."""
    envelopes, expected = workload(changes, customers)
    for n in processes:
        r = dataflow_run(envelopes, expected, n)
        print(orjson.dumps({"processes": n, "changes": changes, "customers": customers, "changes_per_s": r.changes_per_s,
                            "passthrough_per_s": r.passthrough_per_s, "outputs": r.outputs,
                            "lifecycle_events": r.events, "rss_bytes": list(r.rss_bytes)}).decode(), flush=True)  # fmt: skip


if __name__ == "__main__":
    main(int(sys.argv[1]), int(sys.argv[2]), [int(p) for p in sys.argv[3:]] or [1])
