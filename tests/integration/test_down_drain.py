"""`tidemark down` in the middle of traffic drains the dataflow at once, without taking the captures it
stopped for stalled ones, and loses nothing: after `up`, what the pipeline built equals the databases."""

from __future__ import annotations

import time
from pathlib import Path

from dataflows.stack.scratch import scratch_stack, wait_capture_running
from tests.support.seeding import seed_linked_customers
from tests.support.truth import Workload, differences
from tests.support.waiting import wait_until

BASE, CUSTOMERS = 700_000, 120


def test_down_in_the_middle_of_traffic_drains_and_loses_nothing(tmp_path: Path) -> None:
    # A stall hold longer than the drain timeout: were a stopped capture taken for a stalled one, the
    # reorder buffer would hold what it captured last past the timeout, and `down` would say so.
    policy = tmp_path / "policy.yaml"
    policy.write_text("reorder:\n  stall_hold_ms: 3600000\n")
    with scratch_stack("tidemark-down-", policy_file=policy, drain_timeout_s=45.0) as stack:
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
        wait_until(lambda: not differences(stack, BASE), timeout=240, what="the pipeline's tables equal to the databases")
