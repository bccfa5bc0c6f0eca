"""Read topics of the real broker from the beginning (tests, `tidemark chaos`), and audit its offsets."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import orjson
from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaException, TopicPartition

from dataflows.io.kafka_client import build, client_config


@dataclass(frozen=True)
class Message:
    topic: str
    partition: int
    offset: int
    key: Any
    value: Any  # decoded JSON, None for a tombstone
    headers: list[tuple[str, bytes]]


def _key(raw: bytes | None) -> Any:
    """Capture topics have JSON keys; Tidemark's outputs are keyed by the plain golden customer id."""
    if raw is None:
        return None
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError:
        return raw.decode()


class TopicReader:
    """Reads a set of topics from the beginning, accumulating everything seen so far."""

    def __init__(self, bootstrap: str, topics: list[str]) -> None:
        self.topics = topics
        self.messages: list[Message] = []
        self._consumer = build(Consumer, client_config(bootstrap, None, group_id="tidemark-reader",
                                                       enable_auto_commit=False, fetch_wait_max_ms=50))  # fmt: skip
        self._assigned: set[tuple[str, int]] = set()

    def _assign_new_partitions(self) -> None:
        try:
            listed = self._consumer.list_topics(timeout=5).topics
        except KafkaException:
            return  # the broker is away (a chaos fault): read on once it is back
        partitions = {(t, p) for t in self.topics if (m := listed.get(t)) is not None and m.error is None
                      for p in m.partitions}  # fmt: skip
        new = partitions - self._assigned
        if new:
            self._consumer.incremental_assign([TopicPartition(t, p, OFFSET_BEGINNING) for t, p in sorted(new)])
            self._assigned |= new

    def poll(self) -> list[Message]:
        self._assign_new_partitions()
        if not self._assigned:
            time.sleep(0.1)
            return []
        batch = []
        for r in self._consumer.consume(10000, timeout=0.2):
            if r.error() is not None:
                continue  # librdkafka reconnects and refetches by itself
            value = r.value()
            batch.append(Message(r.topic(), r.partition(), r.offset(), _key(r.key()),
                                 orjson.loads(value) if value is not None else None, list(r.headers() or [])))  # fmt: skip
        self.messages.extend(batch)
        return batch

    def wait_for(self, predicate: Callable[[list[Message]], bool], timeout: float, what: str = "") -> list[Message]:
        deadline = time.monotonic() + timeout
        while True:
            self.poll()
            if predicate(self.messages):
                return self.messages
            if time.monotonic() > deadline:
                msg = f"timed out after {timeout:.0f}s waiting for {what or predicate}; saw {len(self.messages)}"
                raise TimeoutError(msg)

    def close(self) -> None:
        self._consumer.close()


@dataclass(frozen=True)
class PartitionOffsets:
    """A partition's end offsets as the broker reports them, against the offsets a fresh reader got."""

    topic: str
    partition: int
    end: int  # ListOffsets (latest): what `end_offsets()` and lag tools see
    fetch_end: int | None  # the high watermark of fetch answers: what a reader's lag is measured against
    read: int  # records read
    next_readable: int  # last offset read + 1 (0 when nothing was read)
    missing: int  # offsets below next_readable never read: holes a consumer jumps over

    @property
    def fetch_end_past_readable(self) -> bool:
        """A reader at next_readable sees lag it can never read: it is never judged idle."""
        return self.fetch_end is not None and self.fetch_end > self.next_readable

    @property
    def end_past_readable(self) -> bool:
        return self.end > self.next_readable

    @property
    def end_below_readable(self) -> bool:
        return self.end < self.next_readable


def audit(topic: str, partition: int, ends: tuple[int, int | None], offsets: set[int]) -> PartitionOffsets:
    """`ends`: (ListOffsets end, fetch high watermark)."""
    next_readable = max(offsets) + 1 if offsets else 0
    return PartitionOffsets(topic, partition, *ends, len(offsets), next_readable, next_readable - len(offsets))


def broker_offsets(bootstrap: str, stuck_s: float = 30.0, bound_s: float = 600.0) -> list[PartitionOffsets]:
    """Every partition of every topic, read from its start until it reached its end offset, or nothing new
    came from it for `stuck_s` (a partition whose end lies past its records never gets there), or `bound_s`
    passed. Judged per partition: a source's heartbeats arriving all the time kept a global "no progress"
    clock from ever running out while another partition could not be read to its end."""
    consumer = build(Consumer, client_config(bootstrap, None, group_id="tidemark-offset-audit",
                                             enable_auto_commit=False, fetch_wait_max_ms=50))  # fmt: skip
    try:
        listed = consumer.list_topics(timeout=10).topics
        keys = sorted((t, p) for t, m in listed.items() if m.error is None for p in m.partitions)
        consumer.assign([TopicPartition(t, p, OFFSET_BEGINNING) for t, p in keys])
        ends = {k: consumer.get_watermark_offsets(TopicPartition(*k), timeout=10)[1] for k in keys}  # ListOffsets
        seen: dict[tuple[str, int], set[int]] = {k: set() for k in keys}
        position = dict.fromkeys(keys, 0)
        started = time.monotonic()
        progress = dict.fromkeys(keys, started)  # per partition: when it last gave a record
        # cached: the high watermark the last fetch answer carried (Tansu's ListOffsets end can be low)
        fetched = lambda k: consumer.get_watermark_offsets(TopicPartition(*k), cached=True)[1]  # noqa: E731
        pending = lambda k, now: position[k] < max(ends[k], fetched(k)) and now - progress[k] < stuck_s  # noqa: E731
        while (now := time.monotonic()) - started < bound_s and any(pending(k, now) for k in keys):
            for m in consumer.consume(10_000, timeout=0.2):
                if m.error() is None:
                    seen[k := (m.topic(), m.partition())].add(m.offset())
                    position[k], progress[k] = m.offset() + 1, time.monotonic()
        return [audit(t, p, (ends[(t, p)], high if (high := fetched((t, p))) >= 0 else None), seen[(t, p)])
                for t, p in keys]  # fmt: skip
    finally:
        consumer.close()
