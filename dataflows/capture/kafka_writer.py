"""Write one Debezium batch to Kafka and return only when the broker acknowledged every record.

The embedded engine commits a batch's offsets only after the handler returns, so raising here on any
failed send means the batch is captured again after a restart: at-least-once, nothing lost.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable
from dataclasses import dataclass

from kafka import KafkaAdminClient, KafkaProducer
from kafka.admin import NewTopic
from kafka.errors import KafkaError, KafkaTimeoutError, TopicAlreadyExistsError
from kafka.partitioner.default import murmur2

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class OutRecord:
    topic: str
    key: bytes | None
    value: bytes | None  # None: a tombstone


class DeliveryError(RuntimeError):
    """Some records of a batch were not acknowledged by Kafka."""


class KafkaBatchWriter:
    """An acks=all producer, one request in flight (order kept without idempotence), that creates topics
    with a fixed partition count on first use.

    Not idempotent on purpose: the local broker (Tansu, s3 storage) records an idempotent producer's
    sequence before it stores the batch, so after a kill -9 between the two the producer's retry is
    answered DUPLICATE_SEQUENCE_NUMBER, which clients take as success: acknowledged records were lost
    (tests/integration/test_broker_durability.py). A plain retry can only duplicate, which the
    dataflow's dedupe absorbs."""

    def __init__(self, bootstrap: str, partitions: int, *, client_id: str, timeout_s: float = 15.0) -> None:
        self.bootstrap = bootstrap
        self.partitions = partitions
        self.timeout_s = timeout_s
        self.client_id = client_id
        self._known_topics: set[str] = set()
        self._producer = self._new_producer()
        self._admin = KafkaAdminClient(bootstrap_servers=bootstrap, client_id=f"{client_id}-admin")

    def _new_producer(self) -> KafkaProducer:
        return KafkaProducer(
            bootstrap_servers=self.bootstrap,
            client_id=self.client_id,
            acks="all",
            enable_idempotence=False,
            max_in_flight_requests_per_connection=1,
            linger_ms=5,
            batch_size=256 * 1024,
            max_request_size=8 * 1024 * 1024,
            retries=2**31 - 1,
            request_timeout_ms=10_000,  # kafka-python requires delivery > linger + request timeout
            delivery_timeout_ms=int(self.timeout_s * 1000),
        )

    def ensure_topics(self, topics: Iterable[str]) -> None:
        new = sorted(set(topics) - self._known_topics)
        if not new:
            return
        existing = set(self._admin.list_topics())
        to_create = [NewTopic(t, self.partitions, 1) for t in new if t not in existing]
        if to_create:
            try:
                self._admin.create_topics(to_create)
            except TopicAlreadyExistsError:
                pass
            log.info("created topics %s with %d partitions", [t.name for t in to_create], self.partitions)
        self._known_topics.update(new)

    def _partition(self, topic: str, key: bytes | None) -> int | None:
        """Kafka's default partitioner over at most the partitions we create topics with: a broker that
        lost its topics auto-creates them on first use with its own count (Tansu: 4), and a record in a
        partition beyond ours would never be read by the dataflow."""
        if key is None:
            return None
        available = len(self._producer.partitions_for(topic) or ()) or self.partitions
        return (murmur2(key) & 0x7FFFFFFF) % min(available, self.partitions)

    def write_with_retry(self, records: list[OutRecord], attempts: int = 4) -> None:
        """`write`, resending the whole batch on a fresh producer after a failed delivery (duplicates are
        fine downstream; loss is not). Raises the last DeliveryError when every attempt failed.
        Seen in CI: a new idempotent producer's first send to a just-created topic of the local broker
        sometimes never completes, while a fresh producer succeeds at once; hence short attempts."""
        for attempt in range(1, attempts + 1):
            try:
                self.write(records)
                return
            except (DeliveryError, KafkaError) as e:  # KafkaError: metadata or topic creation timed out
                if attempt == attempts:
                    raise
                log.warning("batch delivery failed (attempt %d of %d): %s; resending on a new producer", attempt, attempts, e)
                self._producer.close(timeout=5)
                self._producer = self._new_producer()

    def write(self, records: list[OutRecord]) -> None:
        """Send every record and wait for all acknowledgements; raise DeliveryError on any failure."""
        self.ensure_topics(r.topic for r in records)
        futures = [self._producer.send(r.topic, key=r.key, value=r.value, partition=self._partition(r.topic, r.key))
                   for r in records]  # fmt: skip
        try:
            self._producer.flush(timeout=self.timeout_s)
        except KafkaTimeoutError as e:  # the flush itself gave up: records not acknowledged in time
            msg = f"{len(records)} records not acknowledged by Kafka within {self.timeout_s:.0f}s"
            raise DeliveryError(msg) from e
        failed = [f for f in futures if not f.succeeded()]
        if failed:
            first = failed[0].exception if failed[0].is_done else "not acknowledged in time"
            msg = f"{len(failed)} of {len(records)} records not acknowledged by Kafka: {first}"
            raise DeliveryError(msg)

    def close(self) -> None:
        try:
            self._producer.close(timeout=10)
        finally:
            self._admin.close()


def connect_with_retry(factory: type[KafkaBatchWriter], *args: object, deadline_s: float = 60.0,
                       **kwargs: object) -> KafkaBatchWriter:  # fmt: skip
    """Build the writer, retrying while the broker is unreachable; log every attempt."""
    start = time.monotonic()
    delay = 0.5
    while True:
        try:
            return factory(*args, **kwargs)  # type: ignore[arg-type]
        except KafkaError as e:
            if time.monotonic() - start > deadline_s:
                raise
            log.warning("Kafka at %s unreachable (%s); retrying in %.1fs", args[0] if args else "?", e, delay)
            time.sleep(delay)
            delay = min(delay * 2, 5.0)
