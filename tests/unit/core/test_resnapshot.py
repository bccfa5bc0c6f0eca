"""A completed snapshot is the truth about its source: rows absent from it are deleted, once, and only
when the snapshot is complete (its `last` row released and nothing ordered before it still buffered)."""

from __future__ import annotations

import random
from dataclasses import replace
from datetime import timedelta

from hypothesis import assume, given, settings
from hypothesis import strategies as st

from dataflows.core.core import ConsistencyCore
from dataflows.core.change import CanonicalChange
from dataflows.config.policy import build_policy
from tests.support.fixtures import connector
from tests.support.world import World

POLICY = build_policy([connector("erp"), connector("crm")])


def snapshot_of(world: World, rows: list[tuple[str, str, int]], last: int) -> list[CanonicalChange]:
    """The rows as one Debezium snapshot reads them: one position and time, the `last` marker on one row."""
    changes = [world.write(s, t, i, dict(world.rows[(s, t, i)]), snapshot=True, advance_ms=0) for s, t, i in rows]
    position, text, at = changes[-1].position, changes[-1].position_text, changes[-1].commit_time
    return [replace(c, position=position, position_text=text, commit_time=at, snapshot_last=n == last)
            for n, c in enumerate(changes)]  # fmt: skip


def erp_state(core: ConsistencyCore) -> tuple[set[str], set[str]]:
    """(ERP customer ids, ERP invoice keys) the golden records hold."""
    customers = {i for r in core.records.values() for i in r.source_ids.get("erp", ())}
    invoices = {k for r in core.records.values() for k in r.children.get("invoice", {})}
    return customers, invoices


def run(core: ConsistencyCore, changes: list[CanonicalChange]) -> None:
    core.submit_batch(list(changes), 0.0)
    core.flush(0.0)


@settings(max_examples=150, deadline=None)
@given(st.lists(st.booleans(), min_size=2, max_size=8), st.lists(st.booleans(), min_size=1, max_size=6),
       st.randoms(use_true_random=False))  # fmt: skip
def test_after_a_completed_snapshot_the_core_holds_exactly_the_snapshot_rows(
    keep_customers: list[bool], keep_invoices: list[bool], rnd: random.Random
) -> None:
    world = World()
    history = [world.write("erp", "customers", i, {"legal_name": f"C{i}", "country": "DE"})
               for i in range(1, len(keep_customers) + 1)]  # fmt: skip
    history += [world.write("erp", "invoices", 100 + n, {"customer_id": 1 + n % len(keep_customers), "amount": "1.00"})
                for n in range(len(keep_invoices))]  # fmt: skip
    core = ConsistencyCore(POLICY)
    run(core, history)
    # The broker loses everything; meanwhile some rows are deleted in the database (deletes never seen).
    for i, keep in enumerate(keep_customers, 1):
        if not keep:
            del world.rows[("erp", "customers", i)]
    for n, keep in enumerate(keep_invoices):
        if not keep:
            del world.rows[("erp", "invoices", 100 + n)]
    world.now += timedelta(seconds=5)
    present = sorted(k for k in world.rows if k[0] == "erp")
    # A snapshot of empty tables has no rows, so no `last` marker: Debezium gives nothing to complete on.
    assume(present)
    snapshot = snapshot_of(world, present, last=rnd.randrange(len(present)))
    rnd.shuffle(snapshot)  # arrival order across partitions is any order
    run(core, snapshot)
    customers, invoices = erp_state(core)
    assert customers == {str(i) for _, t, i in present if t == "customers"}
    assert invoices == {f"erp:{i}" for _, t, i in present if t == "invoices"}
    before = core.snapshots.stats.rows_swept
    run(core, snapshot)  # the same snapshot again (a replay): nothing more to sweep, nothing changes
    assert core.snapshots.stats.rows_swept == before
    assert erp_state(core) == (customers, invoices)


def test_nothing_is_swept_before_the_snapshot_is_complete() -> None:
    world = World()
    run(core := ConsistencyCore(POLICY), [world.write("erp", "customers", i, {"legal_name": "X"}) for i in (1, 2, 3)])
    del world.rows[("erp", "customers", 3)]
    rows = snapshot_of(world, [("erp", "customers", 1), ("erp", "customers", 2)], last=1)
    run(core, [rows[0]])  # the last row has not come yet
    assert erp_state(core)[0] == {"1", "2", "3"}
    run(core, [rows[1]])
    assert erp_state(core)[0] == {"1", "2"}


def test_a_row_changed_after_the_snapshot_point_is_not_swept() -> None:
    world = World()
    run(core := ConsistencyCore(POLICY), [world.write("erp", "customers", 1, {"legal_name": "X"})])
    rows = snapshot_of(world, [("erp", "customers", 1)], last=0)
    newer = world.write("erp", "customers", 2, {"legal_name": "Inserted after the snapshot point"})
    run(core, [newer, *rows])  # streamed insert of row 2 arrives with the snapshot (it is not in it)
    assert erp_state(core)[0] == {"1", "2"}


def test_other_sources_are_untouched_by_a_snapshot() -> None:
    world = World()
    run(core := ConsistencyCore(POLICY), [world.write("crm", "accounts", 7, {"name": "Acme", "country": "DE"}),
                                          world.write("erp", "customers", 1, {"legal_name": "X"})])  # fmt: skip
    run(core, snapshot_of(world, [("erp", "customers", 1)], last=0))
    assert {i for r in core.records.values() for i in r.source_ids.get("crm", ())} == {"7"}
