"""Debezium JSON envelopes -> typed change records.

Accepts what Kafka Connect's JsonConverter writes with schemas disabled (the bare envelope) and with
schemas enabled (`{"schema": ..., "payload": ...}`); with a schema, Debezium's semantic types (dates as
epoch days, timestamps as epoch micros, precise decimals as base64 bytes) are turned into Python values
here. Without one, the canonical field types guide conversion later (see mapping).
"""

from __future__ import annotations

import base64
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any, Literal

import orjson

from dataflows.dialects import get_dialect
from dataflows.dialects.base import Dialect, EnvelopeError

UNAVAILABLE = "__debezium_unavailable_value"  # an unchanged TOAST value PostgreSQL did not send
Op = Literal["c", "u", "d", "r", "t"]
OPS = frozenset("cudrt")
# A primary-key update is a delete of the old key and a create of the new one at the same position:
# the delete sorts first.
_OP_RANK = {"d": 0, "t": 0, "c": 1, "u": 1, "r": 1}
EPOCH = date(1970, 1, 1)
EPOCH_DT = datetime(1970, 1, 1, tzinfo=UTC)


class DecodeError(ValueError):
    """A record that is not a decodable Debezium change; `error_class` is stable for metrics and DLQ."""

    def __init__(self, error_class: str, reason: str) -> None:
        super().__init__(reason)
        self.error_class = error_class
        self.reason = reason


@dataclass(frozen=True, slots=True)
class ChangeRecord:
    """One row change, as captured. `position` totally orders the changes of one source."""

    source: str
    table: str  # "schema.table" (PostgreSQL) or "db.table" (MySQL family)
    op: Op
    key: dict[str, Any] | None
    before: dict[str, Any] | None
    after: dict[str, Any] | None
    position: tuple[int, ...]
    position_text: str
    commit_time: datetime
    tx_id: str | None
    snapshot: bool
    # How much later than commit_time the commit may really have been. The MySQL family's binlog records
    # whole seconds: the commit lies within that second and before Debezium read it (the envelope's own
    # ts_ms). Ordering uses that latest possible time, so a change is never ordered before its real
    # commit, and cannot arrive behind a watermark that other sources moved on meanwhile.
    commit_resolution_us: int = 0
    snapshot_last: bool = False  # Debezium's source.snapshot = "last": the final row of a whole snapshot


def _payload(document: Any) -> tuple[Any, dict[str, Any] | None]:
    if isinstance(document, dict) and "payload" in document and "schema" in document:
        return document["payload"], document["schema"]
    return document, None


def _schema_types(schema: dict[str, Any] | None, part: str) -> dict[str, dict[str, Any]]:
    """Column -> its Connect field schema, for the `before`/`after` struct."""
    if not schema:
        return {}
    for f in schema.get("fields", ()):
        if f.get("field") == part:
            return {c["field"]: c for c in f.get("fields", ())}
    return {}


