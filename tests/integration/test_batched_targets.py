"""The SQL targets write a batch in few statements, still version-guarded: within a batch and against the
table, an older version of a row never overwrites a newer one (real PostgreSQL and MariaDB)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import psycopg
import pytest

from dataflows.stack.local import LocalStack
from dataflows.targets import crm_writeback, customer_360
from dataflows.targets.crm_writeback import CrmWriter
from dataflows.targets.customer_360 import Customer360Writer

pytestmark = pytest.mark.integration
META = {"correlation_id": "c", "causation_id": "x", "source_position": "lsn:1"}


def _record(customer_id: str, version: int, status: str, crm: list[str] | None = None) -> dict:
    return {"customer_id": customer_id, "version": version, "credit_status": status, "lifecycle_status": "active",
            "updated_at": "2026-01-01T00:00:00+00:00", "source_ids": {"erp": ["7"], "crm": crm or []}}  # fmt: skip


def test_customer_360_batch_keeps_the_newest_version(stack: LocalStack) -> None:
    a, b = f"t-{uuid.uuid4()}", f"t-{uuid.uuid4()}"
    writer = Customer360Writer(stack.ops_conninfo())
    try:
        writer.write([customer_360.customer_row(_record(b, 6, "ok"), META)])
        # One batch: a newer and an older version of `a` (in that order), and an older one of `b`.
        writer.write([customer_360.customer_row(r, META) for r in
                      (_record(a, 5, "hold"), _record(a, 3, "ok"), _record(b, 4, "hold"))])  # fmt: skip
        writer.write([customer_360.customer_row(_record(a, 4, "ok"), META)])  # a later, older batch
        with psycopg.connect(stack.ops_conninfo()) as db:
            rows = dict(db.execute("SELECT customer_id, (version, credit_status)::text FROM customer_360 "
                                   "WHERE customer_id = ANY(%s)", ([a, b],)).fetchall())  # fmt: skip
    finally:
        writer.close()
    assert rows == {a: "(5,hold)", b: "(6,ok)"}


def test_customer_360_rows_keep_every_column_s_type(stack: LocalStack) -> None:
    """Numbers exact, ids as arrays, times with their zone, the record as the golden record's JSON."""
    customer = f"t-{uuid.uuid4()}"
    record = {**_record(customer, 2, "ok", ["c1", "c2"]), "credit_limit": 1234567.89, "legal_name": "Ä \\ \"q\" AG",
              "updated_at": "2026-03-04T05:06:07.123456+02:00"}  # fmt: skip
    writer = Customer360Writer(stack.ops_conninfo())
    try:
        writer.write([customer_360.customer_row(record, META)])
        with psycopg.connect(stack.ops_conninfo()) as db:
            row = db.execute("SELECT legal_name, credit_limit::text, erp_customer_ids, crm_account_ids, "
                             "updated_at = '2026-03-04T03:06:07.123456Z', record, schema_version "
                             "FROM customer_360 WHERE customer_id = %s", (customer,)).fetchone()  # fmt: skip
    finally:
        writer.close()
    assert row == ('Ä \\ "q" AG', "1234567.89", ["7"], ["c1", "c2"], True, record, 1)


@pytest.fixture
def accounts(stack: LocalStack) -> Iterator[list[int]]:
    ids = [9_100_001, 9_100_002]
    with stack.crm_admin() as db, db.cursor() as cur:
        cur.executemany("INSERT INTO accounts (id, name) VALUES (%s, 'batch test')", [(i,) for i in ids])
    yield ids
    with stack.crm_admin() as db, db.cursor() as cur:
        cur.execute("DELETE FROM accounts WHERE id IN %s", (ids,))


def test_crm_writeback_batch_keeps_the_newest_version(stack: LocalStack, accounts: list[int]) -> None:
    one, two = (str(i) for i in accounts)
    writer = CrmWriter(**stack.crm_writeback_params())
    try:
        writer.write(crm_writeback.writebacks(_record("g2", 6, "ok", [two])))
        batch = [*crm_writeback.writebacks(_record("g1", 5, "hold", [one])),
                 *crm_writeback.writebacks(_record("g1", 3, "ok", [one])),
                 *crm_writeback.writebacks(_record("g2", 4, "hold", [two]))]  # fmt: skip
        assert writer.write(batch) == 1  # only account one changes
        assert writer.write(crm_writeback.writebacks(_record("g1", 4, "ok", [one]))) == 0
        assert writer.write(crm_writeback.writebacks(_record("g1", 9, "hold", [one]))) == 0  # nothing differs
    finally:
        writer.close()
    with stack.crm_admin() as db, db.cursor() as cur:
        cur.execute("SELECT id, tidemark_version, credit_status FROM accounts WHERE id IN %s ORDER BY id", (accounts,))
        assert cur.fetchall() == ((accounts[0], 5, "hold"), (accounts[1], 6, "ok"))
