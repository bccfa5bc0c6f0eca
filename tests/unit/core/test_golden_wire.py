"""A golden record's wire sections (golden._Wire) follow every change: after each change of any generated
history (owner and non-owner writes, parts added, changed and deleted, merges, splits and the records they
derive afresh), as_dict equals the dict built afresh from the record's fields and parts, byte for byte as
JSON, key order included."""

from __future__ import annotations

import pickle
import random

import orjson
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dataflows.core.core import ConsistencyCore
from dataflows.core.golden import GoldenRecord
from tests.unit.core.test_core_properties import IDS, OPS, POLICY, arrivals_within_grace, build

# Two customers that each gathered parts, linked later (a merge: one record absorbs the other), amid any ops.
LINKED_LATE = st.tuples(IDS, IDS, IDS, IDS).map(lambda ids: [
    (("erp", "customers"), ids[0], {"legal_name": "Acme GmbH"}),
    (("erp", "subscriptions"), ids[1], {"customer_id": ids[0], "seats": 5}),
    (("crm", "accounts"), ids[2], {"name": "Beta", "owner": "sam"}),
    (("crm", "opportunities"), ids[3], {"account_id": ids[2], "stage": "won"}),
    (("crm", "accounts"), ids[2], {"erp_customer_id": ids[0]}),
])  # fmt: skip
HISTORIES = st.tuples(st.lists(OPS, max_size=15), LINKED_LATE, st.lists(OPS, max_size=15)).map(
    lambda parts: [*parts[0], *parts[1], *parts[2]])


def afresh(record: GoldenRecord) -> GoldenRecord:
    """The same record without its wire sections (a snapshot drops them)."""
    copy = pickle.loads(pickle.dumps(record))  # noqa: S301 - our own bytes
    assert "_wire" not in vars(copy)
    return copy


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(ops=st.one_of(st.lists(OPS, min_size=1, max_size=40), HISTORIES),
       gaps=st.lists(st.integers(0, 400), min_size=40, max_size=40), seed=st.integers(0, 2**32))  # fmt: skip
def test_wire_sections_follow_every_change(ops: list, gaps: list[int], seed: int) -> None:
    core = ConsistencyCore(POLICY)
    for now, change in arrivals_within_grace(build(ops, gaps), random.Random(seed), 0.2, {}):
        core.submit_batch([change], now)
        for record in core.records.values():  # every record's sections exist before its next change
            assert orjson.dumps(record.as_dict()) == orjson.dumps(afresh(record).as_dict()), record.customer_id
    core.flush()
    for record in core.records.values():
        assert orjson.dumps(record.as_dict()) == orjson.dumps(afresh(record).as_dict()), record.customer_id


def test_a_snapshot_carries_no_wire_sections() -> None:
    record = GoldenRecord("g1")
    record.as_dict()
    assert "_wire" in vars(record) and "_wire" not in pickle.loads(pickle.dumps(record)).__dict__  # noqa: S301
