"""The dead-letter store (table `dead_letters` in the operational database): list, show and replay.

The DLQ topic `tidemark.dlq.v1` is a feed; this table is the record of truth, because a broker can lose
its topics. Replay re-injects a dead letter's original record into its original capture topic, so it
goes through the same path (decode, map, core) once its cause is fixed, and marks the row `replayed`.
It is idempotent: the core's per-row high-water marks give a record that was applied meanwhile no second
effect, and a record that fails again is dead-lettered under the same id (its row open again).
"""

from __future__ import annotations

import base64
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
from confluent_kafka import Producer
from psycopg.rows import dict_row

from dataflows.io.kafka_client import REPLAY_HEADER, Outgoing, build, deliver, producer_config

from dataflows.targets.dead_letters import STATES, TABLE, ensure_table


@dataclass(frozen=True)
class DlqFilter:
    since: datetime | None = None
    reason: str | None = None  # error class, or a substring of the reason
    source: str | None = None
    states: tuple[str, ...] = STATES

    def where(self) -> tuple[str, list[Any]]:
        """SQL condition and its parameters."""
        clauses, params = ["state = ANY(%s)"], [list(self.states)]
        if self.since:
            clauses.append("last_failed_at >= %s")
            params.append(self.since)
        if self.reason:
            clauses.append("(error_class = %s OR strpos(reason, %s) > 0)")
            params += [self.reason, self.reason]
        if self.source:
            clauses.append("source = %s")
            params.append(self.source)
        return " AND ".join(clauses), params


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


def _text(data: bytes | None) -> tuple[str | None, str]:
    if data is None:
        return None, "utf-8"
    try:
        return data.decode("utf-8"), "utf-8"
    except UnicodeDecodeError:
        return base64.b64encode(data).decode(), "base64"


def _record(row: dict[str, Any]) -> dict[str, Any]:
    """A row as the DeadLetterV1 fields (plus its state and history), JSON-ready."""
    key, _ = _text(row["record_key"])
    payload, encoding = _text(row["record_value"])
    times = ("first_failed_at", "last_failed_at", "state_changed_at", "replayed_at", "resolved_at", "discarded_at")
    return {
        "dead_letter_id": str(row["dead_letter_id"]), "state": row["state"], "stage": row["stage"],
        "error_class": row["error_class"], "reason": row["reason"], "source": row["source"], "topic": row["topic"],
        "partition": row["kafka_partition"], "offset": row["kafka_offset"], "key": key, "payload": payload,
        "payload_encoding": encoding, "failed_at": row["last_failed_at"].isoformat(), "failures": row["failures"],
        **{t: row[t].isoformat() if row[t] else None for t in times}, "schema_version": row["schema_version"],
    }  # fmt: skip


def read(conninfo: str, flt: DlqFilter = DlqFilter()) -> list[dict[str, Any]]:
    """Every stored dead letter that matches, oldest failure first."""
    where, params = flt.where()
    with psycopg.connect(conninfo, row_factory=dict_row, connect_timeout=10) as conn:
        ensure_table(conn)
        rows = conn.execute(f"SELECT * FROM {TABLE} WHERE {where} ORDER BY first_failed_at, dead_letter_id",  # noqa: S608
                            params).fetchall()  # fmt: skip
    return [_record(r) for r in rows]


def counts(conninfo: str) -> dict[str, int]:
    """Dead letters by state (every state present, zero when none)."""
    with psycopg.connect(conninfo, connect_timeout=5) as conn:
        ensure_table(conn)
        found = dict(conn.execute(f"SELECT state, count(*) FROM {TABLE} GROUP BY state").fetchall())  # noqa: S608
    return {state: int(found.get(state, 0)) for state in STATES}


def replay(bootstrap: str, conninfo: str, records: list[dict[str, Any]],
           properties: Mapping[str, str] | None = None) -> int:  # fmt: skip
    """Mark the rows replayed and re-inject their original records; returns how many were sent.
    The mark and the sends commit together: marked first, so a failure of the replayed record (which
    waits for this transaction) re-opens the row rather than being overwritten by the mark."""
    records = [r for r in records if r["topic"] and r["state"] in ("open", "replayed")]
    if not records:
        return 0
    producer = build(Producer, producer_config(bootstrap, properties, client_id="tidemark-dlq-replay",
                                               delivery_timeout_s=60))  # fmt: skip
    with psycopg.connect(conninfo, connect_timeout=10) as conn, conn.transaction():
        ids = [r["dead_letter_id"] for r in records]
        conn.execute(f"UPDATE {TABLE} SET state = 'replayed', replayed_at = now(), state_changed_at = now() "  # noqa: S608
                     "WHERE dead_letter_id = ANY(%s::uuid[])", (ids,))  # fmt: skip
        rows = conn.execute(f"SELECT dead_letter_id, topic, record_key, record_value FROM {TABLE} "  # noqa: S608
                            "WHERE dead_letter_id = ANY(%s::uuid[])", (ids,)).fetchall()  # fmt: skip
        delivery = deliver(producer, [Outgoing(topic, key, value, headers=((REPLAY_HEADER, str(i).encode()),))
                                      for i, topic, key, value in rows], 70)  # fmt: skip
        if delivery.failed:
            msg = f"{delivery.failed} of {len(rows)} replays not acknowledged: {delivery.first_error}"
            raise RuntimeError(msg)  # rolls the marks back
    return delivery.sent
