"""The partitioned core (sequencer + customer keys + hand-offs) equals the serial core: for any interleaving
within grace, duplication, replay and a crash restored from a snapshot, its outputs equal serial commit-order
processing, customer by customer, with 1, 2 and 4 partitions.

A small scheduler plays the dataflow: the sequencer's messages reach each key in the order sent (one sender,
a FIFO per worker), workers take random batches, hand-offs travel through a loop topic (one partition per
worker) read with random delays, and a snapshot is taken at an epoch boundary (the sequencer's messages
all delivered, hand-offs maybe not yet read) with the loop topic's read offsets. The sequencer's state is
checkpointed incrementally, as the dataflow does: a base now and then and a delta at every epoch, and a
crash resumes it from the base and the deltas up to the snapshot."""

from __future__ import annotations

import pickle
import random
import zlib
from collections import defaultdict
from typing import Any

from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from dataflows.core.core import ConsistencyCore
from dataflows.core.customer import CustomerCore, CustomerState
from dataflows.core.handoff import Message
from dataflows.core.identity import IdentityResolver
from dataflows.core.partitioned import LocalPartitioned
from dataflows.core.records import CoreOutput
from dataflows.core.sequencer import Sequencer, restore
from tests.unit.core.test_core_properties import (
    CRM_ACCOUNT,
    ERP_CUSTOMER,
    IDS,
    OPS,
    POLICY,
    arrivals_within_grace,
    build,
    in_commit_order,
    run,
)


class Cluster:
    """The partitioned core on `n` simulated workers, scheduled by `rnd`."""

    def __init__(self, n: int, rnd: random.Random) -> None:
        self.n, self.rnd, self.runs = n, rnd, 1
        self.seq = Sequencer(POLICY, run=1)
        self.customers = CustomerCore(POLICY)
        self.states: dict[str, CustomerState] = {}
        self.fifo: list[list[tuple[str, Message]]] = [[] for _ in range(n)]
        self.topic: list[list[bytes]] = [[] for _ in range(n)]  # the loop topic, one partition per worker
        self.read = [0] * n
        self.outs: list[CoreOutput] = []
        self.hand_offs = 0
        self.chain: list[bytes] = []  # the sequencer's checkpoints: a base, then deltas (a base now and then)

    def worker(self, key: str) -> int:
        return zlib.crc32(key.encode()) % self.n

    def submit(self, change: Any, now: float) -> None:
        self.outs.append(self.seq.submit_batch([change], now))
        self._route()
        for _ in range(self.rnd.randint(0, 3)):
            self.work(self.rnd.randrange(self.n))

    def _route(self) -> None:
        for key, message in self.seq.take():
            self.fifo[self.worker(key)].append((key, message))

    def work(self, w: int, everything: bool = False) -> None:
        """One activation of worker w: some of its sequencer messages and some hand-offs, per key in order."""
        take = len(self.fifo[w]) if everything else self.rnd.randint(0, len(self.fifo[w]))
        mine, self.fifo[w] = self.fifo[w][:take], self.fifo[w][take:]
        unread = len(self.topic[w]) - self.read[w]
        hand = self.rnd.randint(0, unread)
        offs = [pickle.loads(b) for b in self.topic[w][self.read[w]:self.read[w] + hand]]  # noqa: S301
        self.read[w] += hand
        batches: dict[str, list[Message]] = defaultdict(list)
        while mine or offs:  # a random merge of the two inputs, each in its own order
            source = mine if mine and (not offs or self.rnd.random() < 0.5) else offs
            key, message = source.pop(0)
            batches[key].append(message)
        for key in self.rnd.sample(sorted(batches), len(batches)):
            state = self.states.setdefault(key, CustomerState(key))
            out, sends = self.customers.on_batch(state, batches[key])
            self.outs.append(out)
            self.hand_offs += len(sends)
            for to, hand_off in sends:
                self.topic[self.worker(to)].append(pickle.dumps((to, hand_off)))

    def epoch(self) -> None:
        """An epoch boundary: what the sequencer sent is delivered; hand-offs may still be on the topic."""
        while any(self.fifo):
            for w in range(self.n):
                self.work(w, everything=True)

    def checkpoint(self) -> int:
        """An epoch's end: the sequencer's checkpoint (a base at first and now and then, else a delta)."""
        self.epoch()
        self.chain.append(self.seq.checkpoint(full=not self.chain or self.rnd.random() < 0.2))
        return len(self.chain)

    def snapshot(self) -> bytes:
        return pickle.dumps((self.checkpoint(), self.states, list(self.read)))

    def restore(self, blob: bytes) -> None:
        upto, self.states, self.read = pickle.loads(blob)  # noqa: S301
        base = max(i for i in range(upto) if pickle.loads(self.chain[i])[1])  # noqa: S301 - the newest full one
        self.seq, self.chain = restore(self.chain[base:upto]), self.chain[:upto]
        self.runs += 1
        self.seq.restart(self.runs)
        self.fifo = [[] for _ in range(self.n)]

    def finish(self) -> None:
        self.outs.append(self.seq.flush())
        self._route()
        while any(self.fifo) or any(len(t) > r for t, r in zip(self.topic, self.read, strict=True)):
            self.work(self.rnd.randrange(self.n))

    def final(self) -> dict[str, Any]:
        return {gid: s.record.as_dict() for gid, s in self.states.items() if s.record is not None}


