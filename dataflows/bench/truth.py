"""The databases as they are versus what the pipeline built from them: customer_360 (ERP customers, their
subscriptions, the CRM owner), the CRM write-back, and deletes (a deleted row is in no golden record).
A steady workload of real SQL to run while components are stopped, restarted or wiped."""

from __future__ import annotations

import random
import threading
import time
from typing import Any

from dataflows.bench.workload import mixed_statement
from dataflows.stack.local import LocalStack


def seed(stack: LocalStack, base: int, customers: int) -> None:
    """`customers` ERP customers with a CRM account each (linked), a subscription (id base+20000+i) and an
    opportunity (id base+30000+i) each, and as many ERP customers without children (ids base+10000+i)."""
    with stack.erp_admin() as db, db.cursor() as cur:
        cur.executemany("INSERT INTO erp.customers (id, legal_name, tax_id, country) VALUES (%s, %s, %s, 'DE')",
                        [(base + i, f"Truth {base + i} GmbH", f"TR{base + i}") for i in range(customers)]
                        + [(base + 10000 + i, f"Lone {base + i} GmbH", f"LN{base + i}") for i in range(customers)])  # fmt: skip
        cur.executemany("INSERT INTO erp.subscriptions (id, customer_id, plan, seats, status) VALUES (%s, %s, 'scale', 1, 'active')",
                        [(base + 20000 + i, base + i) for i in range(customers)])  # fmt: skip
    crm = stack.crm_admin()
    with crm.cursor() as cur:
        cur.executemany("INSERT INTO accounts (id, name, tax_id, country, erp_customer_id) VALUES (%s, %s, %s, 'DE', %s)",
                        [(base + i, f"Truth {base + i}", f"TR{base + i}", base + i) for i in range(customers)])  # fmt: skip
        cur.executemany("INSERT INTO opportunities (id, account_id, name, stage) VALUES (%s, %s, 'Deal', 'open')",
                        [(base + 30000 + i, base + i) for i in range(customers)])  # fmt: skip
    crm.close()


def delete_some(stack: LocalStack, base: int, ids: list[int]) -> None:
    """Delete, for each i: the childless ERP customer base+10000+i, subscription base+20000+i and
    opportunity base+30000+i (rows the workload never touches)."""
    with stack.erp_admin() as db, db.cursor() as cur:
        cur.executemany("DELETE FROM erp.customers WHERE id = %s", [(base + 10000 + i,) for i in ids])
        cur.executemany("DELETE FROM erp.subscriptions WHERE id = %s", [(base + 20000 + i,) for i in ids])
    crm = stack.crm_admin()
    with crm.cursor() as cur:
        cur.executemany("DELETE FROM opportunities WHERE id = %s", [(base + 30000 + i,) for i in ids])
    crm.close()


class Workload(threading.Thread):
    """Steady mixed ERP and CRM changes over customers base..base+customers-1; statements are retried
    while a database is down."""

    def __init__(self, stack: LocalStack, base: int, customers: int, seed: int) -> None:
        super().__init__(daemon=True)
        self.stack, self.base, self.customers = stack, base, customers
        self.rnd, self.stop, self.done = random.Random(seed), threading.Event(), 0

    def _run_one(self, system: str, sql: str, params: tuple) -> None:
        while not self.stop.is_set():
            try:
                if system == "erp":
                    with self.stack.erp_admin() as db:
                        db.execute(sql, params)
                else:
                    db = self.stack.crm_admin()
                    try:
                        with db.cursor() as cur:
                            cur.execute(sql, params)
                    finally:
                        db.close()
                self.done += 1
                return
            except Exception:  # noqa: BLE001 - a database restart: wait and retry the same statement
                time.sleep(0.5)

    def run(self) -> None:
        n = 0
        while not self.stop.is_set():
            n += 1
            self._run_one(*mixed_statement(self.rnd, self.base + self.rnd.randrange(self.customers), n))
            time.sleep(0.01)

    def finish(self) -> int:
        self.stop.set()
        self.join(timeout=60)
        return self.done


