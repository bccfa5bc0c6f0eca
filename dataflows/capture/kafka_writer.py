"""Write one Debezium batch to Kafka and return only when the broker acknowledged every record.

The embedded engine commits a batch's offsets only after the handler returns, so raising here on any
failed send means the batch is captured again after a restart: at-least-once, nothing lost.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from confluent_kafka import KafkaException, Producer

from dataflows.io.kafka_client import KeyPartitioner, Outgoing, build, deliver, discard, ensure_topics, producer_config

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class OutRecord:
    topic: str
    key: bytes | None
    value: bytes | None  # None: a tombstone


class DeliveryError(RuntimeError):
    """Some records of a batch were not acknowledged by Kafka."""


class KafkaBatchWriter:
    """A confluent-kafka producer (acks=all, one request in flight: order kept without idempotence, see
    README "Kafka clients") that creates topics with a fixed partition count on first use.

    Not idempotent on purpose: the local broker (Tansu, s3 storage) records an idempotent producer's
    sequence before it stores the batch, so after a kill -9 between the two the producer's retry is
    answered DUPLICATE_SEQUENCE_NUMBER, which clients take as success: acknowledged records were lost
    (tests/integration/test_broker_durability.py). A plain retry can only duplicate, which the
    dataflow's dedupe absorbs. `properties`: the user's librdkafka properties (TLS, SASL, tuning)."""

    def __init__(self, bootstrap: str, partitions: int, *, client_id: str, timeout_s: float = 15.0,
                 properties: Mapping[str, str] | None = None) -> None:  # fmt: skip
        self.bootstrap, self.partitions, self.timeout_s = bootstrap, partitions, timeout_s
        self.properties = dict(properties or {})
        self._config = producer_config(bootstrap, self.properties, client_id=client_id, delivery_timeout_s=timeout_s)
        self._known_topics: set[str] = set()
        self._partition = KeyPartitioner(partitions, timeout_s)
        self._producer: Producer = build(Producer, self._config)
        self._producer.list_topics(timeout=timeout_s)  # raises KafkaException while the broker is unreachable

    def ensure_topics(self, topics: Iterable[str]) -> None:
        new = sorted(set(topics) - self._known_topics)
        if not new:
            return
        created = ensure_topics(self.bootstrap, dict.fromkeys(new, self.partitions), self.properties,
                                timeout_s=self.timeout_s)  # fmt: skip
        if created:
            log.info("created topics %s with %d partitions", created, self.partitions)
        self._known_topics.update(new)

    def write_with_retry(self, records: list[OutRecord], attempts: int = 4) -> None:
        """`write`, resending the whole batch on a fresh producer after a failed delivery (duplicates are
        fine downstream; loss is not). Raises the last DeliveryError when every attempt failed.
        A broker that lost its state no longer knows the producer; a fresh one starts clean."""
        for attempt in range(1, attempts + 1):
            try:
                self.write(records)
                return
            except (DeliveryError, KafkaException) as e:  # KafkaException: metadata or topic creation timed out
                if attempt == attempts:
                    raise
                log.warning("batch delivery failed (attempt %d of %d): %s; resending on a new producer", attempt, attempts, e)
                discard(self._producer)
                self._producer = build(Producer, self._config)
                self._partition.forget()

    def write(self, records: list[OutRecord]) -> None:
        """Send every record and wait for all acknowledgements; raise DeliveryError on any failure."""
        self.ensure_topics(r.topic for r in records)
        partition, producer = self._partition, self._producer
        delivery = deliver(producer, (Outgoing(r.topic, r.key, r.value, partition(producer, r.topic, r.key))
                                      for r in records), self.timeout_s + 5)  # fmt: skip
        if delivery.failed:
            msg = f"{delivery.failed} of {len(records)} records not acknowledged by Kafka: {delivery.first_error}"
            raise DeliveryError(msg)

    def close(self) -> None:
        left = self._producer.flush(10)
        if left:
            log.warning("closing the Kafka writer with %d records unacknowledged", left)


def connect_with_retry(factory: type[KafkaBatchWriter], *args: object, deadline_s: float = 60.0,
                       **kwargs: object) -> KafkaBatchWriter:  # fmt: skip
    """Build the writer, retrying while the broker is unreachable; log every attempt."""
    start = time.monotonic()
    delay = 0.5
    while True:
        try:
            return factory(*args, **kwargs)  # type: ignore[arg-type]
        except KafkaException as e:
            if time.monotonic() - start > deadline_s:
                raise
            log.warning("Kafka at %s unreachable (%s); retrying in %.1fs", args[0] if args else "?", e, delay)
            time.sleep(delay)
            delay = min(delay * 2, 5.0)
