"""Process faults under a steady mixed workload: kill -9 of the captures and of the dataflow at 10 random
moments each, an ERP and a CRM database restart (down 10 s), and a restart of the dataflow with another
process count. After each phase nothing is lost, and customer_360, the CRM write-back and the set of
lifecycle event ids equal a fault-free processing of the same source changes: every captured change,
replayed offline through a fresh consistency core in commit order. (Separate fault-free clusters would
assign different LSNs and so different ids: replaying the very changes captured is what makes ids
comparable.)"""

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

from dataflows.bench.workload import mixed_statement
from dataflows.config.connectors import load_connectors
from dataflows.core.core import ConsistencyCore
from dataflows.core.decode import decode
from dataflows.core.mapping import SourceMapper
from dataflows.core.policy import build_policy
from dataflows.core.reorder import order_key
from dataflows.outputs import LIFECYCLE_TOPIC
from dataflows.stack.local import LocalStack, capture_process_name
from dataflows.stack.scratch import scratch_stack
from tests.support.kafka import TopicReader
from tests.support.waiting import wait_until

CUSTOMERS = 150
CAPTURE_TOPICS = [f"erp.erp.{t}" for t in ("customers", "billing_accounts", "subscriptions", "invoices")] + [
    f"crm.crm.{t}" for t in ("accounts", "contacts", "opportunities")]  # fmt: skip


@pytest.fixture(scope="module")
def faulty() -> Iterator[LocalStack]:
    with scratch_stack("tidemark-faults-", snapshot_interval_s=1.0) as stack:
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
            system, sql, params = mixed_statement(self.rnd, 500_000 + self.rnd.randrange(CUSTOMERS), n)
            (self._erp if system == "erp" else self._crm)(sql, params)
            time.sleep(0.01)


def _kill(stack: LocalStack, name: str) -> None:
    record = stack.table.running(name)
    if record is not None:
        os.kill(record.pid, signal.SIGKILL)


def offline(stack: LocalStack, reader: TopicReader) -> tuple[dict[str, Any], dict[str, dict[str, Any]]]:
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
    first: dict[str, Any] = {}
    for change in changes:  # a capture's replay after kill -9 re-reads a change: its first copy counts
        first.setdefault(change.change_id, change)
    unique = sorted(first.values(), key=order_key)
    core = ConsistencyCore(build_policy(connectors.values()))
    out = core.submit_batch(unique, 0.0)
    out.extend(core.flush(0.0))
    return {cid: r.as_dict() for cid, r in core.records.items()}, {e["event_id"]: e for e in out.events}


def project(records: dict[str, Any]) -> dict[str, tuple]:
    return {cid: (r.get("legal_name"), r.get("display_name"), r.get("credit_status"), r.get("lifecycle_status"),
                  r.get("sales_owner")) for cid, r in records.items() if r.get("source_ids", {}).get("erp")}  # fmt: skip


def actual(stack: LocalStack) -> dict[str, tuple]:
    with stack.erp_admin("tidemark") as ops:
        rows = ops.execute("SELECT customer_id, legal_name, display_name, credit_status, lifecycle_status, sales_owner "
                           "FROM customer_360 WHERE merged_into IS NULL AND cardinality(erp_customer_ids) > 0").fetchall()  # fmt: skip
    return {r[0]: tuple(r[1:]) for r in rows}


def _brief(events: list[dict[str, Any]]) -> list[tuple]:
    """Enough to tell two events apart: the change that caused it is part of an event's id."""
    return sorted((e["occurred_at"], e["event_type"], e["customer_id"][:8], e["source_position"],
                   e["causation_id"][:8]) for e in events)[:6]  # fmt: skip