def _database(stack: LocalStack, base: int) -> dict[str, Any]:
    hi = base + 40000
    with stack.erp_admin() as db:
        customers = {str(i): (n, c) for i, n, c in db.execute(
            "SELECT id, legal_name, credit_status FROM erp.customers WHERE id >= %s AND id < %s", (base, hi))}  # fmt: skip
        subs: dict[str, set[str]] = {}
        for sid, cid in db.execute("SELECT id, customer_id FROM erp.subscriptions WHERE id >= %s AND id < %s "
                                   "OR customer_id >= %s AND customer_id < %s", (base, hi, base, hi)):  # fmt: skip
            subs.setdefault(str(cid), set()).add(f"erp:{sid}")
    crm = stack.crm_admin()
    with crm.cursor() as cur:
        cur.execute("SELECT id, erp_customer_id, owner, credit_status FROM accounts WHERE id >= %s AND id < %s", (base, hi))
        accounts = {str(a): (str(e), o, c) for a, e, o, c in cur.fetchall()}
        cur.execute("SELECT id, account_id FROM opportunities WHERE id >= %s AND id < %s", (base, hi))
        opps: dict[str, set[str]] = {}
        for oid, aid in cur.fetchall():
            opps.setdefault(str(aid), set()).add(f"crm:{oid}")
    crm.close()
    return {"customers": customers, "subs": subs, "accounts": accounts, "opps": opps}


def differences(stack: LocalStack, base: int) -> list[str]:
    """What customer_360 and the CRM write-back get wrong about the databases (empty: they agree)."""
    truth = _database(stack, base)
    with stack.erp_admin("tidemark") as ops:
        rows = ops.execute("SELECT erp_customer_ids, crm_account_ids, legal_name, credit_status, sales_owner, record "
                           "FROM customer_360 WHERE merged_into IS NULL").fetchall()  # fmt: skip
    problems: list[str] = []
    golden_by_erp: dict[str, Any] = {}
    for erp_ids, crm_ids, name, credit, owner, record in rows:
        for e in erp_ids or []:
            if base <= int(e) < base + 40000:
                golden_by_erp[e] = (name, credit, set(record.get("subscriptions", {})), owner, crm_ids or [],
                                    set(record.get("opportunities", {})))  # fmt: skip
    for e in golden_by_erp.keys() - truth["customers"].keys():
        problems.append(f"ERP customer {e} is deleted but still in customer_360")
    for e, (name, credit) in truth["customers"].items():
        got = golden_by_erp.get(e)
        if got is None:
            problems.append(f"ERP customer {e} missing from customer_360")
        elif (got[0], got[1], got[2]) != (name, credit, truth["subs"].get(e, set())):
            problems.append(f"ERP customer {e}: customer_360 {got[:3]} != database {(name, credit, truth['subs'].get(e, set()))}")
    for a, (e, owner, written_credit) in truth["accounts"].items():
        got = golden_by_erp.get(e)
        if got is None:
            continue
        if a not in got[4] or got[3] != owner or got[5] != truth["opps"].get(a, set()):
            problems.append(f"CRM account {a}: customer_360 owner/opportunities {got[3], got[5]} != {owner, truth['opps'].get(a, set())}")
        if written_credit != truth["customers"][e][1]:
            problems.append(f"CRM account {a}: written-back credit {written_credit} != ERP {truth['customers'][e][1]}")
    return problems


def trace_account(stack: LocalStack, account: str, read_s: float = 10.0) -> str:
    """What the pipeline holds about CRM account `account`, so that a difference explains itself: its changes
    on the capture topic (offset, binlog position, owner) and the customer_360 rows that name it or its ERP
    customer (version, ids, owner)."""
    from dataflows.bench.topics import TopicReader

    reader = TopicReader(stack.settings.kafka_bootstrap, ["crm.crm.accounts"])
    try:
        deadline = time.monotonic() + read_s
        while time.monotonic() < deadline and (reader.poll() or not reader.messages):
            pass  # read to the end: until a poll brings nothing
    finally:
        reader.close()
    captured = []
    for m in reader.messages:
        value = m.value.get("payload", m.value) if isinstance(m.value, dict) else {}
        row = value.get("after") or value.get("before") or {}
        if str(row.get("id")) == account:
            source = value.get("source", {})
            captured.append(f"@{m.partition}:{m.offset} {value.get('op')} {source.get('file')}:{source.get('pos')} "
                            f"owner={row.get('owner')}")  # fmt: skip
    crm = stack.crm_admin()
    with crm.cursor() as cur:
        cur.execute("SELECT erp_customer_id FROM accounts WHERE id = %s", (account,))
        erp = str(found[0]) if (found := cur.fetchone()) else ""
    crm.close()
    with stack.erp_admin("tidemark") as ops:
        rows = ops.execute("SELECT customer_id, version, erp_customer_ids, crm_account_ids, sales_owner, merged_into "
                           "FROM customer_360 WHERE %s = ANY(crm_account_ids) OR %s = ANY(erp_customer_ids)",
                           (account, erp)).fetchall()  # fmt: skip
    return f"account {account} captured: {captured or 'nothing'}; customer_360 rows: {rows}"
