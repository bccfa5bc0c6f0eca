"""The dataflow on real services: SQL in ERP and CRM -> lifecycle events, customer_360 rows and CRM
write-backs; echo suppression; poison records; kill -9 under load; a two-process cluster."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from collections import Counter
from typing import Any

import orjson

from dataflows.outputs import GOVERNANCE_TOPIC, LIFECYCLE_TOPIC
from dataflows.stack.local import LocalStack
from tests.support.fixtures import written_by
from tests.support.kafka import TopicReader, produce
from tests.support.seeding import seed_linked_customers
from tests.support.waiting import wait_until


def erp(stack: LocalStack, sql: str, params: tuple = ()) -> Any:
    with stack.erp_admin() as db:
        cur = db.execute(sql, params)
        return cur.fetchone() if cur.description else None


def crm(stack: LocalStack, sql: str, params: tuple = ()) -> Any:
    db = stack.crm_admin()
    try:
        with db.cursor() as cur:
            cur.execute(sql, params)
            return cur.fetchall() if cur.description else cur.lastrowid
    finally:
        db.close()


def c360(stack: LocalStack, where: str, params: tuple = ()) -> list[tuple]:
    with stack.erp_admin("tidemark") as db:
        return db.execute(f"SELECT * FROM customer_360 WHERE {where}", params).fetchall()


def c360_row(stack: LocalStack, crm_id: int) -> dict[str, Any] | None:
    with stack.erp_admin("tidemark") as db:
        cur = db.execute("SELECT * FROM customer_360 WHERE %s = ANY(crm_account_ids)", (str(crm_id),))
        row = cur.fetchone()
        return dict(zip([d.name for d in cur.description], row, strict=True)) if row else None


def events_for(reader: TopicReader, customer_id: str) -> list[dict[str, Any]]:
    reader.poll()
    return [m.value for m in reader.messages if m.value and m.value.get("customer_id") == customer_id]


def test_full_lifecycle_end_to_end(pipeline: LocalStack) -> None:
    lifecycle = TopicReader(pipeline.settings.kafka_bootstrap, [LIFECYCLE_TOPIC])
    account = crm(pipeline, "INSERT INTO accounts (name, domain, industry, owner, stage, tax_id, country) "
                            "VALUES ('Lumen Labs', 'lumen.example', 'software', 'dana', 'prospect', 'NL 0044 95445 B01', 'NL')")  # fmt: skip
    row = wait_until(lambda: c360_row(pipeline, account), 60, "the prospect in customer_360")
    customer_id = row["customer_id"]
    assert row["lifecycle_status"] == "prospect"

    crm(pipeline, "INSERT INTO opportunities (account_id, name, stage, amount) VALUES (%s, 'Deal', 'open', 9000)", (account,))
    crm(pipeline, "UPDATE opportunities SET stage = 'won' WHERE account_id = %s", (account,))
    (erp_id,) = erp(pipeline, "INSERT INTO erp.customers (legal_name, tax_id, country, credit_limit) "
                              "VALUES ('Lumen Labs B.V.', 'NL004495445B01', 'NL', 20000) RETURNING id")  # fmt: skip
    erp(pipeline, "INSERT INTO erp.billing_accounts (customer_id, currency, approval_status) VALUES (%s, 'EUR', 'approved')", (erp_id,))
    erp(pipeline, "INSERT INTO erp.subscriptions (id, customer_id, plan, seats, status, period_start) "
                  "VALUES (9001, %s, 'growth', 10, 'active', current_date)", (erp_id,))  # fmt: skip
    wait_until(lambda: (c360_row(pipeline, account) or {}).get("lifecycle_status") == "active", 60, "active")
    erp(pipeline, "UPDATE erp.customers SET credit_status = 'hold' WHERE id = %s", (erp_id,))
    wait_until(lambda: (c360_row(pipeline, account) or {}).get("lifecycle_status") == "credit_hold", 60, "hold")
    # The CRM shows the ERP's facts.
    wait_until(lambda: crm(pipeline, "SELECT erp_customer_id, credit_status, lifecycle_status FROM accounts WHERE id = %s",
                           (account,)) == ((erp_id, "hold", "credit_hold"),), 60, "CRM write-back of the hold")  # fmt: skip
    erp(pipeline, "UPDATE erp.customers SET credit_status = 'ok' WHERE id = %s", (erp_id,))
    erp(pipeline, "UPDATE erp.subscriptions SET plan = 'scale', seats = 25 WHERE id = 9001")
    erp(pipeline, "UPDATE erp.subscriptions SET status = 'cancelled' WHERE id = 9001")
    erp(pipeline, "UPDATE erp.customers SET status = 'closed' WHERE id = %s", (erp_id,))
    final = wait_until(lambda: (r := c360_row(pipeline, account)) and r["lifecycle_status"] == "closed" and r, 60, "closed")
    assert final["legal_name"] == "Lumen Labs B.V." and final["display_name"] == "Lumen Labs"
    assert final["erp_customer_ids"] == [str(erp_id)] and final["customer_id"] == customer_id
    assert final["correlation_id"] and final["causation_id"] and final["source_position"].startswith("lsn:")

    expected = ["CustomerCreated", "OpportunityWon", "LifecycleStatusChanged", "CustomerOnboarded",
                "BillingAccountApproved", "ContractActivated", "LifecycleStatusChanged", "CreditHoldApplied",
                "LifecycleStatusChanged", "CreditHoldReleased", "LifecycleStatusChanged", "SubscriptionUpgraded",
                "SubscriptionCancelled", "LifecycleStatusChanged", "LifecycleStatusChanged", "AccountClosed"]  # fmt: skip
    events = wait_until(lambda: (e := events_for(lifecycle, customer_id)) and len(e) >= len(expected) and e, 60, "events")
    assert [e["event_type"] for e in events] == expected
    mine = [m for m in lifecycle.messages if m.value and m.value["customer_id"] == customer_id]
    assert len({m.partition for m in mine}) == 1  # keyed by golden customer: one partition
    headers = dict(mine[0].headers)
    assert set(headers) >= {"correlation-id", "causation-id", "event-type", "schema-version", "source-position"}
    assert headers["event-type"] == b"CustomerCreated" and mine[0].key == customer_id
    assert crm(pipeline, "SELECT lifecycle_status FROM accounts WHERE id = %s", (account,)) == (("closed",),)
    lifecycle.close()


def test_own_write_back_is_not_echoed_but_a_users_edit_flows(pipeline: LocalStack) -> None:
    lifecycle = TopicReader(pipeline.settings.kafka_bootstrap, [LIFECYCLE_TOPIC, GOVERNANCE_TOPIC])
    (erp_id,) = erp(pipeline, "INSERT INTO erp.customers (legal_name, tax_id, country) VALUES ('Echo AG', 'EC1', 'DE') RETURNING id")
    account = crm(pipeline, "INSERT INTO accounts (name, tax_id, country, erp_customer_id) VALUES ('Echo', 'EC1', 'DE', %s)", (erp_id,))
    wait_until(lambda: crm(pipeline, "SELECT tidemark_version FROM accounts WHERE id = %s", (account,))[0][0], 60, "write-back")
    customer_id = c360_row(pipeline, account)["customer_id"]
    time.sleep(4)  # the write-back's own capture has come back through the pipeline by now
    settled = len(events_for(lifecycle, customer_id))
    version = c360_row(pipeline, account)["version"]
    time.sleep(3)
    assert len(events_for(lifecycle, customer_id)) == settled  # no loop: echoes cause nothing
    assert c360_row(pipeline, account)["version"] == version

    crm(pipeline, "UPDATE accounts SET owner = 'sam', credit_status = 'hold' WHERE id = %s", (account,))  # a user
    row = wait_until(lambda: (r := c360_row(pipeline, account)) and r["sales_owner"] == "sam" and r, 60, "user edit")
    assert row["credit_status"] == "ok"  # the CRM may not put a customer on hold: ERP-owned
    # The CRM's plain write of its own field is the field's provenance, not a governance record; its edit of
    # an ERP-owned field is an intervention: one governance record.
    record = row["record"] if isinstance(row["record"], dict) else orjson.loads(row["record"])
    assert written_by(record, "sales_owner")["system"] == "crm" and written_by(record, "sales_owner")["owner"] is True
    assert written_by(record, "credit_status")["system"] == "erp"

    def decisions() -> list[tuple[str, str]]:
        lifecycle.poll()
        return [(m.value["field"], m.value["decision"]) for m in lifecycle.messages
                if m.topic == GOVERNANCE_TOPIC and m.value["customer_id"] == customer_id]  # fmt: skip

    wait_until(lambda: ("credit_status", "rejected") in decisions(), 60, "the rejected CRM edit's record")
    assert [d for d in decisions() if d[0] == "sales_owner"] == []
    assert all(decision != "applied" for _, decision in decisions())
    lifecycle.close()


def test_poison_records_go_to_the_dlq_and_the_flow_keeps_running(pipeline: LocalStack) -> None:
    produce(pipeline.settings.kafka_bootstrap, [
        ("erp.erp.customers", b'{"id": 999999}', b"{this is not json"),
        ("erp.erp.customers", b'{"id": 999998}', orjson.dumps({"op": "c", "after": {"id": 1}})),
        ("erp.erp.customers", b'{"id": 999997}', b'{"op":"c","source":{"schema":"erp","table":"nope",'
                                                 b'"lsn":1,"ts_ms":1},"after":{"id":1}}'),
    ])  # fmt: skip
    (erp_id,) = erp(pipeline, "INSERT INTO erp.customers (legal_name, tax_id, country) VALUES ('After Poison', 'AP1', 'FR') RETURNING id")
    wait_until(lambda: c360(pipeline, "%s = ANY(erp_customer_ids)", (str(erp_id),)), 60, "a good change after the poison")

    env = {**os.environ, **pipeline.settings_environment()}
    listing = wait_until(lambda: (out := subprocess.run([sys.executable, "-m", "dataflows.cli", "dlq", "list", "--json"],
                                                        env=env, capture_output=True, text=True).stdout)
                         and len(orjson.loads(out)) >= 3 and orjson.loads(out), 60, "3 dead letters")  # fmt: skip
    classes = Counter(r["error_class"] for r in listing)
    assert classes["malformed_json"] >= 1 and classes["invalid_envelope"] >= 1 and classes["unknown_table"] >= 1
    bad = next(r for r in listing if r["error_class"] == "malformed_json")
    assert bad["payload"] == "{this is not json" and bad["topic"] == "erp.erp.customers" and bad["source"] == "erp"

    replay = subprocess.run([sys.executable, "-m", "dataflows.cli", "dlq", "replay", "--reason", "malformed_json"],
                            env=env, capture_output=True, text=True)  # fmt: skip
    assert replay.returncode == 0 and "replayed 1" in replay.stdout
    time.sleep(4)  # still malformed: dead-lettered again, under the same id
    again = orjson.loads(subprocess.run([sys.executable, "-m", "dataflows.cli", "dlq", "list", "--json", "--reason",
                                         "malformed_json"], env=env, capture_output=True, text=True).stdout)  # fmt: skip
    assert [r["dead_letter_id"] for r in again] == [bad["dead_letter_id"]]


def _dataflow_pids(stack: LocalStack) -> list[int]:
    return [r.pid for n in stack.dataflow_names() if (r := stack.table.running(n))]


def test_kill_9_during_20000_changes_loses_nothing(pipeline: LocalStack) -> None:
    """kill -9 of the dataflow at random moments under load, then restart: customer_360 and the CRM end
    exactly as the sources say; duplicate lifecycle events on the topic are counted and reported."""
    rnd = random.Random(20_000)
    customers = 1000
    seed_linked_customers(pipeline, 100_000, customers, "Load", "LOAD")
    updates = 20_000 - 2 * customers - customers // 2
    kill_at = sorted(rnd.sample(range(updates), 3))
    with pipeline.erp_admin() as db:
        db.execute("INSERT INTO erp.subscriptions (customer_id, plan, seats, status) "
                   "SELECT id, 'growth', 5, 'active' FROM erp.customers WHERE id >= 100000 AND id % 2 = 0")
        kills = 0
        for n in range(updates):
            i = 100_000 + rnd.randrange(customers)
            if rnd.random() < 0.5:
                db.execute("UPDATE erp.customers SET credit_status = CASE credit_status WHEN 'ok' THEN 'hold' ELSE 'ok' END "
                           "WHERE id = %s", (i,))  # fmt: skip
            else:
                db.execute("UPDATE erp.customers SET legal_name = %s WHERE id = %s", (f"Load {i - 100_000} GmbH v{n}", i))
            if kills < len(kill_at) and n == kill_at[kills]:
                for pid in _dataflow_pids(pipeline):
                    os.kill(pid, signal.SIGKILL)
                kills += 1
                time.sleep(rnd.uniform(0.2, 1.5))
                pipeline.start_dataflow(echo=lambda _l: None)
        truth = db.execute("SELECT c.id, c.legal_name, c.credit_status, bool_or(s.status = 'active') "
                           "FROM erp.customers c LEFT JOIN erp.subscriptions s ON s.customer_id = c.id "
                           "WHERE c.id >= 100000 GROUP BY c.id").fetchall()  # fmt: skip
    assert kills == 3
    expected = {str(cid): (name, credit, "credit_hold" if credit == "hold" else "active" if active else "onboarding")
                for cid, name, credit, active in truth}  # fmt: skip

    def landed() -> int:
        with pipeline.erp_admin("tidemark") as ops:
            rows = ops.execute("SELECT erp_customer_ids[1], legal_name, credit_status, lifecycle_status FROM customer_360 "
                               "WHERE erp_customer_ids[1]::bigint >= 100000").fetchall()  # fmt: skip
        return sum(expected.get(r[0]) == tuple(r[1:]) for r in rows)

    wait_until(lambda: landed() == customers, 300, "customer_360 to equal the ERP")
    crm_state = wait_until(lambda: (rows := crm(pipeline, "SELECT erp_customer_id, credit_status, lifecycle_status FROM accounts "
                                                           "WHERE id >= 100000"))  # fmt: skip
                           and sum((expected[str(e)][1], expected[str(e)][2]) == (c, s) for e, c, s in rows) == customers
                           and rows, 120, "the CRM to show the ERP's facts")  # fmt: skip
    assert len(crm_state) == customers
    reader = TopicReader(pipeline.settings.kafka_bootstrap, [LIFECYCLE_TOPIC])
    reader.wait_for(lambda ms: len(ms) > 0, 30, "lifecycle events")
    time.sleep(2)
    reader.poll()
    ids = Counter(m.value["event_id"] for m in reader.messages if m.value)
    duplicates = sum(n - 1 for n in ids.values() if n > 1)
    reader.close()
    print(f"\n20,000 changes, 3 x kill -9 of the dataflow: customer_360 and CRM exact for {customers} customers; "
          f"{len(ids)} distinct lifecycle events, {duplicates} duplicates on the topic (same event ids)")


def test_two_process_cluster_processes_changes(pipeline: LocalStack) -> None:
    """The documented scale-out: `TIDEMARK_DATAFLOW_PROCESSES=2 tidemark up` runs a two-process cluster,
    customers keyed over both processes, merges handed over between them."""
    for name in pipeline.dataflow_names():
        pipeline.table.stop(name, sig=signal.SIGINT)
    two = LocalStack(pipeline.settings.model_copy(update={"dataflow_processes": 2}))
    two.start_dataflow(echo=lambda _l: None)
    try:
        assert len(_dataflow_pids(two)) == 2
        (erp_id,) = erp(pipeline, "INSERT INTO erp.customers (legal_name, tax_id, country) VALUES ('Two Proc', 'TP1', 'SE') RETURNING id")
        wait_until(lambda: c360(pipeline, "%s = ANY(erp_customer_ids)", (str(erp_id),)), 90, "processing by the cluster")
        # Merges: golden customers keyed on both processes hand their records over (the hand-off topic).
        pairs = []
        for i in range(8):
            (e,) = erp(pipeline, "INSERT INTO erp.customers (legal_name, country) VALUES (%s, 'SE') RETURNING id",
                       (f"Omega{i} Holding",))  # fmt: skip
            pairs.append((e, crm(pipeline, "INSERT INTO accounts (name, stage, country) VALUES (%s, 'prospect', 'SE')",
                                 (f"Kappa{i} Sales",))))  # fmt: skip
        wait_until(lambda: all(c360_row(pipeline, a) for _, a in pairs), 90, "the accounts as customers of their own")
        for e, a in pairs:
            crm(pipeline, "UPDATE accounts SET erp_customer_id = %s WHERE id = %s", (e, a))
        merged = lambda: all((c360_row(pipeline, a) or {}).get("erp_customer_ids") == [str(e)] for e, a in pairs)  # noqa: E731
        wait_until(merged, 90, "each account merged into its ERP customer")
        assert len(_dataflow_pids(two)) == 2
    finally:
        for name in two.dataflow_names():
            two.table.stop(name, sig=signal.SIGINT)
        pipeline.start_dataflow(echo=lambda _l: None)


def test_bad_values_oversized_records_and_dropped_columns_go_to_the_dlq(pipeline: LocalStack) -> None:
    """Each bad record lands in the DLQ with a clear reason; everything else keeps flowing. The size limit
    is on what Tidemark keeps: a row wide only in unmapped columns flows."""
    from dataflows.dlq import DlqFilter, read

    conninfo = pipeline.ops_conninfo()
    bad_country = crm(pipeline, "INSERT INTO accounts (name, country) VALUES ('Bad Country', 'D1')")
    big = "x" * (2 * 1024 * 1024)
    (wide,) = erp(pipeline, "INSERT INTO erp.customers (legal_name, country, notes) VALUES ('Wide Notes AG', 'DE', %s) "
                            "RETURNING id", (big,))  # fmt: skip
    (huge,) = erp(pipeline, "INSERT INTO erp.customers (legal_name, country) VALUES (%s, 'DE') RETURNING id", (big,))
    crm(pipeline, "ALTER TABLE opportunities DROP COLUMN close_date")  # a mapped column, gone
    crm(pipeline, "INSERT INTO opportunities (account_id, name, stage) VALUES (%s, 'After DDL', 'open')", (bad_country,))
    good = crm(pipeline, "INSERT INTO accounts (name, country) VALUES ('Still Flowing', 'PT')")
    wait_until(lambda: c360_row(pipeline, good), 60, "a good change after the bad ones")

    def classes() -> dict[str, dict[str, Any]]:
        return {r["error_class"]: r for r in read(conninfo, DlqFilter(source="crm"))}

    found = wait_until(lambda: (c := classes()) and {"invalid_value", "mapped_column_missing"} <= set(c) and c,
                       60, "the two CRM dead letters")  # fmt: skip
    assert "country" in found["invalid_value"]["reason"] and "'D1'" in found["invalid_value"]["reason"]
    (oversized,) = wait_until(lambda: read(conninfo, DlqFilter(source="erp", reason="oversized")), 60, "oversized")
    assert "exceeds" in oversized["reason"] and f'"id":{huge}' in oversized["key"].replace(" ", "")
    wait_until(lambda: c360(pipeline, "%s = ANY(erp_customer_ids)", (str(wide),)), 60, "the wide row, applied")
    missing = found["mapped_column_missing"]["reason"]
    assert "'close_date'" in missing and "connectors/crm.yaml" in missing
    assert c360_row(pipeline, bad_country) is None  # the bad row was not half-applied
