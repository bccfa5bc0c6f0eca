"""The sequencer's incremental checkpoints: resuming from a base and the deltas after it is resuming from the
state itself, and no delta can be left out."""

from __future__ import annotations

import io
import pickle
import random
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dataflows.core.handoff import Work
from dataflows.core.journal import GONE, Journal, TrackedDict, TrackedSet
from dataflows.core.sequencer import Sequencer, merge, restore
from tests.unit.core.test_core_properties import POLICY, arrivals_within_grace, build
from tests.unit.core.test_partitioned_properties import HISTORIES
from tests.support.world import World


def _feed(seq: Sequencer, arrivals: list[tuple[float, Any]]) -> list[Any]:
    """What the sequencer does with `arrivals`: its outputs and its messages, without the run in operation ids."""
    seen = []
    for now, change in arrivals:
        out = seq.submit_batch([change], now)
        msgs = [(key, type(m).__name__, m.op[1], m.step if isinstance(m, Work) else m.to) for key, m in seq.take()]
        seen.append((out, msgs))
    return seen


def _contents(seq: Sequencer) -> dict[str, Any]:
    return {name: (set(c) if isinstance(c, TrackedSet) else dict(c)) for name, c in seq.journal.containers.items()}


def checkpointed(arrivals: list[tuple[float, Any]], rnd: random.Random, cut: int,
                 drop: int | None = None) -> tuple[Sequencer, Sequencer]:  # fmt: skip
    """An uninterrupted sequencer, and one resumed after `cut` arrivals from the checkpoints taken at random
    epochs until then (a base first and now and then); `drop`: that checkpoint is lost."""
    whole, crashed = Sequencer(POLICY, run=1), Sequencer(POLICY, run=1)
    chain = [crashed.checkpoint(full=True)]
    for i, (now, change) in enumerate(arrivals[:cut]):
        whole.submit_batch([change], now)
        crashed.submit_batch([change], now)
        whole.take(), crashed.take()
        if rnd.random() < 0.4 or i == cut - 1:
            chain.append(crashed.checkpoint(full=rnd.random() < 0.15))
    bases = [i for i, blob in enumerate(chain) if pickle.loads(blob)[1]]  # noqa: S301
    kept = chain[bases[-1]:]
    if drop is not None:
        del kept[drop]
    resumed = restore(kept)
    if drop is None:  # compaction: the chain merged into one base resumes the same
        assert _contents(restore([merge(kept)])) == _contents(resumed)
    resumed.restart(2)
    return whole, resumed


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(ops=HISTORIES, gaps=st.lists(st.integers(0, 400), min_size=30, max_size=30), seed=st.integers(0, 2**32),
       cut=st.floats(0, 1))  # fmt: skip
def test_resuming_from_base_and_deltas_equals_an_uninterrupted_run(ops, gaps, seed, cut) -> None:
    rnd = random.Random(seed)
    arrivals = arrivals_within_grace(build(ops, gaps), rnd, 0.2, {})
    k = max(1, int(len(arrivals) * cut))
    whole, resumed = checkpointed(arrivals, rnd, k)
    assert _contents(resumed) == _contents(whole)
    assert _feed(resumed, arrivals[k:]) == _feed(whole, arrivals[k:])
    assert _contents(resumed) == _contents(whole)
    assert resumed.flush() == whole.flush()


def test_a_lost_delta_is_noticed() -> None:
    """The property's own check: leaving out any delta that carried an entry changes the resumed state."""
    ops = [(("erp", "customers"), i, {"legal_name": f"Acme {i}"}) for i in (1, 2, 3)]
    ops += [(("crm", "accounts"), i, {"name": f"Acme {i}", "erp_customer_id": i}) for i in (1, 2, 3)]
    seq = Sequencer(POLICY, run=1)
    chain = [seq.checkpoint(full=True)]
    for change in build(ops, [1000] * len(ops)):
        seq.submit_batch([change], change.commit_time.timestamp())
        seq.flush()
        seq.take()
        chain.append(seq.checkpoint())
    assert _contents(restore(chain)) == _contents(seq)
    carrying = [i for i in range(1, len(chain)) if pickle.loads(chain[i])[3]]  # noqa: S301
    assert len(carrying) == len(ops)
    for lost in carrying:
        assert _contents(restore(chain[:lost] + chain[lost + 1:])) != _contents(seq)


def test_a_set_shrunk_in_place_is_journaled() -> None:
    """Two customers share a match key, then one leaves it: the key's holders shrink without going away."""
    ops = [(("erp", "customers"), 1, {"legal_name": "Acme"}), (("erp", "customers"), 2, {"legal_name": "Acme"}),
           (("crm", "accounts"), 1, {"name": "Acme", "erp_customer_id": 1}),
           (("crm", "accounts"), 2, {"name": "Acme", "erp_customer_id": 1}),
           (("erp", "customers"), 2, {"legal_name": "Beta"}), (("crm", "accounts"), 2, {"erp_customer_id": 2})]
    seq = Sequencer(POLICY, run=1)
    chain = [seq.checkpoint(full=True)]
    for change in build(ops, [1000] * len(ops)):
        seq.submit_batch([change], change.commit_time.timestamp())
        seq.flush()
        seq.take()
        chain.append(seq.checkpoint())
    assert any(len(holders) == 1 for holders in seq.identity.index.values())
    assert _contents(restore(chain)) == _contents(seq)


