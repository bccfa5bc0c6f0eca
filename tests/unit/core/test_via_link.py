"""A row that finds its customer through another captured table (`customer: {column, via}`)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from dataflows.config.connectors import ConnectorConfig
from dataflows.core.core import ConsistencyCore
from dataflows.ingest.decode import ChangeRecord
from dataflows.ingest.mapping import SourceMapper
from dataflows.config.policy import build_policy

SHOP = ConnectorConfig.model_validate({
    "name": "shop", "system": "shop",
    "debezium": {"connector.class": "io.debezium.connector.postgresql.PostgresConnector", "topic.prefix": "shop",
                 "database.hostname": "h", "database.user": "u", "database.password": "${env:P}"},
    "tables": {
        "shop.orders": {"entity": "invoice", "key": ["id"], "customer": {"column": "account"},
                        "fields": {"invoice_status": "status"}},
        "shop.refunds": {"entity": "invoice", "key": ["id"], "customer": {"column": "order_id", "via": "shop.orders"},
                         "fields": {"invoice_status": "'void'"}},
    },
})  # fmt: skip
T0 = datetime(2026, 1, 1, tzinfo=UTC)


def record(table: str, row: dict, lsn: int) -> ChangeRecord:
    return ChangeRecord("shop", table, "c", {"id": row["id"]}, None, row, (lsn, 1), f"lsn:{lsn}",
                        T0 + timedelta(seconds=lsn), str(lsn), False)  # fmt: skip


def test_refund_finds_its_customer_through_its_order() -> None:
    mapper = SourceMapper(SHOP)
    core = ConsistencyCore(build_policy([SHOP]))
    refund_first = mapper.map(record("shop.refunds", {"id": 9, "order_id": 5}, 1))
    assert refund_first.customer_ref is None and refund_first.via == ("shop.orders", "5")
    out = core.submit(refund_first, 0.0)
    out.extend(core.flush())
    assert [e[1] for e in out.errors] == ["unlinked_row"] and "shop.orders row 5" in out.errors[0][2]

    core.submit(mapper.map(record("shop.orders", {"id": 5, "account": "A1", "status": "open"}, 2)), 0.0)
    core.submit(mapper.map(record("shop.refunds", {"id": 10, "order_id": 5}, 3)), 0.0)
    core.flush()
    (golden,) = core.records.values()
    assert set(golden.children["invoice"]) == {"shop:5", "shop:10"}
    assert golden.children["invoice"]["shop:10"]["invoice_status"] == "void"