def collect(outs: list[CoreOutput], final: dict[str, Any]) -> dict[str, Any]:
    """What users see, per customer: records last emitted, events and governance in order, once each."""
    events: dict[str, list[dict[str, Any]]] = defaultdict(list)
    seen: set[str] = set()
    governance: dict[str, list[dict[str, Any]]] = defaultdict(list)
    customers: dict[str, Any] = {}
    for out in outs:
        for e in out.events:
            if e["event_id"] not in seen:  # at least once: a run restored from a snapshot repeats its tail
                seen.add(e["event_id"])
                events[e["customer_id"]].append(e)
        for g in out.governance:
            governance[g["customer_id"]].append(g)
        customers.update({c["customer_id"]: c for c, _ in out.customers})
        for merged, _ in out.retired:
            customers.pop(merged, None)
    return {"events": dict(events), "governance": dict(governance), "customers": customers, "final": final}


def serial_view(result: dict[str, Any]) -> dict[str, Any]:
    events: dict[str, list[dict[str, Any]]] = defaultdict(list)
    governance: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for e in result["events"]:
        events[e["customer_id"]].append(e)
    for g in result["governance"]:
        governance[g["customer_id"]].append(g)
    return {"events": dict(events), "governance": dict(governance), "customers": result["customers"],
            "final": result["final"]}  # fmt: skip


def without_repeats(governance: dict[str, list[dict[str, Any]]]) -> dict[str, list[dict[str, Any]]]:
    """Governance is at least once across a crash: the records, in order, each once."""
    out = {}
    for gid, records in governance.items():
        keys = [(g["causation_id"], g["field"], g["decision"]) for g in records]
        out[gid] = [g for i, g in enumerate(records) if (keys[i] not in keys[:i])]
    return out


def play(n: int, arrivals: list[tuple[float, Any]], rnd: random.Random,
         crash_at: float | None) -> tuple[dict[str, Any], str]:  # fmt: skip
    """Run the arrivals through a cluster; with `crash_at`, snapshot at that fraction of them, go on a
    while, crash and resume from the snapshot."""
    cluster = Cluster(n, rnd)
    cut = int(len(arrivals) * crash_at) if crash_at is not None else None
    i, blob, crashed = 0, None, False
    while i < len(arrivals):
        if i == cut and blob is None:
            blob, taken = cluster.snapshot(), i
        now, change = arrivals[i]
        cluster.submit(change, now)
        i += 1
        if rnd.random() < 0.2:
            cluster.checkpoint()
        if blob is not None and not crashed and (i == len(arrivals) or rnd.random() < 0.3):
            cluster.restore(blob)  # the crashed run's messages stay on the loop topic
            i, crashed = taken, True
    cluster.finish()
    note = f"{'hand-offs' if cluster.hand_offs else 'no hand-off'}, {n} partitions" + (", crashed" if crashed else "")
    return collect(cluster.outs, cluster.final()), note


# Identity-heavy: most steps of OPS touch one customer; these make merges, moves and splits common.
IDENTITY_OPS = st.one_of(
    OPS,
    st.tuples(st.just(("crm", "accounts")), IDS, CRM_ACCOUNT),
    st.tuples(st.just(("erp", "customers")), IDS, ERP_CUSTOMER),
    st.tuples(st.just(("steward", "split")), IDS, st.sampled_from(["crm", "erp"])),
    st.tuples(st.just(("steward", "join")), IDS, IDS),
)
HISTORIES = st.lists(IDENTITY_OPS, min_size=4, max_size=30)


