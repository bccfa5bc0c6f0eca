"""Core outputs -> records for the targets: Kafka topics (keyed by golden customer id, tagged with
correlation id, causation id, event type, schema version and source position as headers),
customer_360 rows and CRM write-backs."""

from __future__ import annotations

import base64
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import orjson

from dataflows.core.core import CoreOutput
from dataflows.targets import crm_writeback, customer_360

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


@dataclass(frozen=True, slots=True)
class KafkaOut:
    topic: str
    key: str
    value: bytes | None
    headers: tuple[tuple[str, bytes], ...]
    commit_ts: float | None = None  # source commit time of the causing change: end-to-end latency


def _headers(meta: dict[str, Any], event_type: str) -> tuple[tuple[str, bytes], ...]:
    return (
        ("correlation-id", meta["correlation_id"].encode()),
        ("causation-id", meta["causation_id"].encode()),
        ("event-type", event_type.encode()),
        ("schema-version", b"1"),
        ("source-position", meta["source_position"].encode()),
    )


def route(out: CoreOutput) -> list[tuple[str, Any]]:
    """(target, item) pairs: target is "kafka", "customer_360" or "crm"."""
    items: list[tuple[str, Any]] = []
    for e in out.events:
        meta = {"correlation_id": e["correlation_id"], "causation_id": e["causation_id"],
                "source_position": e["source_position"]}  # fmt: skip
        items.append(("kafka", KafkaOut(LIFECYCLE_TOPIC, e["customer_id"], orjson.dumps(e), _headers(meta, e["event_type"]),
                                        datetime.fromisoformat(e["occurred_at"]).timestamp())))  # fmt: skip
    for record, meta in out.customers:
        items.append(("kafka", KafkaOut(CUSTOMERS_TOPIC, record["customer_id"], orjson.dumps(record),
                                        _headers(meta, "GoldenRecordUpdated"), meta["commit_ts"])))  # fmt: skip
        items.append(("customer_360", customer_360.customer_row(record, meta)))
        items += [("crm", update) for update in crm_writeback.writebacks(record)]
    for merged, survivor in out.retired:
        meta = next((m for r, m in out.customers if r["customer_id"] == survivor), None)
        if meta is None:
            continue
        items.append(("kafka", KafkaOut(CUSTOMERS_TOPIC, merged, None, (*_headers(meta, "CustomerMerged"),
                                                                       ("merged-into", survivor.encode())))))  # fmt: skip
        items.append(("customer_360", customer_360.retired_row(merged, survivor, meta)))
    for g in out.governance:
        meta = {"correlation_id": g["correlation_id"], "causation_id": g["causation_id"],
                "source_position": g["source_position"]}  # fmt: skip
        items.append(("kafka", KafkaOut(GOVERNANCE_TOPIC, g["customer_id"], orjson.dumps(g),
                                        _headers(meta, f"Governance.{g['decision']}"))))  # fmt: skip
    for change, error_class, reason in out.errors:
        items.append(("kafka", dead_letter_out("apply", error_class, reason, change.source, change.origin)))
    return items


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


def dead_letter_out(stage: str, error_class: str, reason: str, source: str | None, origin: Any) -> KafkaOut:
    record = dead_letter(stage, error_class, reason, source, origin)
    headers = (("error-class", error_class.encode()), ("stage", stage.encode()), ("schema-version", b"1"),
               ("source-topic", record["topic"].encode()))  # fmt: skip
    return KafkaOut(DLQ_TOPIC, record["source"] or record["topic"], orjson.dumps(record), headers)
