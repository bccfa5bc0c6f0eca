"""A capture whose engine fails during a broker outage exits non-zero with the reason: never a zombie."""

from __future__ import annotations

import os
import time

from dataflows.stack.local import capture_process_name, read_capture_status
from dataflows.stack.processes import is_alive
from dataflows.stack.scratch import scratch_stack


def test_a_capture_failing_in_a_broker_outage_exits_with_the_reason() -> None:
    with scratch_stack("tidemark-outage-", dataflow=False) as stack:
        record = stack.table.get(capture_process_name("erp"))
        assert record is not None
        stack.table.stop("kafka")  # the outage
        with stack.erp_admin() as db:
            db.execute("INSERT INTO erp.customers (legal_name, tax_id, country) VALUES ('Outage AG', 'OUT1', 'DE')")

        deadline = time.monotonic() + 300
        while is_alive(record):
            assert time.monotonic() < deadline, "the capture is still alive five minutes into the outage"
            time.sleep(1)
        _, wait_status = os.waitpid(record.pid, 0)  # a child of this test process: its exit code
        assert os.waitstatus_to_exitcode(wait_status) == 1
        status = read_capture_status(stack.capture_state_dir("erp"))
        assert status["state"] == "failed"
        assert status["last_error"], status
        erp_row = {r.name: r for r in stack.status()}[capture_process_name("erp")]
        assert erp_row.state == "down"
        assert erp_row.detail["last_error"].endswith(f"(log: {record.log})")
