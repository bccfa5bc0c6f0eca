"""Decoding and mapping of real MySQL-family (binlog) envelopes: tests/fixtures/debezium/crm.jsonl."""

from __future__ import annotations

from datetime import date
from decimal import Decimal

from dataflows.ingest.decode import decode
from dataflows.ingest.mapping import SourceMapper
from dataflows.core.reorder import order_key
from tests.support.fixtures import as_kafka, connector, decoded, recorded

CRM = SourceMapper(connector("crm"))


def mapped(scenario: str):
    return [CRM.map(r) for r in decoded("crm", scenario)]


def test_every_recorded_record_decodes() -> None:
    for r in recorded("crm"):
        rec = decode(*as_kafka(r), source="crm", dialect="mysql")
        assert (rec is None) == (r["value"] is None)


def test_snapshot_read_is_normalised_by_the_mapping() -> None:
    (change,) = mapped("snapshot")
    assert change.snapshot and change.entity == "customer" and change.customer_ref == "1"
    assert change.fields["display_name"] == "Snapshot Ltd" and change.fields["domain"] == "snap.example"
    assert change.fields["tax_id"] == "GB1" and change.fields["country"] == "GB"


def test_insert_and_update() -> None:
    (insert,) = decoded("crm", "insert")
    assert insert.table == "crm.accounts" and insert.position_text.startswith("mariadb-bin.000001:")
    change = CRM.map(insert)
    assert change.fields["display_name"] == "Blue Heron" and change.fields["crm_stage"] == "prospect"
    assert change.fields["sales_owner"] == "dana" and change.fields["erp_customer_id"] is None
    (update,) = mapped("update")
    assert update.fields == {"erp_customer_id": "2", "crm_stage": "customer"}


def test_statements_of_one_transaction_are_ordered_by_binlog_position() -> None:
    contact, opportunity, won = mapped("transaction")
    assert contact.position < opportunity.position < won.position
    assert contact.entity == "contact" and contact.fields["email"] == "ada@heron.example"
    assert opportunity.fields == {"opportunity_name": "Deal", "opportunity_stage": "open",
                                  "opportunity_amount": Decimal("48000.25"), "close_date": date(2026, 4, 30)}  # fmt: skip
    assert won.fields == {"opportunity_stage": "won"}
    # MySQL's ts_ms has second precision: commit time alone cannot order these.
    assert contact.commit_time == won.commit_time
    # and the commit may have been up to a second later, but not after Debezium read it: ordering takes
    # the earlier of the two.
    (envelope,) = [r for r in recorded("crm") if r["scenario"] == "transaction"][:1]
    read_us = envelope["value"]["ts_ms"] * 1000
    assert contact.commit_time.microsecond == 0 and 0 < contact.commit_resolution_us <= 999_999
    assert order_key(contact)[0] == min(read_us, envelope["value"]["source"]["ts_ms"] * 1000 + 999_999)


def test_primary_key_update_orders_delete_first() -> None:
    delete, create = mapped("pk_update")
    assert delete.deleted and delete.entity_key == "5" and create.entity_key == "6"
    assert delete.position[:3] == create.position[:3] and delete.position < create.position


def test_delete() -> None:
    (delete,) = mapped("delete")
    assert delete.deleted and delete.entity == "contact" and delete.customer_ref == "2"
