"""A third CDC source added with one YAML file and no Python change: a PostgreSQL `billing` database whose
subscriptions reference ERP customers. Captured by the real engine, decoded, mapped and linked."""

from __future__ import annotations

import shutil
from datetime import date
from pathlib import Path

import orjson
import pytest

from dataflows.config.connectors import load_connector
from dataflows.core.core import ConsistencyCore
from dataflows.ingest.decode import decode
from dataflows.ingest.mapping import SourceMapper
from dataflows.config.policy import build_policy
from dataflows.settings import project_root
from dataflows.stack.local import LocalStack, capture_process_name
from dataflows.stack.scratch import wait_capture_running

BILLING_YAML = """\
# A billing system's PostgreSQL database: subscriptions keyed by the ERP customer they bill.
name: billing
system: billing
description: Billing platform subscriptions (PostgreSQL).
debezium:
  connector.class: io.debezium.connector.postgresql.PostgresConnector
  topic.prefix: billing
  database.hostname: ${env:TIDEMARK_ERP_HOST}
  database.port: ${env:TIDEMARK_ERP_PORT}
  database.user: tidemark_capture
  database.password: ${env:TIDEMARK_ERP_CAPTURE_PASSWORD}
  database.dbname: billing
  plugin.name: pgoutput
  publication.name: tidemark_billing
  publication.autocreate.mode: disabled
  slot.name: tidemark_billing
  table.include.list: billing.subscriptions
  decimal.handling.mode: string
owns: [plan, seats, subscription_status, period_start, period_end]
tables:
  billing.subscriptions:
    entity: subscription
    key: [sub_id]
    customer: {column: erp_customer, system: erp}
    fields:
      plan: LOWER(TRIM(product_code))
      seats: CAST(quantity AS INT)
      subscription_status: "CASE state WHEN 'A' THEN 'active' WHEN 'C' THEN 'cancelled' WHEN 'S' THEN 'suspended' ELSE 'pending' END"
      period_start: starts_on
"""

SCHEMA = """
CREATE SCHEMA billing;
CREATE TABLE billing.subscriptions (
    sub_id        text PRIMARY KEY,
    erp_customer  bigint NOT NULL,
    product_code  text NOT NULL,
    quantity      numeric(6, 0) NOT NULL,
    state         char(1) NOT NULL,
    starts_on     date
);
ALTER TABLE billing.subscriptions REPLICA IDENTITY FULL;
CREATE PUBLICATION tidemark_billing FOR TABLE billing.subscriptions;
GRANT USAGE ON SCHEMA billing TO tidemark_capture;
GRANT SELECT ON billing.subscriptions TO tidemark_capture;
"""


@pytest.fixture(scope="module")
def billing_stack(stack: LocalStack, tmp_path_factory) -> LocalStack:
    connectors = tmp_path_factory.mktemp("connectors")
    for name in ("erp", "crm"):
        shutil.copy(project_root() / "connectors" / f"{name}.yaml", connectors)
    (connectors / "billing.yaml").write_text(BILLING_YAML)
    with stack.erp_admin() as db:
        db.execute("CREATE DATABASE billing")
    with stack.erp_admin("billing") as db:
        db.execute(SCHEMA)
    billing = LocalStack(stack.settings.model_copy(update={"connectors_dir": connectors}))
    yield billing
    billing.table.stop(capture_process_name("billing"))
    with stack.erp_admin() as db:
        db.execute("SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots "
                   "WHERE slot_name = 'tidemark_billing'")  # an idle slot would retain WAL forever


def test_new_source_is_captured_decoded_mapped_and_linked(billing_stack: LocalStack, captures: LocalStack,
                                                          reader) -> None:  # fmt: skip
    config = load_connector(billing_stack.settings.connectors_dir / "billing.yaml")
    with billing_stack.erp_admin() as erp:
        erp_id = erp.execute("INSERT INTO erp.customers (legal_name, tax_id, country) "
                             "VALUES ('Billed Co', 'BILL1', 'IE') RETURNING id").fetchone()[0]  # fmt: skip
    with billing_stack.erp_admin("billing") as db:
        db.execute("INSERT INTO billing.subscriptions VALUES ('S-1', %s, ' PRO ', 12, 'A', '2026-05-01')", (erp_id,))
        db.execute("UPDATE billing.subscriptions SET quantity = 15 WHERE sub_id = 'S-1'")

    billing_stack.start_capture("billing")
    wait_capture_running(billing_stack, "billing")
    topic = reader(["billing.billing.subscriptions"])
    messages = topic.wait_for(lambda ms: len(ms) >= 1, 90, "the billing snapshot")
    mapper = SourceMapper(config)
    changes = [mapper.map(decode(*_raw(m), source="billing", dialect=config.dialect)) for m in messages if m.value]
    (snapshot,) = changes
    assert snapshot.snapshot and snapshot.entity == "subscription" and snapshot.entity_key == "S-1"
    assert snapshot.customer_system == "erp" and snapshot.customer_ref == str(erp_id)
    assert snapshot.fields == {"plan": "pro", "seats": 15, "subscription_status": "active",
                               "period_start": date(2026, 5, 1)}  # fmt: skip

    with billing_stack.erp_admin("billing") as db:
        db.execute("UPDATE billing.subscriptions SET state = 'C' WHERE sub_id = 'S-1'")
    messages = topic.wait_for(lambda ms: len([m for m in ms if m.value]) >= 2, 60, "the streamed update")
    update = mapper.map(decode(*_raw(messages[-1]), source="billing", dialect="postgres"))
    assert update.fields == {"subscription_status": "cancelled"}

    # The consistency core links it to the ERP customer: owners come from all three files.
    policy = build_policy([load_connector(p) for p in sorted(billing_stack.settings.connectors_dir.glob("*.yaml"))])
    assert policy.owners["plan"] == ["billing", "erp"]
    core = ConsistencyCore(policy)
    erp_mapper = SourceMapper(load_connector(project_root() / "connectors" / "erp.yaml"))
    erp_topic = reader(["erp.erp.customers"])
    erp_msgs = erp_topic.wait_for(lambda ms: any(m.key == {"id": erp_id} for m in ms), 60, "the ERP customer")
    erp_change = erp_mapper.map(decode(*_raw(next(m for m in erp_msgs if m.key == {"id": erp_id})),
                                       source="erp", dialect="postgres"))  # fmt: skip
    for change in (erp_change, snapshot, update):
        core.submit(change, now=0.0)
    core.flush()
    (record,) = [r for r in core.records.values() if "erp" in r.source_ids and str(erp_id) in r.source_ids["erp"]]
    assert record.children["subscription"]["billing:S-1"]["subscription_status"] == "cancelled"


def _raw(message) -> tuple[bytes | None, bytes | None]:
    return (orjson.dumps(message.key) if message.key is not None else None,
            orjson.dumps(message.value) if message.value is not None else None)  # fmt: skip


def test_the_new_file_validates(billing_stack: LocalStack) -> None:
    path: Path = billing_stack.settings.connectors_dir / "billing.yaml"
    assert load_connector(path).tables["billing.subscriptions"].customer.system == "erp"
