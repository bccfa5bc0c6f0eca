from __future__ import annotations

from dataflows.outputs import DLQ_TOPIC, KafkaOut, dead_letter_out
from dataflows.targets import dead_letters
from dataflows.targets.dead_letters import COLUMNS, dead_letter_row


def test_a_dead_letter_row_keeps_the_original_bytes_even_when_not_utf8() -> None:
    value = b"\xff\xfe not UTF-8"
    out = dead_letter_out("decode", "malformed_json", "bad", "erp", ("erp.erp.customers", 2, 41, b'{"id": 1}', value))
    row = dict(zip(COLUMNS, dead_letter_row(out) or (), strict=True))
    assert row["record_key"] == b'{"id": 1}' and row["record_value"] == value
    assert (row["topic"], row["kafka_partition"], row["kafka_offset"], row["source"]) == ("erp.erp.customers", 2, 41, "erp")
    assert row["first_failed_at"].tzinfo is not None


def test_only_dlq_records_become_rows() -> None:
    assert dead_letter_row(KafkaOut("tidemark.lifecycle.v1", "k", b"{}", ())) is None
    assert dead_letters.DESTINATION.records(KafkaOut(DLQ_TOPIC, "k", b"{}", ())) == []


def test_the_same_record_failing_again_has_the_same_id() -> None:
    origin = ("crm.crm.accounts", 0, 5, b"k", b"v")
    moved = ("crm.crm.accounts", 1, 900, b"k", b"v")
    first = dead_letter_row(dead_letter_out("map", "invalid_value", "x", "crm", origin))
    second = dead_letter_row(dead_letter_out("map", "invalid_value", "x", "crm", moved))
    assert first and second and first[0] == second[0]
