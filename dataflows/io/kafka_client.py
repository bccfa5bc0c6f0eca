"""confluent-kafka (librdkafka) clients for the hot paths, configured in librdkafka's property names.

Users pass extra client properties (TLS, SASL, tuning) through `TIDEMARK_KAFKA_PROPERTIES`, a JSON object
of librdkafka properties. Properties that carry Tidemark's delivery guarantees are set here and refused
from users; a secret-bearing property must be a `${env:NAME}` or `${file:PATH:KEY}` reference, resolved
only when a client is built, so settings, logs and status never hold a secret.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from confluent_kafka import KafkaError, KafkaException, Producer
from confluent_kafka.admin import AdminClient, NewTopic

from dataflows.config.secrets import SecretError, is_reference_only, is_secret_key, resolve

log = logging.getLogger(__name__)
rdkafka_log = logging.getLogger("dataflows.io.rdkafka")

# Set by Tidemark because its guarantees depend on them: acks=all and one request in flight (order kept
# without idempotence), offsets only from Bytewax snapshots, an out-of-range offset an error (never a jump).
OWNED = frozenset({
    "bootstrap.servers", "metadata.broker.list", "client.id", "group.id", "acks", "request.required.acks",
    "enable.idempotence", "max.in.flight", "max.in.flight.requests.per.connection", "transactional.id",
    "enable.auto.commit", "enable.auto.offset.store", "auto.offset.reset", "enable.partition.eof",
    "enable.gapless.guarantee", "partitioner",
})  # fmt: skip

REPLAY_HEADER = "tidemark-replay-of"  # set by `tidemark dlq replay` on each record it re-injects


class KafkaConfigError(ValueError):
    """A client property Tidemark cannot accept; the message never contains a secret value."""


def check_properties(properties: Mapping[str, str]) -> None:
    """Refuse owned properties and literal secrets; unknown names are refused when a client is built."""
    for key, value in properties.items():
        if key in OWNED:
            msg = f"Kafka property {key!r} is set by Tidemark (delivery guarantees) and cannot be overridden"
            raise KafkaConfigError(msg)
        if is_secret_key(key) and not is_reference_only(str(value)):
            msg = f"Kafka property {key!r} holds a secret: give it as ${{env:NAME}} or ${{file:PATH:KEY}}"
            raise KafkaConfigError(msg)


def client_config(bootstrap: str, properties: Mapping[str, str] | None, **owned: Any) -> dict[str, Any]:
    """Tidemark's defaults, then the user's properties (references resolved), then the owned ones."""
    user = dict(properties or {})
    check_properties(user)
    try:
        resolved = {k: resolve(str(v)) for k, v in user.items()}
    except SecretError as e:
        raise KafkaConfigError(f"Kafka properties: {e}") from None
    # librdkafka's log lines go through Python logging, never straight to stderr.
    return {"bootstrap.servers": bootstrap, "logger": rdkafka_log, **resolved,
            **{k.replace("_", "."): v for k, v in owned.items()}}  # fmt: skip


def build(factory: Any, config: dict[str, Any]) -> Any:
    """A client from `config`; a refused property becomes KafkaConfigError with every secret scrubbed."""
    try:
        return factory(config)
    except (KafkaException, ValueError, TypeError) as e:
        text = str(e.args[0].str() if isinstance(e, KafkaException) and e.args else e)
        for key, value in config.items():
            if is_secret_key(key) and isinstance(value, str) and value:
                text = text.replace(value, "********")
        raise KafkaConfigError(f"Kafka client configuration refused: {text}") from None


def producer_config(bootstrap: str, properties: Mapping[str, str] | None, *, client_id: str,
                    delivery_timeout_s: float) -> dict[str, Any]:  # fmt: skip
    """acks=all, one request in flight, not idempotent: see README, "Kafka clients" (the local broker lost
    acknowledged records of idempotent producers on a kill -9)."""
    config = {"linger.ms": 5, "batch.size": 1024 * 1024, "message.max.bytes": 8 * 1024 * 1024,
              "partitioner": "murmur2_random",  # the Java client's default: see KeyPartitioner
              "socket.connection.setup.timeout.ms": 10_000,
              "reconnect.backoff.max.ms": 2000, "message.timeout.ms": int(delivery_timeout_s * 1000)}  # fmt: skip
    config.update(client_config(bootstrap, properties, client_id=client_id, acks="all", enable_idempotence=False,
                                max_in_flight=1))  # fmt: skip
    return config


@dataclass(frozen=True, slots=True)
class Outgoing:
    topic: str
    key: bytes | None
    value: bytes | None  # None: a tombstone
    partition: int = -1  # -1: librdkafka's partitioner
    headers: tuple[tuple[str, bytes], ...] = ()


@dataclass
class Delivery:
    """What the broker answered for one batch."""

    sent: int
    failed: int = 0
    first_error: str | None = None

    def report(self, err: KafkaError | None, _msg: object) -> None:
        if err is not None:
            self.failed += 1
            self.first_error = self.first_error or str(err)


def deliver(producer: Producer, records: Iterable[Outgoing], timeout_s: float) -> Delivery:
    """Send every record and wait until the broker acknowledged or refused each, or `timeout_s` passed:
    records still unanswered then count as failed."""
    delivery = Delivery(0)
    report = delivery.report
    produce = producer.produce
    for r in records:
        while True:
            try:
                produce(r.topic, r.value, r.key, r.partition, report, headers=list(r.headers) if r.headers else None)
                break
            except BufferError:  # the local queue is full: serve delivery reports, then try again
                producer.poll(0.05)
        delivery.sent += 1
    unanswered = producer.flush(timeout_s)
    if unanswered:
        delivery.failed += unanswered
        delivery.first_error = delivery.first_error or f"{unanswered} not acknowledged within {timeout_s:.0f}s"
    return delivery


def discard(producer: Producer) -> None:
    """Drop a producer whose batch failed: what it still holds is purged (the batch is resent on a fresh
    producer; a record that reached the broker meanwhile is a duplicate, which downstream dedupe absorbs)."""
    try:
        producer.purge()
        producer.flush(0)
    except (KafkaException, RuntimeError) as e:
        log.warning("discarding a producer failed: %s", e)


def ensure_topics(bootstrap: str, topics: Mapping[str, int], properties: Mapping[str, str] | None = None, *,
                  compacted: Iterable[str] = (), timeout_s: float = 15.0) -> list[str]:  # fmt: skip
    """Create the missing topics (name -> partitions; `compacted` ones compacted by key); returns those
    created. Raises KafkaException when the broker does not answer in time."""
    admin = build(AdminClient, client_config(bootstrap, properties, client_id="tidemark-admin"))
    existing = set(admin.list_topics(timeout=timeout_s).topics)
    keep = set(compacted)
    new = [NewTopic(t, n, 1, config={"cleanup.policy": "compact"} if t in keep else {})
           for t, n in sorted(topics.items()) if t not in existing]  # fmt: skip
    if not new:
        return []
    created = []
    for topic, future in admin.create_topics(new, request_timeout=timeout_s).items():
        try:
            future.result(timeout=timeout_s)
            created.append(topic)
        except KafkaException as e:
            if e.args[0].code() != KafkaError.TOPIC_ALREADY_EXISTS:
                raise
    return created


def topic_id_text(topic_id: Any) -> str | None:
    """A topic id as a UUID string (what snapshots keep), None when the broker sends none (all zeros)."""
    if topic_id is None:
        return None
    msb = topic_id.get_most_significant_bits() & 0xFFFFFFFFFFFFFFFF
    lsb = topic_id.get_least_significant_bits() & 0xFFFFFFFFFFFFFFFF
    value = uuid.UUID(int=(msb << 64) | lsb)
    return str(value) if value.int else None


def murmur2(data: bytes) -> int:
    """Kafka's default partitioner hash (Java's Utils.murmur2), as an unsigned 32-bit value."""
    length, seed, m, r = len(data), 0x9747B28C, 0x5BD1E995, 24
    h = (seed ^ length) & 0xFFFFFFFF
    for i in range(0, length - length % 4, 4):
        k = (data[i] | data[i + 1] << 8 | data[i + 2] << 16 | data[i + 3] << 24) * m & 0xFFFFFFFF
        k = (k ^ (k >> r)) * m & 0xFFFFFFFF
        h = (h * m & 0xFFFFFFFF) ^ k
    tail = length % 4
    base = length - tail
    if tail >= 3:
        h ^= data[base + 2] << 16
    if tail >= 2:
        h ^= data[base + 1] << 8
    if tail >= 1:
        h = (h ^ data[base]) * m & 0xFFFFFFFF
    h = (h ^ (h >> 13)) * m & 0xFFFFFFFF
    return h ^ (h >> 15)


class KeyPartitioner:
    """Kafka's default partition of a key (murmur2, as the Java client) among at most `partitions` of a
    topic: a broker that lost its topics auto-creates them on first use with its own count (Tansu: 4), and
    a record in a partition beyond ours would never be read. librdkafka computes it (`murmur2_random`)
    when the topic has no more partitions than ours; Python (about 17 us a key) only otherwise."""

    def __init__(self, partitions: int, timeout_s: float) -> None:
        self.partitions, self.timeout_s = partitions, timeout_s
        self._counts: dict[str, int] = {}  # topic -> partitions the broker reports (0: not known)

    def __call__(self, producer: Producer, topic: str, key: bytes | None) -> int:
        available = self._counts.get(topic)
        if available is None:
            meta = producer.list_topics(topic, timeout=self.timeout_s).topics.get(topic)
            available = len(meta.partitions) if meta is not None and meta.error is None else 0
            self._counts[topic] = available
        if key is None or 0 < available <= self.partitions:
            return -1  # librdkafka's partitioner (random for a null key)
        return partition_for(key, min(available or self.partitions, self.partitions))

    def forget(self) -> None:
        """Ask the broker again (after a failed batch: it may have lost and recreated topics)."""
        self._counts.clear()


@lru_cache(maxsize=1 << 16)
def partition_for(key: bytes, partitions: int) -> int:
    """Kafka's default partition for `key` among `partitions` (what the Java client picks). Cached: a
    customer's id recurs in its record, events and governance."""
    return (murmur2(key) & 0x7FFFFFFF) % partitions
