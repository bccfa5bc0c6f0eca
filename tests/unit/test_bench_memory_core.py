"""`tidemark bench memory`'s core-state harness drives the dataflow's keyed logics as the flow does: it must
keep working whatever the logics return (it broke silently when the outputs became typed)."""

from __future__ import annotations

from dataflows.bench.memory_bench import core_state


def test_the_core_state_harness_runs_the_flows_logics_and_times_each_snapshot() -> None:
    run = core_state(customers=300, changes_per_snapshot=200, runs=2)
    assert run.customers == 300
    assert len(run.snapshot_ms) == len(run.changed) == 2
    assert all(n > 0 for n in run.changed)
    assert run.ms_per_1000_changed > 0
