"""Bytewax sinks: Kafka (confluent-kafka, acks=all, the partition we compute, delivery confirmed per batch)
and the SQL targets. Each write_batch returns only when its writes are durable, so Bytewax's snapshot
after it never records progress past data that could still be lost."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from typing import Any, Protocol

from bytewax.outputs import DynamicSink, StatelessSinkPartition
from confluent_kafka import Producer

from dataflows import metrics
from dataflows.io import kafka_client
from dataflows.io.kafka_client import KeyPartitioner, Outgoing, build, deliver, discard, producer_config
from dataflows.outputs import COMPACTED_TOPICS, KafkaOut

log = logging.getLogger(__name__)


def ensure_topics(bootstrap: str, topics: dict[str, int], properties: Mapping[str, str] | None = None) -> None:
    """Create missing topics (name -> partitions); the customers topic is compacted by key."""
    kafka_client.ensure_topics(bootstrap, topics, properties, compacted=COMPACTED_TOPICS)


class _KafkaPartition(StatelessSinkPartition[KafkaOut]):
    ATTEMPTS = 4
    DELIVERY_TIMEOUT_S = 20.0

    def __init__(self, bootstrap: str, partitions: int, client_id: str, properties: Mapping[str, str]) -> None:
        # Not idempotent, one request in flight: see KafkaBatchWriter (the local broker can lose records an
        # idempotent producer had acknowledged when it is killed); a resend can only duplicate.
        self.config = producer_config(bootstrap, properties, client_id=client_id,
                                      delivery_timeout_s=self.DELIVERY_TIMEOUT_S)  # fmt: skip
        self.producer = build(Producer, self.config)
        self.partition = KeyPartitioner(partitions, self.DELIVERY_TIMEOUT_S)

    def _outgoing(self, items: list[KafkaOut]) -> list[Outgoing]:
        partition, producer = self.partition, self.producer
        return [Outgoing(r.topic, key := r.key.encode(), r.value, partition(producer, r.topic, key), r.headers)
                for r in items]  # fmt: skip

    def write_batch(self, items: list[KafkaOut]) -> None:
        """Resend the whole batch on a fresh producer after a failed delivery (duplicates are harmless,
        loss is not): a broker that lost its state no longer knows this producer; a new one starts clean."""
        records = self._outgoing(items)
        for attempt in range(1, self.ATTEMPTS + 1):
            delivery = deliver(self.producer, records, self.DELIVERY_TIMEOUT_S + 10)
            if not delivery.failed:
                break
            metrics.SINK_ERRORS.labels("kafka").inc(delivery.failed)
            if attempt == self.ATTEMPTS:
                msg = f"{delivery.failed} of {len(items)} output records not acknowledged after {self.ATTEMPTS} attempts"
                raise RuntimeError(msg)  # crash and replay from the last snapshot rather than lose them
            log.warning("%d of %d output records not acknowledged (%s); resending on a new producer (attempt %d of %d)",
                        delivery.failed, len(items), delivery.first_error, attempt + 1, self.ATTEMPTS)  # fmt: skip
            discard(self.producer)
            self.producer = build(Producer, self.config)
            self.partition.forget()
            records = self._outgoing(items)
        metrics.SINK_WRITES.labels("kafka").inc(len(items))
        now = time.time()
        for r in items:
            if r.commit_ts is not None:
                metrics.E2E_LATENCY.labels(r.topic).observe(now - r.commit_ts)

    def close(self) -> None:
        self.producer.flush(10)


class KafkaOutputSink(DynamicSink[KafkaOut]):
    """`properties`: the user's librdkafka properties (TLS, SASL, tuning), see io/kafka_client.py."""

    def __init__(self, bootstrap: str, partitions: int, properties: Mapping[str, str] | None = None) -> None:
        self.bootstrap, self.partitions, self.properties = bootstrap, partitions, dict(properties or {})

    def build(self, step_id: str, worker_index: int, worker_count: int) -> _KafkaPartition:
        return _KafkaPartition(self.bootstrap, self.partitions, f"tidemark-dataflow-{worker_index}", self.properties)


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
