"""Core outputs -> the records of each destination.

The core's outputs are typed (core/outputs.py). One Destination object per target, all with one contract,
`records(output) -> list`: each Kafka topic family (keyed by golden customer id, tagged with correlation
id, causation id, event type, schema version and source position as headers), customer_360, the CRM
write-back and the dead_letters table. A destination ignores the output types it does not take; nothing
downstream routes by string tags. Bodies are serialized once, by `emit`."""

from __future__ import annotations

import base64
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Generic, TypeVar

import orjson

from dataflows.core.outputs import (
    CustomerRetired,
    DeadLetter,
    GoldenRecordUpdated,
    GovernanceDecision,
    HandOff,
    LifecycleEvent,
    Output,
    typed,
)
from dataflows.core.records import CoreOutput

LIFECYCLE_TOPIC = "tidemark.lifecycle.v1"
CUSTOMERS_TOPIC = "tidemark.customers.v1"
GOVERNANCE_TOPIC = "tidemark.governance.v1"
DLQ_TOPIC = "tidemark.dlq.v1"
OUTPUT_TOPICS = (LIFECYCLE_TOPIC, CUSTOMERS_TOPIC, GOVERNANCE_TOPIC, DLQ_TOPIC)
# Internal: golden records handed between keys of the partitioned core's customer step (flows/partitioned.py).
HANDOFF_TOPIC = "tidemark.internal.handoff.v1"
INTERNAL_TOPICS = (HANDOFF_TOPIC,)
COMPACTED_TOPICS = (CUSTOMERS_TOPIC,)
DLQ_NAMESPACE = uuid.UUID("9d1f4c2b-5e6a-4f7b-8c9d-0a1b2c3d4e5f")

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class KafkaOut:
    topic: str
    key: str
    value: bytes | None
    headers: tuple[tuple[str, bytes], ...]
    commit_ts: float | None = None  # source commit time of the causing change: end-to-end latency


class Destination(Generic[T]):
    """One output destination: which output types it takes and the records it makes of each."""

    def __init__(self, name: str, handlers: dict[type, Callable[[Any], list[T]]]) -> None:
        self.name, self.handlers = name, handlers

    def accepts(self, output: object) -> bool:
        return type(output) in self.handlers

    def records(self, output: object) -> list[T]:
        handler = self.handlers.get(type(output))
        return handler(output) if handler is not None else []


def emit(out: CoreOutput) -> list[Output]:
    """The typed outputs of one core call, each body serialized once."""
    return typed(out, orjson.dumps, dead_letter_out)


def _headers(cause: Any, event_type: str) -> tuple[tuple[str, bytes], ...]:
    return (
        ("correlation-id", cause.correlation_id.encode()),
        ("causation-id", cause.causation_id.encode()),
        ("event-type", event_type.encode()),
        ("schema-version", b"1"),
        ("source-position", cause.source_position.encode()),
    )


def _lifecycle(e: LifecycleEvent) -> list[KafkaOut]:
    return [KafkaOut(LIFECYCLE_TOPIC, e.customer_id, e.wire, _headers(e.cause, e.event_type), e.cause.commit_ts)]


def _golden(u: GoldenRecordUpdated) -> list[KafkaOut]:
    return [KafkaOut(CUSTOMERS_TOPIC, u.customer_id, u.wire, _headers(u.cause, "GoldenRecordUpdated"),
                     u.cause.commit_ts)]  # fmt: skip


def _tombstone(r: CustomerRetired) -> list[KafkaOut]:
    # A tombstone on the compacted topic; `merged-into` names the final survivor.
    return [KafkaOut(CUSTOMERS_TOPIC, r.merged, None, (*_headers(r.cause, "CustomerMerged"),
                                                       ("merged-into", r.survivor.encode())))]  # fmt: skip


def _governance(g: GovernanceDecision) -> list[KafkaOut]:
    return [KafkaOut(GOVERNANCE_TOPIC, g.customer_id, g.wire, _headers(g.cause, f"Governance.{g.decision}"))]


def _dlq(d: DeadLetter) -> list[KafkaOut]:
    r = d.record
    headers = (("error-class", d.error_class.encode()), ("stage", d.stage.encode()), ("schema-version", b"1"),
               ("source-topic", r["topic"].encode()))  # fmt: skip
    return [KafkaOut(DLQ_TOPIC, r["source"] or r["topic"], d.wire, headers)]


def _hand_off(h: HandOff) -> list[KafkaOut]:
    return [KafkaOut(HANDOFF_TOPIC, h.key, h.payload, ())]


LIFECYCLE = Destination[KafkaOut](LIFECYCLE_TOPIC, {LifecycleEvent: _lifecycle})
CUSTOMERS = Destination[KafkaOut](CUSTOMERS_TOPIC, {GoldenRecordUpdated: _golden, CustomerRetired: _tombstone})
GOVERNANCE = Destination[KafkaOut](GOVERNANCE_TOPIC, {GovernanceDecision: _governance})
DLQ = Destination[KafkaOut](DLQ_TOPIC, {DeadLetter: _dlq})
HANDOFF = Destination[KafkaOut](HANDOFF_TOPIC, {HandOff: _hand_off})
# Every Kafka topic family, as the one Kafka sink's destination.
KAFKA = Destination[KafkaOut]("kafka", {t: h for d in (LIFECYCLE, CUSTOMERS, GOVERNANCE, DLQ, HANDOFF)
                                        for t, h in d.handlers.items()})  # fmt: skip


def _text(data: bytes | None) -> tuple[str | None, str]:
    if data is None:
        return None, "utf-8"
    try:
        return data.decode("utf-8"), "utf-8"
    except UnicodeDecodeError:
        return base64.b64encode(data).decode(), "base64"


def dead_letter(stage: str, error_class: str, reason: str, source: str | None, origin: Any) -> dict[str, Any]:
    """A DeadLetterV1 record. Its id depends on the record's content, not its offset, so the same bad
    record dead-lettered again (after a replay) keeps its id."""
    topic, partition, offset, key, value = origin or ("", -1, -1, None, None)
    key_text, _ = _text(key)
    payload, encoding = _text(value)
    digest = uuid.uuid5(DLQ_NAMESPACE, f"{topic}|{key_text}|{payload}|{error_class}")
    return {
        "dead_letter_id": str(digest), "stage": stage, "error_class": error_class, "reason": reason,
        "source": source, "topic": topic, "partition": partition, "offset": offset, "key": key_text,
        "payload": payload, "payload_encoding": encoding, "failed_at": datetime.now(UTC).isoformat(),
        "schema_version": 1,
    }  # fmt: skip


def dead_letter_out(stage: str, error_class: str, reason: str, source: str | None, origin: Any) -> DeadLetter:
    """The typed dead letter (its body serialized once) for the DLQ topic and the dead_letters table."""
    record = dead_letter(stage, error_class, reason, source, origin)
    return DeadLetter(stage, error_class, record, orjson.dumps(record))
