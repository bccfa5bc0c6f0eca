"""The capture's metrics come from a batch without parsing its records."""

from __future__ import annotations

import orjson
from hypothesis import given
from hypothesis import strategies as st

from dataflows import metrics
from dataflows.capture.engine import CaptureMetrics, envelope_op
from dataflows.capture.kafka_writer import OutRecord

# Row images as Debezium writes them: any column names (an "op" column included), any scalar values
# (integers within 64 bits: numerics arrive as strings, decimal.handling.mode=string).
values = st.one_of(st.none(), st.booleans(), st.integers(-(2**63), 2**63 - 1), st.text(), st.floats(allow_nan=False))
rows = st.one_of(st.none(), st.dictionaries(st.one_of(st.just("op"), st.text()), values, max_size=6))


def envelope(before: object, after: object, op: str) -> bytes:
    source = {"version": "3.6.3.Final", "connector": "postgresql", "name": "erp", "ts_ms": 1, "db": "erp",
              "schema": "erp", "table": "customers", "lsn": 42}  # fmt: skip
    return orjson.dumps({"before": before, "after": after, "source": source, "transaction": None, "op": op,
                         "ts_ms": 2, "ts_us": 2000, "ts_ns": 2000000})  # fmt: skip


@given(rows, rows, st.sampled_from("crudt"))
def test_the_operation_is_the_envelopes_whatever_the_row_holds(before: object, after: object, op: str) -> None:
    assert envelope_op(envelope(before, after, op)) == op


def test_counts_by_table_and_operation_position_and_commit_time_from_the_offset() -> None:
    observed = CaptureMetrics("unit-src", "unit")
    changes = metrics.CAPTURE_CHANGES.labels("unit-src", "erp.customers", "u")
    before = changes._value.get()
    batch = [OutRecord("unit.erp.customers", b"{}", envelope({"op": "c"}, {"op": "d"}, "u")) for _ in range(3)]
    batch += [OutRecord("unit.erp.customers", b"{}", None),  # the tombstone after a delete counts nothing
              OutRecord("__debezium-heartbeat.unit", b"{}", b'{"ts_ms":1700000000000}')]
    observed.delivered(batch, {"lsn": 123456, "ts_usec": 1_600_000_000_000_000, "txId": 7})
    assert changes._value.get() == before + 3
    assert metrics.CAPTURE_POSITION.labels("unit-src", "lsn")._value.get() == 123456
    assert observed.newest_commit == 1_700_000_000.0  # the heartbeat is newer than the change's commit


def test_a_binlog_position_from_a_mysql_offset() -> None:
    observed = CaptureMetrics("unit-mysql", "unit")
    observed.delivered([OutRecord("unit.crm.accounts", b"{}", envelope(None, {"id": 1}, "c"))],
                       {"file": "mysql-bin.000007", "pos": 991, "ts_sec": 1_700_000_100})  # fmt: skip
    assert metrics.CAPTURE_POSITION.labels("unit-mysql", "binlog_file")._value.get() == 7
    assert metrics.CAPTURE_POSITION.labels("unit-mysql", "binlog_pos")._value.get() == 991
    assert observed.newest_commit == 1_700_000_100
    assert metrics.CAPTURE_CHANGES.labels("unit-mysql", "crm.accounts", "c")._value.get() == 1
