"""Read topics of the real broker from the beginning (tests, `tidemark chaos`)."""

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
