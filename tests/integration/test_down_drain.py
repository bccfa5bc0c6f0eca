"""`tidemark down` in the middle of traffic drains the dataflow at once, without taking the captures it
stopped for stalled ones, and loses nothing: after `up`, what the pipeline built equals the databases."""

from __future__ import annotations

import re
import time
from pathlib import Path

from dataflows.stack.local import LocalStack
from dataflows.stack.scrape import scrape
from dataflows.stack.scratch import scratch_stack, wait_capture_running
from tests.support.seeding import seed_linked_customers
from tests.support.truth import Workload, differences, trace_account
from tests.support.waiting import wait_until

BASE, CUSTOMERS = 700_000, 120


def test_down_in_the_middle_of_traffic_drains_and_loses_nothing(tmp_path: Path) -> None:
    # A stall hold longer than the drain timeout: were a stopped capture taken for a stalled one, the
    # reorder buffer would hold what it captured last past the timeout, and `down` would say so.
    policy = tmp_path / "policy.yaml"
    policy.write_text("reorder:\n  stall_hold_ms: 3600000\n")
    # The durable broker, as `tidemark up` runs it: with the in-memory one, `down` empties the topics, the
    # dataflow finds its offsets gone and asks for a re-snapshot, which hid what the captures lost.
    with scratch_stack("tidemark-down-", policy_file=policy, drain_timeout_s=45.0, broker_storage="s3") as stack:
        seed_linked_customers(stack, BASE, CUSTOMERS, "Drain", "DRN")
        workload = Workload(stack, BASE, CUSTOMERS, seed=5)
        workload.start()
        time.sleep(8)
        said: list[str] = []
        stack.down(echo=said.append)
        workload.finish()
        assert not [line for line in said if "did not drain" in line or "could not mark" in line], said
        stack.up(echo=lambda _l: None)
        for source in stack.connectors():
            wait_capture_running(stack, source)
        wait_until(lambda: not differences(stack, BASE), timeout=240, what="the pipeline's tables equal to the databases",
                   explain=lambda: _explain(stack, said))


def _explain(stack: LocalStack, said: list[str]) -> str:
    """Status, `down`'s lines, the differences, and what the pipeline holds about the first account in them."""
    problems = differences(stack, BASE)
    accounts = [m.group(1) for p in problems if (m := re.match(r"CRM account (\d+)", p))]
    return "; ".join([*(f"{c.name} {c.state} {c.detail}" for c in stack.status()), *said, *problems[:20],
                      *([trace_account(stack, accounts[0])] if accounts else [])])  # fmt: skip


def test_down_stops_a_cluster_whole() -> None:
    """Both processes of a 2-process cluster stop on `down`'s signal and log their clean stop; neither
    outlives its peer long enough to die of the lost connection (Bytewax's "Send thread panic")."""
    with scratch_stack("tidemark-down-", capture=False, dataflow=False, dataflow_processes=2) as stack:
        stack.start_dataflow(echo=lambda _l: None)
        urls = [stack.dataflow_metrics_url(i) for i in range(2)]
        wait_until(lambda: all(scrape(url) for url in urls), timeout=120, what="both dataflow processes serving")
        time.sleep(5)  # the cluster connected and working, not still starting
        stack.down(echo=lambda _l: None)
        logs = {name: (stack.table.log_dir / f"{name}.log").read_text() for name in stack.dataflow_names()}
    for name, text in logs.items():
        assert "stopped" in text.splitlines()[-1] and "Traceback" not in text, f"{name}:\n{text[-2000:]}"
