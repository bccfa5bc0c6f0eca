"""The customer step's Bytewax logic: a key at rest holds bytes, a snapshot is that key's bytes alone, and
a resumed key carries on where it stood."""

from __future__ import annotations

import pickle
import random
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dataflows import metrics
from dataflows.core.customer import CustomerCore
from dataflows.core.partitioned import LocalPartitioned
from dataflows.core.sequencer import Sequencer
from dataflows.flows.core_logic import CoreMetrics
from dataflows.flows.partitioned import CustomerLogic, WarmStates, snapshot_epoch
from dataflows.outputs import HANDOFF_TOPIC, KAFKA
from tests.unit.core.test_core_properties import POLICY, build
from tests.unit.core.test_partitioned_properties import HISTORIES

OPS = [(("erp", "customers"), 1, {"legal_name": "Acme GmbH"}), (("crm", "accounts"), 2, {"name": "Acme"}),
       (("crm", "accounts"), 2, {"erp_customer_id": 1}), (("crm", "accounts"), 2, {"stage": "customer"})]  # fmt: skip


def _sequenced(sequencer: Sequencer, change: Any) -> list[Any]:
    """The sequencer's messages after `change` arrives 10 s after its commit (None: the end of input)."""
    if change is None:
        sequencer.flush()
    else:
        sequencer.submit_batch([change], change.commit_time.timestamp() + 10)
    return sequencer.take()


def test_a_key_snapshots_its_own_bytes_and_resumes_from_them() -> None:
    changes = build(OPS, [1000] * len(OPS))
    reference = LocalPartitioned(POLICY)
    for change in changes:
        reference.submit_batch([change], change.commit_time.timestamp() + 10)
    reference.flush()
    # The same messages through the adapters, each key resumed from its snapshot after every batch.
    sequencer, customers, counters = Sequencer(POLICY, 1), CustomerCore(POLICY), CoreMetrics()
    snapshots: dict[str, bytes] = {}
    pending = []
    for change in [*changes, None]:
        pending += _sequenced(sequencer, change)
        while pending:
            key, message = pending.pop(0)
            logic = CustomerLogic(customers, counters, snapshots.get(key))
            items, _ = logic.on_batch([(key, message)])
            pending += [pickle.loads(r.value) for i in items for r in KAFKA.records(i)  # noqa: S301
                        if r.topic == HANDOFF_TOPIC]  # fmt: skip
            snapshots[key] = logic.snapshot()
            assert logic.state is None  # at rest: bytes only
    live = {key for key, blob in snapshots.items() if blob[:1] == b"L"}
    assert live == {key for key, state in reference.states.items() if state.record is not None}
    assert len(live) == 1 and len(snapshots) == 2  # the account's first customer was merged away
    resumed = [CustomerLogic(customers, counters, blob) for blob in snapshots.values()]
    assert snapshot_epoch(resumed) == sum(len(b) for b in snapshots.values())


def _through_logics(changes: list[Any], capacity: int, seed: int) -> tuple[list[Any], int]:
    """The outputs of `changes` through the sequencer and long-lived customer logics (as Bytewax keeps them),
    every key touched snapshotted at random epoch ends; and the most keys ever holding objects at rest."""
    rnd, warm = random.Random(seed), WarmStates(capacity)
    sequencer, customers, counters = Sequencer(POLICY, 1), CustomerCore(POLICY), CoreMetrics()
    logics: dict[str, CustomerLogic] = {}
    outputs, touched, most_at_rest, pending = [], set(), 0, []
    for change in [*changes, None]:
        pending += _sequenced(sequencer, change)
        while pending:
            key, message = pending.pop(0)
            logic = logics.setdefault(key, CustomerLogic(customers, counters, None, warm=warm))
            touched.add(key)
            for record in (r for item in logic.on_batch([(key, message)])[0] for r in KAFKA.records(item)):
                if record.topic != HANDOFF_TOPIC:
                    outputs.append((record.topic, record.key, record.value))
                    continue
                # Compared by what it holds (equal objects may pickle to other bytes), decoded twice: the
                # receiver changes the record it is lent, as it would its own copy off the topic.
                outputs.append((record.topic, record.key, pickle.loads(record.value)))  # noqa: S301
                pending.append(pickle.loads(record.value))  # noqa: S301 - written just above
        if rnd.random() < 0.5:  # an epoch ends: Bytewax snapshots the keys it touched
            snapshot_epoch(logics[key] for key in touched)
            touched.clear()
            most_at_rest = max(most_at_rest, sum(1 for k, lg in logics.items() if lg.state and k not in touched))
    return outputs, most_at_rest


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(ops=HISTORIES, gaps=st.lists(st.integers(0, 400), min_size=30, max_size=30), seed=st.integers(0, 2**32),
       capacity=st.integers(1, 4))  # fmt: skip
def test_keeping_states_warm_changes_no_output_and_keeps_at_most_its_capacity(ops, gaps, seed, capacity) -> None:
    changes = build(ops, gaps)
    cold, none_at_rest = _through_logics(changes, 0, seed)
    warm, most_at_rest = _through_logics(changes, capacity, seed)
    assert warm == cold
    assert none_at_rest == 0 and most_at_rest <= capacity


def _events_counted() -> float:
    return sum(s.value for m in metrics.LIFECYCLE_EVENTS.collect() for s in m.samples if s.name.endswith("_total"))


def test_an_epochs_end_publishes_the_counts_its_batches_held_back() -> None:
    """The customer step publishes its counters at most every PUBLISH_EVERY_S; what the last batches before
    traffic stops counted must still reach Prometheus, at the latest when their epoch ends."""
    changes = build(OPS, [1000] * len(OPS))
    sequencer, customers, counters = Sequencer(POLICY, 1), CustomerCore(POLICY), CoreMetrics()
    logics: dict[str, CustomerLogic] = {}
    before = _events_counted()
    for change in [*changes, None]:
        for key, message in _sequenced(sequencer, change):
            logics.setdefault(key, CustomerLogic(customers, counters, None)).on_batch([(key, message)])
    assert sum(customers.stats.events.values()) >= 2  # created, then more, within one publishing interval
    snapshot_epoch(logics.values())
    assert _events_counted() - before == sum(customers.stats.events.values())