class Checker:
    """Compares the online results with fault-free processing of everything captured so far."""

    def __init__(self, stack: LocalStack) -> None:
        self.stack = stack
        self.reader = TopicReader(stack.settings.kafka_bootstrap, CAPTURE_TOPICS)
        self.events = TopicReader(stack.settings.kafka_bootstrap, [LIFECYCLE_TOPIC])

    def _differences(self, dataflow: LocalStack) -> str | None:
        with self.stack.erp_admin() as db:
            truth = dict(db.execute("SELECT id::text, credit_status FROM erp.customers WHERE id >= 500000").fetchall())
        expected, expected_events = offline(self.stack, self.reader)
        seen = {r["source_ids"]["erp"][0]: r.get("credit_status") for r in expected.values() if r.get("source_ids", {}).get("erp")}
        lost = [k for k, v in truth.items() if seen.get(k) != v]
        exp, got = project(expected), actual(self.stack)
        differ = [(k, exp.get(k), got.get(k)) for k in set(exp) | set(got) if exp.get(k) != got.get(k)]
        crm = self.stack.crm_admin()
        with crm.cursor() as cur:
            cur.execute("SELECT erp_customer_id, credit_status, lifecycle_status FROM accounts WHERE id >= 500000")
            written_back = sorted(cur.fetchall())
        crm.close()
        expected_back = sorted((int(r["source_ids"]["erp"][0]), r["credit_status"], r["lifecycle_status"])
                               for r in expected.values() if r.get("source_ids", {}).get("crm"))  # fmt: skip
        self.events.poll()
        online = {m.value["event_id"]: m.value for m in self.events.messages if m.value}
        missing = [expected_events[e] for e in expected_events.keys() - online.keys()]
        extra = [online[e] for e in online.keys() - expected_events.keys()]
        self.last = (len(expected_events), len(self.events.messages) - len(online))
        if not lost and not differ and written_back == expected_back and not missing and not extra:
            return None
        alive = [n for n in dataflow.dataflow_names() if dataflow.table.running(n)]
        back = sum(a != b for a, b in zip(written_back, expected_back, strict=False)) + abs(len(written_back) - len(expected_back))
        return (f"{len(lost)} ERP rows not captured as in the DB; {len(differ)} customer_360 rows differ, e.g. "
                f"{differ[:2]}; {back} CRM write-backs differ; events: {len(missing)} missing, e.g. {_brief(missing)}, "
                f"{len(extra)} not in the fault-free set, e.g. {_brief(extra)}; dataflow processes alive {alive}")  # fmt: skip

    def check(self, phase: str, dataflow: LocalStack) -> str:
        """Wait until everything equals fault-free processing (nothing lost, nothing different)."""
        state: dict[str, str | None] = {}

        def equal() -> bool:
            state["last"] = self._differences(dataflow)
            return state["last"] is None

        try:
            wait_until(equal, 240, f"results after {phase} to equal fault-free processing")
        except TimeoutError:
            pytest.fail(f"after {phase}: {state.get('last')}")
        return f"{phase}: equal ({self.last[0]} events, {self.last[1]} duplicate copies on the topic so far)"


def test_faults_lose_nothing_and_change_nothing(faulty: LocalStack) -> None:
    """After each phase of faults, with the workload paused: nothing lost, and customer_360, the CRM
    write-back and the set of lifecycle event ids equal fault-free processing of the same changes."""
    rnd = random.Random(8)
    with faulty.erp_admin() as db, db.cursor() as cur:
        cur.executemany("INSERT INTO erp.customers (id, legal_name, tax_id, country) VALUES (%s, %s, %s, 'DE')",
                        [(500_000 + i, f"Fault {i} GmbH", f"FLT{i}") for i in range(CUSTOMERS)])  # fmt: skip
    crm = faulty.crm_admin()
    with crm.cursor() as cur:
        cur.executemany("INSERT INTO accounts (id, name, tax_id, country, erp_customer_id) VALUES (%s, %s, %s, 'DE', %s)",
                        [(500_000 + i, f"Fault {i}", f"FLT{i}", 500_000 + i) for i in range(CUSTOMERS)])  # fmt: skip
    crm.close()
    checker, report, statements = Checker(faulty), [], 0

    def phase(name: str, faults: Any, dataflow: LocalStack = faulty) -> None:
        nonlocal statements
        workload = Workload(faulty, seed=len(report))
        workload.start()
        faults()
        time.sleep(3)
        workload.stop.set()
        workload.join(timeout=60)
        statements += workload.done
        report.append(checker.check(name, dataflow))

    def kills() -> None:
        faults = ["capture-erp", "capture-crm"] * 5 + ["dataflow"] * 10
        rnd.shuffle(faults)
        for fault in faults:  # 20 faults at random moments
            time.sleep(rnd.uniform(1.0, 4.0))
            name = "dataflow-0" if fault == "dataflow" else fault
            _kill(faulty, name)
            time.sleep(rnd.uniform(0.1, 1.0))
            if fault == "dataflow":
                faulty.start_dataflow(echo=lambda _l: None)
            else:
                faulty.start_capture(fault.removeprefix("capture-"))

    def restart(name: str) -> Any:
        def run() -> None:  # the database down for 10 s while the workload retries
            time.sleep(2)
            faulty.table.stop(name, sig=signal.SIGINT if name == "erp" else signal.SIGTERM)
            time.sleep(10)
            getattr(faulty, name).start(faulty.table)
        return run

    two = LocalStack(faulty.settings.model_copy(update={"dataflow_processes": 2}))

    def more_processes() -> None:
        time.sleep(2)
        for name in faulty.dataflow_names():
            faulty.table.stop(name, sig=signal.SIGINT)
        two.start_dataflow(echo=lambda _l: None)

    phase("10 capture and 10 dataflow kill -9 at random moments", kills)
    phase("ERP database restart", restart("erp"))
    phase("CRM database restart", restart("crm"))
    for source in ("erp", "crm"):
        assert faulty.table.running(capture_process_name(source)), f"capture {source} survived its database restart"
    phase("dataflow restarted with 2 processes instead of 1", more_processes, two)
    print(f"\n{statements} workload statements over {CUSTOMERS} customers; after each phase, with the workload "
          "paused, customer_360, the CRM write-back and the lifecycle event ids equal fault-free processing:")
    print("\n".join(f"  {line}" for line in report))
