"""Process faults under a steady mixed workload: kill -9 of the captures and of the dataflow at 10 random
moments each, an ERP and a CRM database restart (down 10 s), and a restart of the dataflow with another
process count. Afterwards nothing is lost, and customer_360 and the CRM write-back equal a fault-free
processing of the same source changes: every captured change, replayed offline through a fresh
consistency core in commit order. Lifecycle events are counted against it and reported."""

from __future__ import annotations

import os
import random
import signal
import threading
import time
from collections.abc import Iterator
from typing import Any

import orjson
import pytest

from dataflows.config.connectors import load_connectors
from dataflows.core.core import ConsistencyCore
from dataflows.core.decode import decode
from dataflows.core.mapping import SourceMapper
from dataflows.core.policy import build_policy
from dataflows.core.reorder import order_key
from dataflows.outputs import LIFECYCLE_TOPIC
from dataflows.stack.local import LocalStack, capture_process_name
from dataflows.stack.scrape import last_error_line
from tests.support.kafka import TopicReader
from tests.support.stack import running_stack
from tests.support.waiting import wait_until

CUSTOMERS = 150
CAPTURE_TOPICS = [f"erp.erp.{t}" for t in ("customers", "billing_accounts", "subscriptions", "invoices")] + [
    f"crm.crm.{t}" for t in ("accounts", "contacts", "opportunities")]  # fmt: skip


@pytest.fixture(scope="module")
def faulty() -> Iterator[LocalStack]:
    with running_stack("tidemark-faults-", snapshot_interval_s=1.0) as stack:
        yield stack


class Workload(threading.Thread):
    """A steady mix of ERP and CRM changes; statements are retried while a database is down."""

    def __init__(self, stack: LocalStack, seed: int) -> None:
        super().__init__(daemon=True)
        self.stack, self.rnd, self.stop = stack, random.Random(seed), threading.Event()
        self.done = 0

    def _retry(self, fn: Any) -> None:
        while not self.stop.is_set():
            try:
                fn()
                self.done += 1
                return
            except Exception:  # noqa: BLE001 - a database restart: wait and retry the same statement
                time.sleep(0.5)

    def _erp(self, sql: str, params: tuple) -> None:
        def run() -> None:
            with self.stack.erp_admin() as db:
                db.execute(sql, params)
        self._retry(run)

    def _crm(self, sql: str, params: tuple) -> None:
        def run() -> None:
            db = self.stack.crm_admin()
            try:
                with db.cursor() as cur:
                    cur.execute(sql, params)
            finally:
                db.close()
        self._retry(run)

    def run(self) -> None:
        n = 0
        while not self.stop.is_set():
            n += 1
            i = 500_000 + self.rnd.randrange(CUSTOMERS)
            kind = self.rnd.random()
            if kind < 0.35:
                self._erp("UPDATE erp.customers SET credit_status = CASE credit_status WHEN 'ok' THEN 'hold' ELSE 'ok' END "
                          "WHERE id = %s", (i,))  # fmt: skip
            elif kind < 0.55:
                self._erp("UPDATE erp.customers SET legal_name = %s WHERE id = %s", (f"Fault {i} GmbH r{n}", i))
            elif kind < 0.7:
                status = self.rnd.choice(["active", "cancelled", "active", "pending"])
                self._erp("INSERT INTO erp.subscriptions (id, customer_id, plan, seats, status) VALUES (%s, %s, 'growth', 5, %s) "
                          "ON CONFLICT (id) DO UPDATE SET status = excluded.status", (i, i, status))  # fmt: skip
            else:
                self._crm("UPDATE accounts SET owner = %s WHERE id = %s", (self.rnd.choice(["dana", "sam", "kim"]), i))
            time.sleep(0.01)


def _kill(stack: LocalStack, name: str) -> None:
    record = stack.table.running(name)
    if record is not None:
        os.kill(record.pid, signal.SIGKILL)


def offline(stack: LocalStack, reader: TopicReader) -> tuple[dict[str, Any], set[str]]:
    """Fault-free processing of every captured change: decode, map, commit order, one fresh core."""
    reader.poll()
    connectors = load_connectors(stack.settings.connectors_dir)
    mappers = {c.topic_prefix: (c, SourceMapper(c)) for c in connectors.values()}
    changes = []
    for m in reader.messages:
        if m.value is None:
            continue
        config, mapper = mappers[m.topic.split(".")[0]]
        record = decode(orjson.dumps(m.key), orjson.dumps(m.value), source=config.name, dialect=config.dialect)
        changes.append(mapper.map(record))  # type: ignore[arg-type]
    unique = sorted({c.change_id: c for c in changes}.values(), key=order_key)
    core = ConsistencyCore(build_policy(connectors.values()))
    out = core.submit_batch(unique, 0.0)
    out.extend(core.flush(0.0))
    return {cid: r.as_dict() for cid, r in core.records.items()}, {e["event_id"] for e in out.events}


def project(records: dict[str, Any]) -> dict[str, tuple]:
    return {cid: (r.get("legal_name"), r.get("display_name"), r.get("credit_status"), r.get("lifecycle_status"),
                  r.get("sales_owner")) for cid, r in records.items() if r.get("source_ids", {}).get("erp")}  # fmt: skip


def actual(stack: LocalStack) -> dict[str, tuple]:
    with stack.erp_admin("tidemark") as ops:
        rows = ops.execute("SELECT customer_id, legal_name, display_name, credit_status, lifecycle_status, sales_owner "
                           "FROM customer_360 WHERE merged_into IS NULL AND cardinality(erp_customer_ids) > 0").fetchall()  # fmt: skip
    return {r[0]: tuple(r[1:]) for r in rows}


