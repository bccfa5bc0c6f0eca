"""The durable dead-letter store: table `dead_letters` in the operational PostgreSQL database.

Every dead letter the dataflow publishes on `tidemark.dlq.v1` is also written here, because a broker can
lose its topics. One row per dead-letter id (derived from the record's content), so writing the same
dead letter again (an output batch replayed after a crash) changes nothing, while the same record
failing again at a new offset (after `tidemark dlq replay`) counts a failure and re-opens a replayed row.
"""

from __future__ import annotations

import base64
from datetime import datetime
from typing import Any

import psycopg

from dataflows.core.outputs import DeadLetter
from dataflows.outputs import Destination
from dataflows.targets import ops_table

TABLE = "dead_letters"
STATES = ("open", "replayed", "resolved", "discarded")
COLUMNS = ("dead_letter_id", "stage", "error_class", "reason", "source", "topic", "kafka_partition", "kafka_offset",
           "record_key", "record_value", "first_failed_at", "last_failed_at", "state_changed_at")  # fmt: skip
# The WHERE makes a rewrite of the very same record (same Kafka coordinates) a no-op; a failure at other
# coordinates is a new failure of the same letter: counted, and a replayed letter is open again.
UPSERT = f"""
INSERT INTO {TABLE} ({", ".join(COLUMNS)}) VALUES ({", ".join("%s" for _ in COLUMNS)})
ON CONFLICT (dead_letter_id) DO UPDATE SET
    failures = {TABLE}.failures + 1,
    stage = excluded.stage, error_class = excluded.error_class, reason = excluded.reason,
    topic = excluded.topic, kafka_partition = excluded.kafka_partition, kafka_offset = excluded.kafka_offset,
    last_failed_at = excluded.last_failed_at,
    state = CASE WHEN {TABLE}.state = 'replayed' THEN 'open' ELSE {TABLE}.state END,
    state_changed_at = CASE WHEN {TABLE}.state = 'replayed' THEN excluded.last_failed_at
                            ELSE {TABLE}.state_changed_at END
WHERE ({TABLE}.topic, {TABLE}.kafka_partition, {TABLE}.kafka_offset)
      IS DISTINCT FROM (excluded.topic, excluded.kafka_partition, excluded.kafka_offset)
"""  # noqa: S608 - constant identifiers only; every value is a parameter


def _raw(text: str | None, encoding: str) -> bytes | None:
    if text is None:
        return None
    return base64.b64decode(text) if encoding == "base64" else text.encode()


def dead_letter_row(out: object) -> tuple[Any, ...] | None:
    """The row of a dead letter (None for any other output): the original key and value as bytes."""
    if not isinstance(out, DeadLetter):
        return None
    d = out.record
    failed_at = datetime.fromisoformat(d["failed_at"])
    return (d["dead_letter_id"], d["stage"], d["error_class"], d["reason"], d["source"], d["topic"], d["partition"],
            d["offset"], _raw(d["key"], "utf-8"), _raw(d["payload"], d["payload_encoding"]), failed_at, failed_at,
            failed_at)  # fmt: skip


DESTINATION = Destination[tuple[Any, ...]](TABLE, {DeadLetter: lambda d: [dead_letter_row(d)]})


def ensure_table(conn: psycopg.Connection) -> None:
    ops_table.ensure_table(conn, "dead_letters.sql")


class DeadLetterWriter(ops_table.OpsTableWriter):
    """Writes batches of dead-letter rows (`dead_letter_row`) in one transaction."""

    def __init__(self, conninfo: str) -> None:
        super().__init__(conninfo, TABLE, "dead_letters.sql", UPSERT)