def test_a_journaled_container_marks_writes_removals_and_setdefault_and_nothing_else() -> None:
    d = TrackedDict("d", {"a": 1})
    d["x"] = 0  # before the first base: no marks kept
    assert d.dirty is None
    d.dirty = set()
    d["b"] = 2
    d.pop("a")
    d.setdefault("c", set()).add(1)
    assert d.dirty == {"a", "b", "c"}
    assert pickle.loads(pickle.dumps(d)) == d  # noqa: S301
    d.dirty = set()
    d.pop("never", None)  # identity pops every rule's finding on every change, mostly absent ones
    s = TrackedSet("s", {1})
    s.dirty = set()
    s.discard(2)
    s.add(1)  # identity adds every source customer it sees on every change, mostly present ones
    assert d.dirty == set() and s.dirty == set()  # an absent key stays absent, a present one present
    s.add(3)
    assert s.dirty == {3}
    assert GONE is pickle.loads(pickle.dumps(GONE))  # noqa: S301
    with pytest.raises(ValueError, match="a delta follows a base"):
        Journal([TrackedDict("e")]).delta()


def test_a_snapshot_read_across_checkpoints_sweeps_the_same_rows() -> None:
    """A source snapshot still being read when the sequencer is checkpointed: the resumed sequencer knows
    which rows it has read, so the rows absent from it are deleted exactly as without the crash."""
    from tests.support.world import World
    from tests.unit.core.test_resnapshot import snapshot_of

    world = World()
    history = [world.write("erp", "customers", i, {"legal_name": f"C{i}", "country": "DE"}) for i in range(1, 7)]
    seq = Sequencer(POLICY, run=1)
    seq.submit_batch(history, 0.0)
    seq.flush(0.0)
    seq.take()
    chain = [seq.checkpoint(full=True)]
    for gone in (2, 5):
        del world.rows[("erp", "customers", gone)]
    snapshot = snapshot_of(world, [("erp", "customers", i) for i in (1, 3, 4, 6)], last=3)
    for change in snapshot[:2]:  # read in two epochs, checkpointed between
        seq.submit_batch([change], 0.0)
        seq.take()
        chain.append(seq.checkpoint())
    resumed = restore(chain)
    resumed.restart(2)
    assert _contents(resumed) == _contents(seq)
    swept = []
    for s in (seq, resumed):
        s.submit_batch(snapshot[2:], 0.0)
        s.flush(0.0)
        swept.append(sorted(w.step.cause.entity_key for _, w in s.take() if isinstance(w, Work) and w.step.cause.deleted))
    assert swept[0] == swept[1] == ["2", "5"]


def _dumps_around_by_persistent_id(root: Any, journal: Journal) -> bytes:
    """How checkpoints named the journaled containers until 2026-12-01 (persistent ids)."""
    buffer = io.BytesIO()
    ids = {id(c): name for name, c in journal.containers.items()}

    class _Pickler(pickle.Pickler):
        def persistent_id(self, obj: Any) -> str | None:
            return ids.get(id(obj))

    _Pickler(buffer, protocol=pickle.HIGHEST_PROTOCOL).dump(root)
    return buffer.getvalue()


def test_checkpoints_written_by_the_earlier_pickler_still_resume(monkeypatch: pytest.MonkeyPatch) -> None:
    """A chain written the old way resumes (an upgrade), and so does one continued the new way after it."""
    ops = [(("erp", "customers"), i, {"legal_name": f"Acme {i}"}) for i in (1, 2, 3)]
    ops += [(("crm", "accounts"), i, {"name": f"Acme {i}", "erp_customer_id": i}) for i in (1, 2, 3)]
    seq = Sequencer(POLICY, run=1)
    chain = []
    for i, change in enumerate([None, *build(ops, [1000] * len(ops))]):
        if change is not None:
            seq.submit_batch([change], change.commit_time.timestamp())
            seq.flush()
            seq.take()
        with monkeypatch.context() as m:
            if i <= len(ops) // 2:
                m.setattr("dataflows.core.sequencer.dumps_around", _dumps_around_by_persistent_id)
            chain.append(seq.checkpoint(full=not chain))
        if i == len(ops) // 2:
            upgraded = restore(chain)  # every checkpoint so far the old way
            assert _contents(upgraded) == _contents(seq)
            assert upgraded.identity.ref_cluster is upgraded.journal.containers["IdentityResolver.ref_cluster"]
    resumed = restore(chain)
    assert _contents(resumed) == _contents(seq)
    assert resumed.identity.ref_cluster is resumed.journal.containers["IdentityResolver.ref_cluster"]


def test_an_update_that_keeps_its_rows_customer_leaves_the_sweeps_entry_out_of_the_delta() -> None:
    """The delta carries a row's sweep entry when the row appears, moves to another customer or goes; an
    update of a row that stays with its customer (most changes) adds nothing to it."""
    world, seq = World(), Sequencer(POLICY, 1)
    seq.checkpoint(full=True)
    changes = [world.write("erp", "customers", 1, {"legal_name": "Acme GmbH"}),
               world.write("erp", "subscriptions", 7, {"customer_id": 1, "plan": "growth"})]  # fmt: skip
    live = seq.snapshots.live

    def delta_rows(change: Any) -> set[Any]:
        seq.submit_batch([change], change.commit_time.timestamp())
        seq.flush()
        seq.take()
        marked = set(live.dirty or ())
        seq.checkpoint()
        return marked

    assert delta_rows(changes[0]) == {("erp", "erp.customers", "1")}
    assert delta_rows(changes[1]) == {("erp", "erp.subscriptions", "7")}
    assert delta_rows(world.write("erp", "customers", 1, {"credit_status": "hold"})) == set()
    assert delta_rows(world.write("erp", "subscriptions", 7, {"seats": 5})) == set()
    assert delta_rows(world.write("erp", "subscriptions", 7, {"customer_id": 2})) == {("erp", "erp.subscriptions", "7")}
    assert delta_rows(world.write("erp", "subscriptions", 7, delete=True)) == {("erp", "erp.subscriptions", "7")}
