"""Ordering, dedupe and merge claims of the consistency core, checked over thousands of generated cases."""

from __future__ import annotations

import random
from datetime import timedelta
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dataflows.bench.workload import vat_de
from dataflows.core.core import ConsistencyCore
from dataflows.core.inputs import StewardCommand
from dataflows.core.change import CanonicalChange
from dataflows.config.policy import build_policy
from dataflows.core.reorder import order_key
from tests.support.fixtures import connector
from tests.support.world import World

POLICY = build_policy([connector("erp"), connector("crm")])
VAT1, VAT2 = vat_de(1), vat_de(2)
GRACE_MS = POLICY.reorder.grace_ms

# -- workloads -----------------------------------------------------------------------------------
IDS = st.integers(1, 3)
CRM_ACCOUNT = st.fixed_dictionaries({}, optional={
    "name": st.sampled_from(["Acme", "Acme Ltd", "Beta"]), "tax_id": st.sampled_from([None, "DE 1", VAT1, VAT2]),
    "country": st.sampled_from(["DE", "FR"]), "stage": st.sampled_from(["prospect", "customer"]),
    "domain": st.sampled_from([None, "acme.example", "beta.example"]), "erp_customer_id": st.one_of(st.none(), IDS),
    "owner": st.sampled_from(["dana", "sam"])})  # fmt: skip
ERP_CUSTOMER = st.fixed_dictionaries({}, optional={
    "legal_name": st.sampled_from(["Acme GmbH", "Beta AG", "Gamma"]), "tax_id": st.sampled_from([None, "N/A", VAT1, VAT2]),
    "country": st.sampled_from(["DE", "FR"]), "credit_status": st.sampled_from(["ok", "hold"]),
    "status": st.sampled_from(["active", "suspended", "closed"]), "credit_limit": st.sampled_from(["0.00", "100.00"]),
    "payment_terms": st.just("NET30")})  # fmt: skip
SUBSCRIPTION = st.fixed_dictionaries({"customer_id": IDS}, optional={
    "plan": st.sampled_from(["growth", "scale"]), "seats": st.sampled_from([1, 5, 10]),
    "status": st.sampled_from(["pending", "active", "cancelled", "suspended"])})  # fmt: skip
OPPORTUNITY = st.fixed_dictionaries({"account_id": IDS}, optional={
    "stage": st.sampled_from(["open", "won", "lost"]), "amount": st.sampled_from(["10.00", "99.50"]),
    "name": st.just("Deal")})  # fmt: skip
ERP_CUSTOMER_BASE = {"legal_name": "X", "country": "DE", "credit_status": "ok", "status": "active",
                     "credit_limit": "0.00", "payment_terms": "NET30"}  # fmt: skip
SUB_BASE = {"plan": "growth", "seats": 1, "status": "pending"}
OPP_BASE = {"name": "Deal", "stage": "open"}

OPS = st.one_of(
    st.tuples(st.just(("crm", "accounts")), IDS, CRM_ACCOUNT),
    st.tuples(st.just(("erp", "customers")), IDS, ERP_CUSTOMER),
    st.tuples(st.just(("erp", "subscriptions")), IDS, SUBSCRIPTION),
    st.tuples(st.just(("crm", "opportunities")), IDS, OPPORTUNITY),
    st.tuples(st.just(("crm", "opportunities")), IDS, st.just(None)),  # delete
    st.tuples(st.just(("steward", "split")), IDS, st.sampled_from(["crm", "erp"])),  # split it off its customer
    st.tuples(st.just(("steward", "join")), IDS, IDS),  # crm account and erp customer are one
)


def build(ops: list[Any], gaps: list[int]) -> list[CanonicalChange]:
    """Apply the ops to a simulated ERP and CRM; return their canonical changes in commit order."""
    world = World()
    for ((source, table), row_id, values), gap in zip(ops, gaps, strict=False):
        if source == "steward":
            world.now += timedelta(milliseconds=gap)
            ref = f"{values}:{row_id}" if table == "split" else f"crm:{row_id}"
            targets = (ref,) if table == "split" else (ref, f"erp:{values}")
            world.log.append(StewardCommand(f"cmd-{len(world.log)}", table, targets, "dana", world.now,
                                            ref if table == "split" else None))  # fmt: skip
            continue
        exists = (source, table, row_id) in world.rows
        if values is None:
            if exists:
                world.write(source, table, row_id, delete=True, advance_ms=gap)
            continue
        base = {} if exists else {"erp": {"customers": ERP_CUSTOMER_BASE, "subscriptions": SUB_BASE},
                                  "crm": {"opportunities": OPP_BASE}}.get(source, {}).get(table, {})  # fmt: skip
        world.write(source, table, row_id, {**base, **values}, advance_ms=gap)
    return sorted(world.log, key=order_key)


def run(core: ConsistencyCore, arrivals: list[tuple[float, CanonicalChange]]) -> dict[str, Any]:
    events, governance, customers = [], [], {}
    outs = [core.submit_batch([change], now) if isinstance(change, StewardCommand) else core.submit(change, now)
            for now, change in arrivals] + [core.flush()]  # fmt: skip
    for out in outs:
        events += out.events
        governance += out.governance
        customers.update({c["customer_id"]: c for c, _ in out.customers})
        for merged, _ in out.retired:
            customers.pop(merged, None)
    return {"events": events, "governance": governance, "customers": customers,
            "final": {cid: r.as_dict() for cid, r in core.records.items()},
            "links": {cid: frozenset(c.refs) for cid, c in core.identity.clusters.items()}}  # fmt: skip