def _convert(value: Any, field_schema: dict[str, Any]) -> Any:
    """Debezium semantic type -> Python value (only when the envelope carries its schema)."""
    if value is None or value == UNAVAILABLE:
        return value
    name = field_schema.get("name")
    if name == "org.apache.kafka.connect.data.Decimal":
        scale = int(field_schema.get("parameters", {}).get("scale", 0))
        raw = base64.b64decode(value) if isinstance(value, str) else value
        return Decimal(int.from_bytes(raw, "big", signed=True)).scaleb(-scale)
    if name == "io.debezium.data.VariableScaleDecimal":
        raw = base64.b64decode(value["value"])
        return Decimal(int.from_bytes(raw, "big", signed=True)).scaleb(-int(value["scale"]))
    if name in ("io.debezium.time.Date", "org.apache.kafka.connect.data.Date"):
        return EPOCH + timedelta(days=int(value))
    if name in ("io.debezium.time.Timestamp", "org.apache.kafka.connect.data.Timestamp"):
        return EPOCH_DT + timedelta(milliseconds=int(value))
    if name == "io.debezium.time.MicroTimestamp":
        return EPOCH_DT + timedelta(microseconds=int(value))
    if name == "io.debezium.time.NanoTimestamp":
        return EPOCH_DT + timedelta(microseconds=int(value) // 1000)
    if name == "io.debezium.time.ZonedTimestamp":
        return datetime.fromisoformat(value)
    return value


def _row(row: Any, types: dict[str, dict[str, Any]], part: str) -> dict[str, Any] | None:
    if row is None:
        return None
    if not isinstance(row, dict):
        raise DecodeError("invalid_envelope", f"`{part}` is not an object")
    if types:
        return {k: _convert(v, types[k]) if k in types else v for k, v in row.items()}
    return row


def decode(key: bytes | None, value: bytes | None, *, source: str, dialect: Dialect | str) -> ChangeRecord | None:
    """Decode one Kafka record of a capture topic. Tombstones (value None) return None: the delete
    before them carries everything. Anything else that is not a Debezium change raises DecodeError."""
    if value is None:
        return None
    resolved = get_dialect(dialect)
    try:
        return _decode(key, value, source, resolved)
    except DecodeError:
        raise
    except EnvelopeError as e:
        raise DecodeError("invalid_envelope", str(e)) from None
    except (TypeError, ValueError, KeyError, AttributeError, OverflowError) as e:
        # A structurally surprising envelope (a list where an object belongs, a non-numeric lsn, ...).
        raise DecodeError("invalid_envelope", f"not a Debezium change envelope: {type(e).__name__}: {e}") from None


def _decode(key: bytes | None, value: bytes, source: str, dialect: Dialect) -> ChangeRecord:
    try:
        document = orjson.loads(value)
    except orjson.JSONDecodeError as e:
        raise DecodeError("malformed_json", f"value is not JSON: {e}") from None
    envelope, schema = _payload(document)
    if not isinstance(envelope, dict):
        raise DecodeError("invalid_envelope", "value is not a JSON object")
    op = envelope.get("op")
    src = envelope.get("source")
    if not isinstance(op, str) or op not in OPS or not isinstance(src, dict):
        what = "source" if isinstance(op, str) and op in OPS else "op"
        raise DecodeError("invalid_envelope", f"not a Debezium change envelope: missing or invalid `{what}`")
    container = dialect.container(src)
    table_name = src.get("table")
    if not container or not table_name:
        raise DecodeError("invalid_envelope", "source block names no schema/db and table")
    key_doc = None
    if key is not None:
        try:
            key_doc, _ = _payload(orjson.loads(key))
        except orjson.JSONDecodeError as e:
            raise DecodeError("malformed_json", f"key is not JSON: {e}") from None
    position, position_text = dialect.position(src, _OP_RANK[op])
    ts_ms = src.get("ts_ms")
    if not isinstance(ts_ms, int):
        raise DecodeError("invalid_envelope", "source.ts_ms (commit time) missing")
    # PostgreSQL's xid, or the MySQL GTID; without GTIDs (MariaDB in compat mode) there is none and the
    # correlation id falls back to the change's own position.
    tx_id = src.get("txId") or src.get("gtid")
    if tx_id is None and isinstance(envelope.get("transaction"), dict):
        tx_id = envelope["transaction"].get("id")
    marker = str(src.get("snapshot", "false")).lower()
    snapshot = marker not in ("false", "")
    return ChangeRecord(
        source=source,
        table=f"{container}.{table_name}",
        op=op,
        key=key_doc if isinstance(key_doc, dict) else None,
        before=_row(envelope.get("before"), _schema_types(schema, "before"), "before"),
        after=_row(envelope.get("after"), _schema_types(schema, "after"), "after"),
        position=position,
        position_text=position_text,
        commit_time=EPOCH_DT + timedelta(milliseconds=ts_ms),
        tx_id=None if tx_id is None else str(tx_id),
        snapshot=snapshot or op == "r",
        commit_resolution_us=dialect.commit_resolution_us(src, envelope),
        snapshot_last=marker == "last",
    )
