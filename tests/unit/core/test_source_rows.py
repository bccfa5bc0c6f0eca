"""A golden record derived afresh from its source customers' latest rows (a split, a move) is the same whether
those rows are kept as SourceRows or as whole changes (what snapshots taken before SourceRow hold)."""

from __future__ import annotations

import pickle
from dataclasses import replace

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dataflows.core.golden import SourceRow, rebuild
from tests.unit.core.test_core_properties import CRM_ACCOUNT, ERP_CUSTOMER, IDS, POLICY, build

CUSTOMER_OPS = st.one_of(st.tuples(st.just(("crm", "accounts")), IDS, CRM_ACCOUNT),
                         st.tuples(st.just(("erp", "customers")), IDS, ERP_CUSTOMER))  # fmt: skip


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(ops=st.lists(CUSTOMER_OPS, min_size=1, max_size=12),
       gaps=st.lists(st.integers(0, 400), min_size=12, max_size=12))
def test_source_rows_rebuild_as_whole_changes_did(ops: list, gaps: list[int]) -> None:
    latest = {}
    for change in build(ops, gaps):  # in commit order: each source customer's latest row wins
        latest[(change.system, change.entity_key)] = change
    rows = sorted(latest.values(), key=lambda c: (c.commit_time, c.source, c.position))
    before = rebuild("g", [replace(c, origin=None, fields={}) for c in rows], [], POLICY)
    after = rebuild("g", [pickle.loads(pickle.dumps(SourceRow.of(c))) for c in rows], [], POLICY)  # noqa: S301
    assert after.fields == before.fields and after.source_ids == before.source_ids
    assert after.as_dict() == before.as_dict()
