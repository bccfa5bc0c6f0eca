"""The customer step's Bytewax logic: a key at rest holds bytes, a snapshot is that key's bytes alone, and
a resumed key carries on where it stood."""

from __future__ import annotations

import pickle

from dataflows.core.customer import CustomerCore
from dataflows.core.partitioned import LocalPartitioned
from dataflows.core.sequencer import Sequencer
from dataflows.flows.core_logic import CoreMetrics
from dataflows.flows.partitioned import CustomerLogic, snapshot_epoch
from dataflows.outputs import HANDOFF_TOPIC, KAFKA
from tests.unit.core.test_core_properties import POLICY, build

OPS = [(("erp", "customers"), 1, {"legal_name": "Acme GmbH"}), (("crm", "accounts"), 2, {"name": "Acme"}),
       (("crm", "accounts"), 2, {"erp_customer_id": 1}), (("crm", "accounts"), 2, {"stage": "customer"})]  # fmt: skip


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
        if change is None:
            sequencer.flush()
        else:
            sequencer.submit_batch([change], change.commit_time.timestamp() + 10)
        pending += sequencer.take()
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
