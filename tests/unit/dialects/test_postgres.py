"""The PostgreSQL dialect: its own rules, then decoding and mapping of real pgoutput envelopes
(tests/fixtures/debezium/erp.jsonl)."""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal

import pytest

from dataflows.config.connectors import ConnectorConfig, connect_config
from dataflows.dialects import BY_CONNECTOR_CLASS, POSTGRES
from dataflows.dialects.base import EnvelopeError
from dataflows.ingest.decode import DecodeError
from dataflows.targets.sql import versioned_upsert
from dataflows.ingest.decode import decode
from dataflows.ingest.mapping import MappingError, SourceMapper
from tests.support.fixtures import as_kafka, connector, decoded, recorded

ERP = SourceMapper(connector("erp"))


def mapped(scenario: str):
    return [ERP.map(r) for r in decoded("erp", scenario)]


def test_the_pgoutput_connector_selects_postgres() -> None:
    assert BY_CONNECTOR_CLASS["io.debezium.connector.postgresql.PostgresConnector"] is POSTGRES
    assert connector("erp").dialect is POSTGRES
    assert POSTGRES.container_key == "schema.include.list" and POSTGRES.default_port == 5432


def test_position_is_the_lsn_then_the_op_rank() -> None:
    assert POSTGRES.position({"lsn": 123456}, 0) == ((123456, 0), "lsn:123456")
    assert POSTGRES.position({"lsn": 7}, 0) < POSTGRES.position({"lsn": 7}, 1) < POSTGRES.position({"lsn": 8}, 0)
    with pytest.raises(EnvelopeError, match="without source.lsn"):
        POSTGRES.position({"file": "mysql-bin.000001", "pos": 4}, 1)


def test_container_is_the_schema_and_commit_time_is_exact() -> None:
    assert POSTGRES.container({"schema": "erp", "db": "erp_db"}) == "erp"
    assert POSTGRES.commit_resolution_us({"ts_ms": 1_700_000_000_000}, {"ts_ms": 1_700_000_000_900}) == 0


def test_an_envelope_without_lsn_is_a_decode_error() -> None:
    value = b'{"op": "c", "source": {"schema": "erp", "table": "t", "ts_ms": 1}, "after": {"id": 1}}'
    with pytest.raises(DecodeError, match="PostgreSQL change without source.lsn") as e:
        decode(None, value, source="erp", dialect=POSTGRES)
    assert e.value.error_class == "invalid_envelope"


def test_no_schema_history_properties(tmp_path) -> None:
    # pgoutput describes every relation in the stream: no schema history to keep.
    assert not any(k.startswith("schema.history") for k in connect_config(connector("erp")))
    assert POSTGRES.embedded_properties("erp", tmp_path) == {} and POSTGRES.connect_properties("erp", "b") == {}


def test_upsert_updates_only_from_a_newer_version() -> None:
    sql = versioned_upsert("t", ["id", "a", "version"], "id", "version", POSTGRES)
    assert sql.startswith('INSERT INTO "t" ("id", "a", "version") VALUES (%s, %s, %s) ON CONFLICT("id") DO UPDATE SET ')
    assert sql.endswith('"a" = "excluded"."a", "version" = "excluded"."version" WHERE "t"."version" < "excluded"."version"')


def test_null_safe_equality() -> None:
    assert POSTGRES.null_safe_equal("a") == "a IS NOT DISTINCT FROM ?"


def test_every_recorded_record_decodes() -> None:
    records = recorded("erp")
    assert {r["scenario"] for r in records} >= {"snapshot", "insert", "update", "pk_update", "truncate"}
    for r in records:
        rec = decode(*as_kafka(r), source="erp", dialect="postgres")
        assert (rec is None) == (r["value"] is None)  # only tombstones decode to nothing


def test_snapshot_read() -> None:
    (change,) = mapped("snapshot")
    assert change.snapshot and change.entity == "customer" and change.entity_key == "1" and change.customer_ref == "1"
    assert change.fields == {
        "legal_name": "Snapshot GmbH", "tax_id": "DE111", "country": "DE", "payment_terms": "NET30",
        "credit_limit": Decimal("1000.00"), "credit_status": "ok", "erp_status": "active",
    }  # fmt: skip


