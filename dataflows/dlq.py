"""The dead-letter queue `tidemark.dlq.v1`: list, show and replay.

Replay re-injects a dead letter's original record into its original capture topic, so it goes through
the same path (decode, map, core) once its cause is fixed. It is idempotent: the core's per-row
high-water marks give a record that was applied meanwhile no second effect, and a record that fails
again is dead-lettered under the same id.
"""

from __future__ import annotations

import base64
import re
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
from kafka import KafkaConsumer, KafkaProducer, TopicPartition

from dataflows.outputs import DLQ_TOPIC


@dataclass(frozen=True)
class DlqFilter:
    since: datetime | None = None
    reason: str | None = None  # error class, or a substring of the reason
    source: str | None = None

    def matches(self, record: dict[str, Any]) -> bool:
        if self.since and datetime.fromisoformat(record["failed_at"]) < self.since:
            return False
        if self.reason and self.reason != record["error_class"] and self.reason not in record["reason"]:
            return False
        return not (self.source and record.get("source") != self.source)


def parse_since(text: str | None) -> datetime | None:
    """'30m', '2h', '1d' ago, or an ISO-8601 time (UTC when no zone is given)."""
    if not text:
        return None
    m = re.fullmatch(r"(\d+)([smhd])", text.strip())
    if m:
        unit = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}[m.group(2)]
        return datetime.now(UTC) - timedelta(**{unit: int(m.group(1))})
    parsed = datetime.fromisoformat(text)
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def read(bootstrap: str, flt: DlqFilter = DlqFilter(), timeout_s: float = 10.0) -> list[dict[str, Any]]:
    """Every dead letter currently on the topic that matches, oldest first, one per id."""
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, fetch_max_wait_ms=100)
    try:
        partitions = [TopicPartition(DLQ_TOPIC, p) for p in sorted(consumer.partitions_for_topic(DLQ_TOPIC) or ())]
        if not partitions:
            return []
        consumer.assign(partitions)
        consumer.seek_to_beginning(*partitions)
        end = consumer.end_offsets(partitions)
        seen: dict[str, dict[str, Any]] = {}
        deadline = time.monotonic() + timeout_s
        while any(consumer.position(tp) < end[tp] for tp in partitions) and time.monotonic() < deadline:
            for records in consumer.poll(timeout_ms=200).values():
                for r in records:
                    record = orjson.loads(r.value)
                    if flt.matches(record):
                        seen.setdefault(record["dead_letter_id"], record)
        return sorted(seen.values(), key=lambda r: r["failed_at"])
    finally:
        consumer.close()


def _raw(text: str | None, encoding: str) -> bytes | None:
    if text is None:
        return None
    return base64.b64decode(text) if encoding == "base64" else text.encode()


def replay(bootstrap: str, records: list[dict[str, Any]]) -> int:
    """Re-inject the original records into their capture topics; returns how many were sent."""
    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all", enable_idempotence=True)
    try:
        futures = []
        for record in records:
            if not record["topic"]:
                continue
            key = _raw(record["key"], "utf-8")
            value = _raw(record["payload"], record["payload_encoding"])
            headers = [("tidemark-replay-of", record["dead_letter_id"].encode())]
            futures.append(producer.send(record["topic"], key=key, value=value, headers=headers))
        producer.flush(timeout=60)
        failed = [f for f in futures if not f.succeeded()]
        if failed:
            msg = f"{len(failed)} of {len(futures)} replays not acknowledged: {failed[0].exception}"
            raise RuntimeError(msg)
        return len(futures)
    finally:
        producer.close(timeout=10)
