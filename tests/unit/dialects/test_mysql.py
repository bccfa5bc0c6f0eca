"""The MySQL-family dialect: its own rules, then decoding and mapping of real binlog envelopes
(tests/fixtures/debezium/crm.jsonl)."""

from __future__ import annotations

from datetime import date
from decimal import Decimal

import pytest

from dataflows.config.connectors import connect_config
from dataflows.dialects import BY_CONNECTOR_CLASS, MYSQL
from dataflows.dialects.base import EnvelopeError
from dataflows.ingest.decode import decode
from dataflows.targets import crm_writeback
from dataflows.targets.sql import versioned_upsert
from dataflows.ingest.mapping import SourceMapper
from dataflows.core.reorder import order_key
from tests.support.fixtures import as_kafka, connector, decoded, recorded

CRM = SourceMapper(connector("crm"))


def mapped(scenario: str):
    return [CRM.map(r) for r in decoded("crm", scenario)]


def test_mysql_and_mariadb_connectors_select_the_mysql_family() -> None:
    for cls in ("io.debezium.connector.mysql.MySqlConnector", "io.debezium.connector.mariadb.MariaDbConnector"):
        assert BY_CONNECTOR_CLASS[cls] is MYSQL
    assert connector("crm").dialect is MYSQL and MYSQL.heartbeat_required
    assert MYSQL.container_key == "database.include.list" and MYSQL.default_port == 3306


def test_position_is_file_index_offset_row_then_op_rank() -> None:
    first = MYSQL.position({"file": "mariadb-bin.000002", "pos": 400, "row": 1}, 1)
    assert first == ((2, 400, 1, 1), "mariadb-bin.000002:400:1")
    # A later binlog file orders after every position of an earlier one, whatever its offset.
    assert first < MYSQL.position({"file": "mariadb-bin.000010", "pos": 4, "row": None}, 0)
    with pytest.raises(EnvelopeError, match="without source.file/source.pos"):
        MYSQL.position({"lsn": 1}, 0)
    with pytest.raises(EnvelopeError, match="unexpected binlog file name"):
        MYSQL.position({"file": "binlog", "pos": 4}, 0)


def test_container_is_the_database() -> None:
    assert MYSQL.container({"db": "crm", "schema": None}) == "crm"


@pytest.mark.parametrize(("source", "read_ms", "resolution"), [
    ({"ts_ms": 1_700_000_000_000}, 1_700_000_000_250, 250_000),  # the commit was before Debezium read it
    ({"ts_ms": 1_700_000_000_000}, 1_700_000_005_000, 999_999),  # at most the rest of its second
    ({"ts_ms": 1_700_000_000_000}, None, 999_999),
    ({"ts_ms": 1_700_000_000_123}, 1_700_000_000_500, 0),  # a time finer than seconds is exact
    ({"ts_ms": 1_700_000_000_000, "ts_us": 1_700_000_000_000_007}, 1_700_000_000_500, 0),
])  # fmt: skip
def test_commit_time_of_whole_seconds_may_be_later(source: dict, read_ms: int | None, resolution: int) -> None:
    assert MYSQL.commit_resolution_us(source, {"ts_ms": read_ms}) == resolution


def test_schema_history_properties(tmp_path) -> None:
    # The binlog carries no table definitions: Debezium must keep their history, in a file or a topic.
    embedded = MYSQL.embedded_properties("crm", tmp_path)
    assert embedded["schema.history.internal.file.filename"] == str(tmp_path / "schema-history.dat")
    connect = connect_config(connector("crm"), "kafka:9092")
    assert connect["schema.history.internal.kafka.bootstrap.servers"] == "kafka:9092"
    assert connect["schema.history.internal.kafka.topic"] == "_tidemark.schema-history.crm"


def test_upsert_keeps_every_column_unless_the_version_is_newer() -> None:
    sql = versioned_upsert("t", ["id", "a", "v"], "id", "v", MYSQL)
    assert sql.startswith("INSERT INTO `t` (`id`, `a`, `v`) VALUES (%s, %s, %s) ON DUPLICATE KEY UPDATE ")
    # The version is assigned last, so the column's IF still compares against the row's old version.
    assert sql.endswith("`a` = IF(VALUES(v) > `v`, VALUES(a), `a`), `v` = GREATEST(`v`, VALUES(v))")


def test_null_safe_equality_guards_the_crm_write_back() -> None:
    assert MYSQL.null_safe_equal("a") == "a <=> ?"
    assert crm_writeback.UPDATE.endswith("AND `a`.`lifecycle_status` <=> `n`.`lifecycle_status`)")


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
