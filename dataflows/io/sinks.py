"""Bytewax sinks: Kafka (idempotent producer, the partition we compute, delivery confirmed per batch)
and the SQL targets. Each write_batch returns only when its writes are durable, so Bytewax's snapshot
after it never records progress past data that could still be lost."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from functools import lru_cache
from typing import Any, Protocol

from bytewax.outputs import DynamicSink, StatelessSinkPartition
from kafka import KafkaAdminClient, KafkaProducer
from kafka.admin import NewTopic
from kafka.errors import KafkaError, TopicAlreadyExistsError
from kafka.partitioner.default import murmur2

from dataflows import metrics
from dataflows.outputs import COMPACTED_TOPICS, KafkaOut

log = logging.getLogger(__name__)


@lru_cache(maxsize=1 << 16)
def partition_for(key: str, partitions: int) -> int:
    """Kafka's default partitioner (murmur2, positive), computed here so it is honoured explicitly.
    Cached: a customer's id recurs in its record, events and governance (murmur2 is pure Python here,
    11% of a backlogged dataflow's time uncached)."""
    return (murmur2(key.encode()) & 0x7FFFFFFF) % partitions


def ensure_topics(bootstrap: str, topics: dict[str, int]) -> None:
    """Create missing topics (name -> partitions); the customers topic is compacted by key."""
    admin = KafkaAdminClient(bootstrap_servers=bootstrap, client_id="tidemark-admin")
    try:
        existing = set(admin.list_topics())
        new = [NewTopic(t, n, 1, topic_configs={"cleanup.policy": "compact"} if t in COMPACTED_TOPICS else {})
               for t, n in topics.items() if t not in existing]  # fmt: skip
        if new:
            try:
                admin.create_topics(new)
            except TopicAlreadyExistsError:
                pass
    finally:
        admin.close()


class _KafkaPartition(StatelessSinkPartition[KafkaOut]):
    ATTEMPTS = 4

    def __init__(self, bootstrap: str, partitions: int, client_id: str) -> None:
        self.bootstrap, self.partitions, self.client_id = bootstrap, partitions, client_id
        self.producer = self._new_producer()

    def _new_producer(self) -> KafkaProducer:
        # Not idempotent, one request in flight: see KafkaBatchWriter (the local broker can lose records an
        # idempotent producer had acknowledged when it is killed); a resend can only duplicate.
        return KafkaProducer(bootstrap_servers=self.bootstrap, client_id=self.client_id, acks="all",
                             enable_idempotence=False, max_in_flight_requests_per_connection=1,
                             linger_ms=5, retries=2**31 - 1,
                             batch_size=256 * 1024,  # fewer, fuller requests: kafka-python's sender is pure Python
                             request_timeout_ms=8_000, delivery_timeout_ms=20_000,  # > linger + request timeout
                             max_request_size=8 * 1024 * 1024)  # fmt: skip

    def _send(self, items: list[KafkaOut]) -> list[Any]:
        futures = [
            self.producer.send(r.topic, key=r.key.encode(), value=r.value, headers=list(r.headers),
                               partition=partition_for(r.key, self.partitions))  # fmt: skip
            for r in items
        ]
        try:
            self.producer.flush(timeout=30)  # beyond the delivery timeout: every future is done by then
        except KafkaError as e:  # the flush itself gave up (KafkaTimeoutError): what is not done failed
            log.warning("flush of %d output records failed: %s", len(items), e)
        return [f for f in futures if not f.succeeded()]

    def write_batch(self, items: list[KafkaOut]) -> None:
        """Resend the whole batch on a fresh producer after a failed delivery (duplicates are harmless,
        loss is not): a broker that lost its state no longer knows this producer's id, and kafka-python
        then retries UnknownProducerId until the delivery timeout; a new producer gets a new id at once."""
        for attempt in range(1, self.ATTEMPTS + 1):
            failed = self._send(items)
            if not failed:
                break
            metrics.SINK_ERRORS.labels("kafka").inc(len(failed))
            if attempt == self.ATTEMPTS:
                msg = f"{len(failed)} of {len(items)} output records not acknowledged after {self.ATTEMPTS} attempts"
                raise RuntimeError(msg)  # crash and replay from the last snapshot rather than lose them
            reason = failed[0].exception if failed[0].is_done else "not acknowledged in time"
            log.warning("%d of %d output records not acknowledged (%s); resending on a new producer (attempt %d of %d)",
                        len(failed), len(items), reason, attempt + 1, self.ATTEMPTS)  # fmt: skip
            try:
                self.producer.close(timeout=5)
            except KafkaError as e:
                log.warning("closing the old producer failed: %s", e)
            self.producer = self._new_producer()
        metrics.SINK_WRITES.labels("kafka").inc(len(items))
        now = time.time()
        for r in items:
            if r.commit_ts is not None:
                metrics.E2E_LATENCY.labels(r.topic).observe(now - r.commit_ts)

    def close(self) -> None:
        self.producer.close(timeout=10)


class KafkaOutputSink(DynamicSink[KafkaOut]):
    def __init__(self, bootstrap: str, partitions: int) -> None:
        self.bootstrap, self.partitions = bootstrap, partitions

    def build(self, step_id: str, worker_index: int, worker_count: int) -> _KafkaPartition:
        return _KafkaPartition(self.bootstrap, self.partitions, f"tidemark-dataflow-{worker_index}")


class Writer(Protocol):
    def write(self, items: list[Any]) -> Any: ...
    def close(self) -> None: ...


class _WriterPartition(StatelessSinkPartition[Any]):
    def __init__(self, writer: Writer, target: str) -> None:
        self.writer, self.target = writer, target

    def write_batch(self, items: list[Any]) -> None:
        try:
            self.writer.write(items)
        except Exception:
            metrics.SINK_ERRORS.labels(self.target).inc(len(items))
            raise
        metrics.SINK_WRITES.labels(self.target).inc(len(items))

    def close(self) -> None:
        self.writer.close()


class WriterSink(DynamicSink[Any]):
    """A SQL target: `factory` opens one writer per worker."""

    def __init__(self, target: str, factory: Callable[[], Writer]) -> None:
        self.target, self.factory = target, factory

    def build(self, step_id: str, worker_index: int, worker_count: int) -> _WriterPartition:
        return _WriterPartition(self.factory(), self.target)
