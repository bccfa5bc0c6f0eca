"""Bad input to the decoder: typed, reported errors only, whatever the bytes (hypothesis fuzzing)."""

from __future__ import annotations

import base64
from datetime import UTC, datetime

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dataflows.ingest.decode import DecodeError, decode
from dataflows.ingest.heartbeats import read_heartbeat, stop_marker
from tests.support.fixtures import as_kafka, recorded


@pytest.mark.parametrize(
    ("value", "error_class"),
    [
        (b"{not json", "malformed_json"),
        (b"[1, 2]", "invalid_envelope"),
        (b'{"op": "x", "source": {}}', "invalid_envelope"),
        (b'{"op": "c", "source": {"schema": "erp", "table": "t", "ts_ms": 1}}', "invalid_envelope"),  # no lsn
        (b'{"op": "c", "after": 3, "source": {"schema": "erp", "table": "t", "ts_ms": 1, "lsn": 5}}', "invalid_envelope"),
    ],
)
def test_bad_envelopes_are_typed_errors(value: bytes, error_class: str) -> None:
    with pytest.raises(DecodeError) as e:
        decode(b'{"id": 1}', value, source="erp", dialect="postgres")
    assert e.value.error_class == error_class


def test_schema_wrapped_envelope_decodes_semantic_types() -> None:
    (insert,) = [r for r in recorded("erp") if r["scenario"] == "insert"]
    envelope = dict(insert["value"])
    cents = (2500050).to_bytes(4, "big", signed=True)
    envelope["after"] = {**envelope["after"], "credit_limit": base64.b64encode(cents).decode(), "due": 20485,
                         "seen": 1767323045123456}  # fmt: skip
    schema = {"type": "struct", "fields": [{"field": "after", "type": "struct", "fields": [
        {"field": "credit_limit", "type": "bytes", "name": "org.apache.kafka.connect.data.Decimal",
         "parameters": {"scale": "2"}},
        {"field": "due", "type": "int32", "name": "io.debezium.time.Date"},
        {"field": "seen", "type": "int64", "name": "io.debezium.time.MicroTimestamp"},
        {"field": "created_at", "type": "string", "name": "io.debezium.time.ZonedTimestamp"},
    ]}]}  # fmt: skip
    rec = decode(b'{"schema": {}, "payload": {"id": 2}}', orjson.dumps({"schema": schema, "payload": envelope}),
                 source="erp", dialect="postgres")  # fmt: skip
    assert rec is not None and rec.key == {"id": 2}
    assert str(rec.after["credit_limit"]) == "25000.50"
    assert rec.after["due"].isoformat() == "2026-02-01"
    assert rec.after["seen"].isoformat() == "2026-01-02T03:04:05.123456+00:00"
    assert rec.after["created_at"].isoformat() == "2026-01-02T03:04:05.123456+00:00"


@settings(max_examples=500, deadline=None)
@given(st.binary(max_size=300) | st.builds(lambda d: orjson.dumps(d), st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**63 - 1) | st.text(max_size=10),
    lambda c: st.lists(c, max_size=4) | st.dictionaries(st.sampled_from(["op", "source", "after", "before", "lsn",
        "ts_ms", "schema", "table", "file", "pos", "payload"]), c, max_size=6), max_leaves=20)))  # fmt: skip
def test_fuzzed_values_raise_only_decode_errors(value: bytes) -> None:
    for dialect in ("postgres", "mysql"):
        try:
            decode(b'{"id": 1}', value, source="s", dialect=dialect)
        except DecodeError:
            pass
    read_heartbeat(value)  # a heartbeat is read the same forgiving way: a time or None, never an error


def test_heartbeat_time_is_read_from_the_record() -> None:
    sent = datetime(2026, 1, 1, 0, 0, 0, 123000, tzinfo=UTC)
    assert read_heartbeat(b'{"ts_ms": 1767225600123}') == (sent, False)
    assert read_heartbeat(b'{"ts_ms": "soon"}') == (None, False) and read_heartbeat(None) == (None, False)


@given(st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2200, 1, 1), timezones=st.just(UTC)))
def test_the_stop_marker_reads_as_a_stop_at_its_time_and_a_heartbeat_never_does(at: datetime) -> None:
    assert read_heartbeat(stop_marker(at)) == (at.replace(microsecond=at.microsecond // 1000 * 1000), True)
    assert read_heartbeat(b'{"ts_ms": 1767225600123, "tidemark_stopped": "no"}')[1] is False


@settings(max_examples=300, deadline=None)
@given(st.data())
def test_mutated_real_envelopes_raise_only_decode_errors(data: st.DataObject) -> None:
    records = [r for r in recorded("erp") + recorded("crm") if r["value"] is not None]
    record = data.draw(st.sampled_from(records))
    envelope = dict(record["value"])
    source = dict(envelope["source"])
    field = data.draw(st.sampled_from(sorted(source)))
    source[field] = data.draw(st.none() | st.integers(-(2**63), 2**63 - 1) | st.text(max_size=5) | st.lists(st.integers(0, 2**40), max_size=2))
    envelope["source"] = source
    key, _ = as_kafka(record)
    try:
        decode(key, orjson.dumps(envelope), source="s", dialect="postgres" if "lsn" in record["value"]["source"] else "mysql")
    except DecodeError:
        pass


@pytest.mark.parametrize("days", [-703_383, -719_528, -1_000_000])  # 44 BC as Debezium sends it; year 1; earlier
def test_a_date_before_any_business_date_is_an_invalid_value(days: int) -> None:
    from dataflows.ingest.mapping import MappingError, SourceMapper
    from tests.support.fixtures import connector

    record = next(r for r in recorded("erp") if r["topic"] == "erp.erp.subscriptions" and r["value"]
                  and r["value"]["after"])  # fmt: skip
    value = orjson.loads(as_kafka(record)[1])
    value["after"]["period_start"] = days
    change = decode(orjson.dumps(record["key"]), orjson.dumps(value), source="erp", dialect="postgres")
    with pytest.raises(MappingError) as e:
        SourceMapper(connector("erp")).map(change)
    assert e.value.error_class == "invalid_value" and "period_start" in e.value.reason
    assert "before 1900-01-01" in e.value.reason or "outside the calendar" in e.value.reason
