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
import time
from collections.abc import Iterator
from typing import Any

import pytest

from dataflows.bench.reference import compare
from dataflows.bench.truth import Workload
from dataflows.outputs import LIFECYCLE_TOPIC
from dataflows.stack.local import LocalStack, capture_process_name
from dataflows.stack.scratch import scratch_stack
from tests.support.kafka import TopicReader
from tests.support.seeding import seed_linked_customers
from tests.support.waiting import wait_until

CUSTOMERS = 150
BASE = 500_000
CAPTURE_TOPICS = [f"erp.erp.{t}" for t in ("customers", "billing_accounts", "subscriptions", "invoices")] + [
    f"crm.crm.{t}" for t in ("accounts", "contacts", "opportunities")]  # fmt: skip


@pytest.fixture(scope="module")
def faulty() -> Iterator[LocalStack]:
    with scratch_stack("tidemark-faults-", snapshot_interval_s=1.0) as stack:
        yield stack


def _kill(stack: LocalStack, name: str) -> None:
    record = stack.table.running(name)
    if record is not None:
        os.kill(record.pid, signal.SIGKILL)


class Checker:
    """Compares the online results with fault-free processing of everything captured so far."""

    def __init__(self, stack: LocalStack) -> None:
        self.stack = stack
        self.reader = TopicReader(stack.settings.kafka_bootstrap, CAPTURE_TOPICS)
        self.events = TopicReader(stack.settings.kafka_bootstrap, [LIFECYCLE_TOPIC])

    def _differences(self, dataflow: LocalStack) -> str | None:
        with self.stack.erp_admin() as db:
            truth = dict(db.execute("SELECT id::text, credit_status FROM erp.customers WHERE id >= %s", (BASE,)).fetchall())
        self.reader.poll()
        self.events.poll()
        result = compare(self.stack, self.reader.messages, self.events.messages, BASE)
        seen = {r["source_ids"]["erp"][0]: r.get("credit_status") for r in result.reference.values()
                if r.get("source_ids", {}).get("erp")}  # fmt: skip
        lost = [k for k, v in truth.items() if seen.get(k) != v]
        self.last = (result.events, result.duplicates)
        if not lost and not result.wrong:
            return None
        alive = [n for n in dataflow.dataflow_names() if dataflow.table.running(n)]
        return f"{len(lost)} ERP rows not captured as in the DB; {result.describe()}; dataflow processes alive {alive}"

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
    seed_linked_customers(faulty, BASE, CUSTOMERS, "Fault", "FLT")
    checker, report, statements = Checker(faulty), [], 0

    def phase(name: str, faults: Any, dataflow: LocalStack = faulty) -> None:
        nonlocal statements
        workload = Workload(faulty, BASE, CUSTOMERS, seed=len(report))
        workload.start()
        faults()
        time.sleep(3)
        statements += workload.finish()
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