def test_insert_maps_every_field_with_exact_decimals() -> None:
    (rec,) = decoded("erp", "insert")
    assert rec.op == "c" and rec.table == "erp.customers" and rec.key == {"id": 2}
    assert rec.position_text.startswith("lsn:") and rec.tx_id is not None
    assert rec.commit_time.tzinfo is UTC and rec.commit_time > datetime(2026, 1, 1, tzinfo=UTC)
    assert rec.commit_resolution_us == 0  # PostgreSQL's commit time is exact to the millisecond Debezium gives
    assert rec.after["created_at"] == "2026-01-02T03:04:05.123456Z"  # ZonedTimestamp, microseconds kept
    change = ERP.map(rec)
    assert change.fields["legal_name"] == "Nordwind AG" and change.fields["tax_id"] == "DE222"
    assert change.fields["credit_limit"] == Decimal("25000.50") and change.fields["payment_terms"] == "NET45"
    assert not change.snapshot and not change.deleted


def test_update_carries_only_changed_fields() -> None:
    (change,) = mapped("update")
    assert change.fields == {"credit_status": "hold", "credit_limit": Decimal("0.00")}


def test_one_transaction_one_correlation_id_in_position_order() -> None:
    billing, subscription = mapped("transaction")
    assert billing.correlation_id == subscription.correlation_id
    assert billing.position < subscription.position
    assert billing.entity == "billing_account" and billing.customer_ref == "2"
    assert billing.fields == {"currency": "EUR", "approval_status": "approved"}
    assert subscription.fields == {
        "plan": "growth", "seats": 25, "subscription_status": "active",
        "period_start": date(2026, 2, 1), "period_end": date(2027, 1, 31),
    }  # fmt: skip
    (invoice,) = mapped("invoice")
    assert invoice.correlation_id != billing.correlation_id
    assert invoice.fields["due_date"] == date(2026, 3, 1) and invoice.fields["invoice_amount"] == Decimal("1999.99")


def test_primary_key_update_is_delete_then_create_at_one_lsn() -> None:
    delete, create = mapped("pk_update")
    assert delete.deleted and delete.entity_key == "30" and delete.fields == {}
    assert create.entity_key == "31" and create.fields["invoice_status"] == "open"
    assert delete.position_text == create.position_text  # same LSN: LSN alone is no dedupe key
    assert delete.position < create.position and delete.change_id != create.change_id


def test_unchanged_toast_value_never_overwrites() -> None:
    # A mapping that reads the TOASTed column, to see what the placeholder would do to it.
    base = connector("erp")
    tables = dict(base.tables)
    customers = tables["erp.customers"]
    tables["erp.customers"] = customers.model_copy(update={"fields": {**customers.fields, "industry": "notes"}})
    mapper = SourceMapper(ConnectorConfig.model_validate({**base.model_dump(), "tables": tables}))
    (placeholder,) = decoded("erp", "toast_placeholder")
    assert placeholder.after["notes"] == "__debezium_unavailable_value" and placeholder.before is None
    change = mapper.map(placeholder)
    assert "industry" not in change.fields  # unknown, so not changed
    assert change.fields["payment_terms"] == "NET90"
    (full,) = decoded("erp", "toast_unchanged")  # REPLICA IDENTITY FULL: the value itself arrives
    assert "industry" not in mapper.map(full).fields  # and is unchanged, so not in the diff


def test_added_column_is_ignored_and_dropped_mapped_column_is_an_error() -> None:
    (added,) = mapped("add_column")
    assert added.fields == {}  # `segment` is not mapped; nothing else changed
    (dropped,) = decoded("erp", "drop_mapped_column")
    with pytest.raises(MappingError) as e:
        ERP.map(dropped)
    assert e.value.error_class == "mapped_column_missing"
    assert "'payment_terms'" in e.value.reason and "connectors/erp.yaml" in e.value.reason


def test_delete_and_truncate() -> None:
    (delete,) = mapped("delete")
    assert delete.deleted and delete.entity == "subscription" and delete.customer_ref == "2"
    (truncate,) = decoded("erp", "truncate")
    assert truncate.op == "t" and truncate.key is None
    with pytest.raises(MappingError) as e:
        ERP.map(truncate)
    assert e.value.error_class == "truncate" and "erp.invoices" in e.value.reason


def test_change_ids_are_deterministic() -> None:
    assert [c.change_id for c in mapped("transaction")] == [c.change_id for c in mapped("transaction")]