def test_faults_lose_nothing_and_change_nothing(faulty: LocalStack) -> None:
    rnd = random.Random(8)
    with faulty.erp_admin() as db, db.cursor() as cur:
        cur.executemany("INSERT INTO erp.customers (id, legal_name, tax_id, country) VALUES (%s, %s, %s, 'DE')",
                        [(500_000 + i, f"Fault {i} GmbH", f"FLT{i}") for i in range(CUSTOMERS)])  # fmt: skip
    crm = faulty.crm_admin()
    with crm.cursor() as cur:
        cur.executemany("INSERT INTO accounts (id, name, tax_id, country, erp_customer_id) VALUES (%s, %s, %s, 'DE', %s)",
                        [(500_000 + i, f"Fault {i}", f"FLT{i}", 500_000 + i) for i in range(CUSTOMERS)])  # fmt: skip
    crm.close()
    workload = Workload(faulty, seed=9)
    workload.start()
    faults = ["capture-erp", "capture-crm"] * 5 + ["dataflow"] * 10
    rnd.shuffle(faults)
    for fault in faults:  # 20 faults at random moments
        time.sleep(rnd.uniform(1.0, 4.0))
        if fault == "dataflow":
            _kill(faulty, "dataflow-0")
            time.sleep(rnd.uniform(0.1, 1.0))
            faulty.start_dataflow(echo=lambda _l: None)
        else:
            _kill(faulty, fault)
            time.sleep(rnd.uniform(0.1, 1.0))
            faulty.start_capture(fault.removeprefix("capture-"))
    for name, service in (("erp", faulty.erp), ("crm", faulty.crm)):  # database restarts, down 10 s
        faulty.table.stop(name, sig=signal.SIGINT if name == "erp" else signal.SIGTERM)
        time.sleep(10)
        service.start(faulty.table)
        time.sleep(3)
    for name in faulty.dataflow_names():  # another process count
        faulty.table.stop(name, sig=signal.SIGINT)
    two = LocalStack(faulty.settings.model_copy(update={"dataflow_processes": 2}))
    two.start_dataflow(echo=lambda _l: None)
    time.sleep(5)
    workload.stop.set()
    workload.join(timeout=60)
    for source in ("erp", "crm"):
        assert faulty.table.running(capture_process_name(source)), f"capture {source} survived its database restart"

    reader = TopicReader(faulty.settings.kafka_bootstrap, CAPTURE_TOPICS)
    with faulty.erp_admin() as db:
        truth = dict(db.execute("SELECT id::text, credit_status FROM erp.customers WHERE id >= 500000").fetchall())

    def converged() -> str | bool:
        expected, _ = offline(faulty, reader)
        exp = project(expected)
        seen = {r["source_ids"]["erp"][0]: r.get("credit_status") for r in expected.values() if r.get("source_ids", {}).get("erp")}
        lost = [k for k, v in truth.items() if seen.get(k) != v]
        got = actual(faulty)
        differ = [(k, exp.get(k), got.get(k)) for k in set(exp) | set(got) if exp.get(k) != got.get(k)]
        if not lost and not differ:
            return True
        alive = [n for n in two.dataflow_names() if two.table.running(n)]
        errors = [last_error_line(faulty.table.log_dir / f"{n}.log") for n in two.dataflow_names()]
        state["last"] = f"{len(lost)} ERP rows not captured as in the DB; {len(differ)} customers differ, e.g. {differ[:2]}; alive {alive}; errors {errors}"
        return False

    state: dict[str, str] = {}
    try:
        wait_until(converged, 300, "customer_360 to equal the fault-free processing")
    except TimeoutError:
        pytest.fail(state.get("last", "no comparison made"))
    expected, expected_events = offline(faulty, reader)
    crm_rows = faulty.crm_admin()
    with crm_rows.cursor() as cur:
        cur.execute("SELECT erp_customer_id, credit_status, lifecycle_status FROM accounts WHERE id >= 500000")
        written_back = sorted(cur.fetchall())
    crm_rows.close()
    expected_back = sorted((int(r["source_ids"]["erp"][0]), r["credit_status"], r["lifecycle_status"])
                           for r in expected.values() if r.get("source_ids", {}).get("crm"))  # fmt: skip
    assert written_back == expected_back

    events = TopicReader(faulty.settings.kafka_bootstrap, [LIFECYCLE_TOPIC])
    events.wait_for(lambda ms: len(ms) > 0, 30, "lifecycle events")
    time.sleep(3)
    events.poll()
    online = [m.value["event_id"] for m in events.messages if m.value]
    missing, extra = expected_events - set(online), set(online) - expected_events
    print(f"\n{workload.done} workload statements, 20 process kills, 2 database restarts, 1 -> 2 processes: "
          f"customer_360 and CRM equal to fault-free processing for {len(expected)} customers; "
          f"events: {len(expected_events)} expected, {len(missing)} missing, {len(extra)} not in the fault-free set, "
          f"{len(online) - len(set(online))} duplicates on the topic")  # fmt: skip
    # Not asserted (yet): events equal to fault-free processing. A capture or database outage makes that
    # source's changes arrive behind the watermark; they are applied by version (the state above is
    # exact), but the transitions they cause can differ. Fix: source watermarks driven by Debezium
    # heartbeats, so a stalled source holds the watermark instead of going idle.
