"""The demo's one-line summaries read the outputs as the core writes them (the demo's reader thread died
on the golden record's provenance when its shape changed)."""

from __future__ import annotations

from dataflows.core.core import ConsistencyCore
from dataflows.core.outputs import GoldenRecordUpdated
from dataflows.demo import describe
from dataflows.outputs import CUSTOMERS_TOPIC, emit
from tests.support.world import World
from tests.unit.core.test_lifecycle_scenario import POLICY


def test_a_golden_record_line_names_who_wrote_the_credit_status() -> None:
    world, core = World(), ConsistencyCore(POLICY)
    out = core.submit(world.write("erp", "customers", 42, {"legal_name": "Acme GmbH", "tax_id": "DE136695976",
                                                           "country": "DE", "credit_status": "hold", "status": "active"}),
                      now=0.0)  # fmt: skip
    out.extend(core.flush())
    updates = [o for o in emit(out) if isinstance(o, GoldenRecordUpdated)]
    assert updates
    line = describe(CUSTOMERS_TOPIC, updates[-1].wire)
    assert line is not None and "credit=hold (by erp)" in line