# -- properties ------------------------------------------------------------------------------------
@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    ops=HISTORIES,
    gaps=st.lists(st.integers(0, 400), min_size=30, max_size=30),
    seed=st.integers(0, 2**32),
    duplicates=st.sampled_from([0.0, 0.2, 0.6]),
    replay=st.fixed_dictionaries({}, optional={"erp": st.floats(0, 1), "crm": st.floats(0, 1)}),
    n=st.sampled_from([1, 2, 4]),
    crash_at=st.one_of(st.none(), st.floats(0, 1)),
)
def test_partitioned_core_equals_serial_commit_order(ops, gaps, seed, duplicates, replay, n, crash_at) -> None:
    changes = build(ops, gaps)
    expected = serial_view(in_commit_order(changes))
    rnd = random.Random(seed)
    actual, note = play(n, arrivals_within_grace(changes, rnd, duplicates, replay), rnd, crash_at)
    event(note)
    assert actual["final"] == expected["final"]
    assert actual["customers"] == expected["customers"]
    assert actual["events"] == expected["events"]
    assert without_repeats(actual["governance"]) == without_repeats(expected["governance"])
    if crash_at is None:
        assert actual["governance"] == expected["governance"]


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    ops=HISTORIES,
    gaps=st.lists(st.integers(0, 400), min_size=30, max_size=30),
    seed=st.integers(0, 2**32),
    n=st.sampled_from([1, 2, 4]),
)
def test_partitioned_core_equals_serial_core_on_any_arrival_order(ops, gaps, seed, n) -> None:
    """Beyond grace (late changes, steward commands anywhere): the same result as the serial core on the
    same arrivals."""
    changes = build(ops, gaps)
    rnd = random.Random(seed)
    arrivals = [(float(i), c) for i, c in enumerate(rnd.sample(changes, len(changes)))]
    expected = serial_view(run(ConsistencyCore(POLICY), arrivals))
    actual, note = play(n, arrivals, rnd, None)
    event(note)
    assert actual == expected


def test_a_merge_hands_the_merged_record_to_the_survivor() -> None:
    """An ERP customer and a CRM account, first two golden customers, become one by the account's
    crosswalk: the merged key lends its record to the survivor's and ends empty."""
    ops = [(("erp", "customers"), 1, {"legal_name": "Acme GmbH"}), (("crm", "accounts"), 2, {"name": "Acme"}),
           (("crm", "accounts"), 2, {"erp_customer_id": 1})]  # fmt: skip
    changes = build(ops, [1000, 1000, 1000])
    expected = serial_view(in_commit_order(changes))
    actual, _ = play(2, [(c.commit_time.timestamp(), c) for c in changes], random.Random(0), None)
    assert actual == expected
    (survivor,) = actual["final"].values()
    assert survivor["source_ids"] == {"crm": ["2"], "erp": ["1"]}
    assert [e["event_type"] for e in actual["events"][survivor["customer_id"]]].count("CustomerMerged") == 1


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(ops=HISTORIES, gaps=st.lists(st.integers(0, 400), min_size=30, max_size=30), seed=st.integers(0, 2**32))
def test_the_in_process_partitioned_core_equals_the_serial_core(ops, gaps, seed) -> None:
    """LocalPartitioned (every message delivered at once, one batch per call) gives the serial core's
    outputs call by call, up to the order between customers."""
    changes = build(ops, gaps)
    arrivals = arrivals_within_grace(changes, random.Random(seed), 0.2, {})
    serial, partitioned = ConsistencyCore(POLICY), LocalPartitioned(POLICY)
    for now, change in arrivals:
        expected, actual = serial.submit_batch([change], now), partitioned.submit_batch([change], now)
        assert collect([actual], {}) == collect([expected], {})
    assert collect([partitioned.flush()], {}) == collect([serial.flush()], {})
    assert {g: s.record.as_dict() for g, s in partitioned.states.items() if s.record} == {
        g: r.as_dict() for g, r in serial.records.items()}


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(ops=HISTORIES, gaps=st.lists(st.integers(0, 400), min_size=30, max_size=30), seed=st.integers(0, 2**32),
       n=st.sampled_from([1, 2]), crash_at=st.one_of(st.none(), st.floats(0, 1)))  # fmt: skip
def test_skipping_identitys_graph_walk_changes_no_output(ops, gaps, seed, n, crash_at) -> None:
    """Identity skips regrouping for evidence nobody else shares (IdentityResolver._may_regroup): the golden
    records, events and governance, serial and partitioned, crashes included, are those of a core whose
    identity regroups on every change of evidence."""
    changes = build(ops, gaps)
    arrivals = [(float(i), c) for i, c in enumerate(random.Random(seed).sample(changes, len(changes)))]
    fast = (run(ConsistencyCore(POLICY), arrivals), play(n, arrivals, random.Random(seed), crash_at)[0])
    original = IdentityResolver._may_regroup
    IdentityResolver._may_regroup = lambda self, ref, changed, targets_changed: True  # type: ignore[method-assign]
    try:
        full = (run(ConsistencyCore(POLICY), arrivals), play(n, arrivals, random.Random(seed), crash_at)[0])
    finally:
        IdentityResolver._may_regroup = original  # type: ignore[method-assign]
    assert fast == full