def in_commit_order(changes: list[CanonicalChange]) -> dict[str, Any]:
    return run(ConsistencyCore(POLICY), [(c.commit_time.timestamp(), c) for c in changes])


def arrivals_within_grace(changes: list[CanonicalChange], rnd: random.Random, duplicates: float,
                          replay_from: dict[str, float]) -> list[tuple[float, CanonicalChange]]:  # fmt: skip
    """Each source keeps its own order; each change arrives less than the grace period after its commit.
    Some changes are delivered again later (duplicates), and a suffix of each source is replayed at the
    end (a restart from an older offset)."""
    arrivals: list[tuple[float, int, CanonicalChange]] = []
    seq = 0
    for source in ("erp", "crm", "steward"):
        mine = [c for c in changes if c.source == source]
        last = 0.0
        for c in mine:
            commit_ms = c.commit_time.timestamp() * 1000
            last = max(last + 1e-6, commit_ms + rnd.uniform(0, GRACE_MS - 1))
            arrivals.append((last, seq := seq + 1, c))
            if rnd.random() < duplicates:
                arrivals.append((last + rnd.uniform(0, 5 * GRACE_MS), seq := seq + 1, c))
    end = max((a for a, _, _ in arrivals), default=0.0) + 1
    for source, fraction in replay_from.items():
        mine = [c for c in changes if c.source == source]
        for i, c in enumerate(mine[int(len(mine) * fraction):]):
            arrivals.append((end + i, seq := seq + 1, c))
    arrivals.sort(key=lambda a: (a[0], a[1]))
    return [(a / 1000, c) for a, _, c in arrivals]


# -- properties ------------------------------------------------------------------------------------
@settings(max_examples=1000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    ops=st.lists(OPS, min_size=1, max_size=30),
    gaps=st.lists(st.integers(0, 400), min_size=30, max_size=30),
    seed=st.integers(0, 2**32),
    duplicates=st.sampled_from([0.0, 0.2, 0.6]),
    replay=st.fixed_dictionaries({}, optional={"erp": st.floats(0, 1), "crm": st.floats(0, 1)}),
)
def test_disorder_within_grace_duplicates_and_replays_change_nothing(ops, gaps, seed, duplicates, replay) -> None:
    changes = build(ops, gaps)
    expected = in_commit_order(changes)
    core = ConsistencyCore(POLICY)
    actual = run(core, arrivals_within_grace(changes, random.Random(seed), duplicates, replay))
    assert actual["final"] == expected["final"]
    assert actual["customers"] == expected["customers"]
    assert actual["governance"] == expected["governance"]
    assert sorted(e["event_id"] for e in actual["events"]) == sorted(e["event_id"] for e in expected["events"])
    assert actual["events"] == expected["events"]
    assert len({e["event_id"] for e in actual["events"]}) == len(actual["events"])  # exactly once
    assert core.reorder.stats.overflow == 0


def _projection(result: dict[str, Any]) -> dict[frozenset[tuple[str, str]], dict[str, Any]]:
    """Record contents keyed by the source customers they link (golden ids and counters excluded)."""
    out = {}
    for cid, r in result["final"].items():
        refs = result["links"][cid]
        drop = {"customer_id", "version", "last_correlation_id", "lifecycle_status", "match_rules", "updated_at"}
        out[refs] = {k: v for k, v in r.items() if k not in drop}
    return out


@settings(max_examples=1000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    ops=st.lists(OPS, min_size=1, max_size=25),
    gaps=st.lists(st.integers(0, 400), min_size=25, max_size=25),
    seed=st.integers(0, 2**32),
)
def test_late_changes_are_merged_by_version_not_dropped(ops, gaps, seed) -> None:
    """Arbitrary lateness (beyond the grace period) within each source's order: the golden data still
    converges to the commit-order result, links included: identity groups follow the evidence as it
    stands (names, domains, crosswalks change freely here), not the order it came in. Fixed at creation:
    the fill_if_empty fields (tax id, country, legal name): an owner's value that replaced a non-owner's
    fill forgets that fill, so a fill arriving late can differ. Steward decisions are left out: they are
    ordered by their time."""
    fill = ("tax_id", "legal_name", "country")
    fixed = [(t, i, {k: v for k, v in vals.items() if k not in fill}) if vals else (t, i, vals)
             for t, i, vals in ops if t[0] != "steward"]  # fmt: skip
    changes = build(fixed, gaps)
    expected = in_commit_order(changes)
    rnd = random.Random(seed)
    by_source = {s: [c for c in changes if c.source == s] for s in ("erp", "crm")}
    arrivals, cursors = [], {s: 0 for s in by_source}
    while any(cursors[s] < len(by_source[s]) for s in by_source):  # random interleaving of the two streams
        s = rnd.choice([s for s in by_source if cursors[s] < len(by_source[s])])
        arrivals.append((float(len(arrivals)), by_source[s][cursors[s]]))
        cursors[s] += 1
    actual = run(ConsistencyCore(POLICY), arrivals)
    assert _projection(actual) == _projection(expected)
