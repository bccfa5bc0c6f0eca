from __future__ import annotations

import pickle
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from hypothesis import given
from hypothesis import strategies as st

from dataflows.core.reorder import Reorderer, order_key

T0 = datetime(2026, 1, 1, tzinfo=UTC)


@dataclass(frozen=True)
class C:
    source: str
    position: tuple[int, ...]
    commit_time: datetime
    commit_resolution_us: int = 0
    table: str = "customers"
    entity_key: str = "1"


def c(ms: int, source: str = "erp", pos: int | None = None) -> C:
    return C(source, (pos if pos is not None else ms,), T0 + timedelta(milliseconds=ms))


def at(seconds: float) -> datetime:
    """A heartbeat sent at `seconds` on the test's clock (commit times share it)."""
    return T0 + timedelta(seconds=seconds)


def buffer(**kw) -> Reorderer:
    return Reorderer(**{"grace_s": 0.5, "max_per_key": 100, "max_total": 1000, **kw})


class Readers:
    """What the Kafka readers report (dataflows.io.kafka_source), on the test's clock: a stream, or a
    source's heartbeat stream, that delivered nothing for the idle timeout is reported idle (silent),
    and again every idle timeout while it stays so. Readers that are at their end, as in a live flow
    that keeps up."""

    def __init__(self, r: Reorderer, idle_s: float = 2.0) -> None:
        self.r, self.idle_s = r, idle_s
        self.last: dict[object, float] = {}
        self.reported: dict[object, float] = {}
        self.behind: set[object] = set()  # streams whose reader has seen there is more to read

    def push(self, change: C, key: str, now: float, stream: str) -> list:
        self._report(now)
        self.last[stream] = now
        self.reported.pop(stream, None)
        self.behind.discard(stream)
        return self.r.push(change, key, now, stream)

    def heartbeat(self, source: str, now: float, sent: datetime | None = None, stopped: bool = False) -> None:
        self._report(now)
        self.last[("beat", source)] = now
        self.reported.pop(("beat", source), None)
        self.r.heartbeat(source, now, sent, stopped)

    def tick(self, now: float) -> list:
        self._report(now)
        return self.r.tick(now)

    def _report(self, now: float) -> None:
        for stream, last in self.last.items():
            if stream in self.behind:
                continue
            if now - last >= self.idle_s and now - self.reported.get(stream, -1e9) >= self.idle_s:
                self.reported[stream] = now
                if isinstance(stream, tuple):
                    self.r.silent(stream[1], now, now)
                else:
                    self.r.idle(stream, now, now)


def test_holds_until_watermark_then_releases_in_commit_order() -> None:
    r = buffer()
    assert r.push(c(300), "k", 0) == []
    assert r.push(c(100), "k", 0) == []  # out of order, within grace
    released = r.push(c(900), "k", 0)  # watermark 400: releases 100 and 300
    assert [x.position for x, _ in released] == [(100,), (300,)]
    assert [x.position for x, _ in r.flush()] == [(900,)]


def test_ties_broken_by_source_then_position() -> None:
    r = buffer(grace_s=0)
    r.push(c(100, "erp", 7), "a", 0)
    out = r.push(c(100, "crm", 9), "b", 0) + r.push(c(100, "erp", 3), "a", 0) + r.flush()
    assert [order_key(x) for x, _ in out] == sorted(order_key(x) for x, _ in out)


def test_late_change_is_released_at_once_and_counted_never_dropped() -> None:
    r = buffer()
    r.push(c(1000), "k", 0)
    r.push(c(2000), "k", 0)  # releases 1000
    out = r.push(c(10), "k", 0)  # behind what was released
    assert out == [(c(10), True)] and r.stats.late == 1 and r.stats.max_lateness_s == 0.99


def test_a_stream_reported_idle_flushes_a_quiet_buffer() -> None:
    r = buffer()
    r.push(c(100), "k", now=10.0, stream="A")
    assert r.tick(100.0) == []  # the buffer's clock alone never releases: the reader may be behind
    r.idle("A", now=100.0)
    assert [x.position for x, _ in r.tick(100.0)] == [(100,)]


@given(st.permutations([(t, str(k)) for t in ("erp.billing_accounts", "erp.customers", "erp.subscriptions")
                         for k in range(4)]))  # fmt: skip
def test_rows_of_one_snapshot_come_out_in_one_order_whatever_their_arrival(rows: list[tuple[str, str]]) -> None:
    """Every row a snapshot reads shares its commit time and position; table and key order them, so a
    replay (another arrival order) creates golden customers from the same rows as the first run."""
    r = buffer()
    out: list[tuple[C, bool]] = []
    for table, key in rows:
        out += r.push(C("erp", (7, 0), T0, table=table, entity_key=key), key, now=0.0, stream=table)
    out += r.flush()
    assert [(x.table, x.entity_key) for x, _ in out] == sorted(rows)


def test_bounds_release_oldest_early_in_order_and_count() -> None:
    r = buffer(max_per_key=2, max_total=3)
    assert r.push(c(30), "k", 0) == [] and r.push(c(10), "k", 0) == []
    out = r.push(c(20), "k", 0)  # third for key k: the oldest goes early
    assert [x.position for x, _ in out] == [(10,)] and r.stats.overflow == 1 and r.depth("k") == 2
    r.push(c(40), "j", 0)
    out = r.push(c(50), "i", 0)  # four in total
    assert [x.position for x, _ in out] == [(20,)] and len(r) == 3


@given(st.lists(st.tuples(st.integers(0, 5000), st.integers(0, 499)), min_size=1, max_size=200))
def test_any_disorder_within_grace_is_undone(items: list[tuple[int, int]]) -> None:
    """Changes arriving less than `grace` after their commit come out in commit order, none late."""
    commits = sorted(ms for ms, _ in items)
    arrivals = sorted((ms + delay, i, ms) for i, (ms, delay) in enumerate(zip(commits, (d for _, d in items), strict=True)))
    r = buffer()
    out = []
    for arrival, i, ms in arrivals:
        out += r.push(c(ms, pos=i), "k", arrival / 1000)
    out += r.flush()
    assert [order_key(x) for x, _ in out] == sorted(order_key(x) for x, _ in out)
    assert r.stats.late == 0 and len(out) == len(items)


def test_after_a_restart_nothing_goes_until_every_stream_was_read() -> None:
    """The dataflow snapshots the pickled core. After a restart the first partition read again must not
    release past the others: not past those in the snapshot, whose last deliveries are old by now, nor
    past one that had delivered nothing before the snapshot."""
    r = buffer()
    r.expect(["A", "B", "C"], now=0.0)
    r.ready("C")
    r.push(c(100, "crm"), "k", now=0.0, stream="B")
    r.push(c(500, "erp"), "k", now=0.0, stream="A")
    s = pickle.loads(pickle.dumps(r))
    s.expect(["A", "B", "C"], now=100.0)
    s.ready("A")
    assert s.push(c(5000, "erp"), "k", now=100.0, stream="A") == [] and s.tick(101.0) == []  # B, C not read yet
    s.ready("C")
    s.ready("B")
    out = s.push(c(300, "crm"), "k", now=100.1, stream="B") + s.flush()
    assert [x.position for x, _ in out] == [(100,), (300,), (500,), (5000,)] and s.stats.late == 0


def test_a_stream_that_never_becomes_ready_holds_for_at_most_stall_hold() -> None:
    r = buffer(stall_hold_s=10.0)
    r.expect(["A", "unreachable"], now=0.0)
    r.ready("A")
    r.push(c(100), "k", now=0.0, stream="A")
    r.push(c(2000), "k", now=0.0, stream="A")
    assert r.tick(9.0) == []
    assert [x.position for x, _ in r.tick(10.0)] == [(100,)]  # then A's own watermark (2000 - grace)


def test_a_stream_read_ahead_cannot_make_another_late() -> None:
    """Backlog: partition A is read far ahead of partition B; B's changes must still come out in order."""
    r = buffer()
    out = r.push(c(0, "crm", 0), "k", now=0.0, stream="B")  # every stream delivers in the first poll round
    for ms in range(0, 10_000, 1000):
        out += r.push(c(ms, "erp", ms), "k", now=0.0, stream="A")
    out += r.push(c(500, "crm", 500), "k", now=0.1, stream="B")  # B is behind: it held the watermark
    assert r.stats.late == 0
    out += r.push(c(20_000, "erp", 20_000), "k", now=0.2, stream="B") + r.flush()
    assert [order_key(x) for x, _ in out] == sorted(order_key(x) for x, _ in out) and r.stats.late == 0


def test_a_quiet_stream_stops_holding_the_watermark() -> None:
    r = buffer()
    feed = Readers(r)
    feed.push(c(100), "k", now=0.0, stream="quiet")
    feed.push(c(200), "k", now=0.0, stream="busy")
    assert feed.push(c(5000), "k", now=1.0, stream="busy") == []  # quiet stream (newest 100) still counts
    out = feed.push(c(6000), "k", now=3.0, stream="busy")  # reported idle: nothing for the idle timeout
    assert [x.position for x, _ in out] == [(100,), (200,), (5000,)]


def test_a_busy_core_does_not_mistake_an_unread_stream_for_a_quiet_one() -> None:
    """The core's batches come seconds apart under load; a stream absent from one batch is not quiet
    unless its reader says so, and its next changes are still put in order."""
    r = buffer()
    r.push(c(100, "crm"), "k", now=0.0, stream="B")
    out = r.push(c(1000, "erp"), "k", now=0.0, stream="A")
    for t in range(1, 10):  # every batch has only A's changes, 3 s apart: B's reader is behind
        out += r.push(c(t * 1000 + 1000, "erp"), "k", now=t * 3.0, stream="A") + r.tick(t * 3.0)
    out += r.push(c(150, "crm"), "k", now=30.0, stream="B") + r.flush()
    assert r.stats.late == 0 and [order_key(x) for x, _ in out] == sorted(order_key(x) for x, _ in out)


def test_a_stalled_heartbeat_source_holds_the_watermark_until_it_is_back() -> None:
    """ERP's capture dies at t=1 while CRM goes on: ERP's backlog must still come out in commit order."""
    r = buffer(stall_hold_s=60.0)
    feed = Readers(r)
    feed.heartbeat("erp", 0.0)
    feed.push(c(1000, "erp"), "k", now=1.0, stream="erp.customers")
    out = []
    for t in range(2, 30):  # CRM keeps delivering; nothing from ERP, no heartbeat either
        out += feed.push(c(t * 1000, "crm"), "k", now=float(t), stream="crm.accounts")
        out += feed.tick(float(t))
    assert r.stalled() == ["erp"] and [x.position for x, _ in out] == []  # ERP holds at 1000 - grace
    out += feed.push(c(1500, "erp"), "k", now=30.0, stream="erp.customers")  # backlog: committed at 1.5 s
    out += feed.push(c(30_000, "erp"), "k", now=30.0, stream="erp.customers") + r.flush()
    assert [order_key(x) for x, _ in out] == sorted(order_key(x) for x, _ in out) and r.stats.late == 0


def test_a_quiet_heartbeat_source_does_not_hold_the_watermark() -> None:
    r = buffer()
    feed = Readers(r)
    feed.push(c(1000, "erp"), "k", now=1.0, stream="erp.customers")
    out = []
    for t in range(2, 10):  # ERP is alive (heartbeats) but has no changes
        feed.heartbeat("erp", float(t))
        out += feed.push(c(t * 1000, "crm"), "k", now=float(t), stream="crm.accounts")
    assert [x.position for x, _ in out][:2] == [(1000,), (2000,)] and r.stats.late == 0


@given(st.floats(0.0, 10.0), st.lists(st.integers(1, 5000), min_size=1, max_size=20))
def test_a_source_that_never_sent_a_heartbeat_is_not_taken_for_a_stalled_one(silent_at: float,
                                                                              commits: list[int]) -> None:
    """A heartbeat topic still empty (no heartbeat written yet) reported silent at any moment,
    before or after the source's streams go quiet: those streams stop holding as any quiet stream does,
    not after the stall hold."""
    r = buffer(stall_hold_s=3600.0)
    out = []
    for i, ms in enumerate(commits):
        out += r.push(c(ms, "erp", pos=i), "k", now=0.0, stream=f"erp.t{i % 3}")
    reports = [(silent_at, lambda: r.silent("erp", silent_at, silent_at))]
    reports += [(2.0, lambda s=f"erp.t{i}": r.idle(s, 2.0, 2.0)) for i in range(3)]
    for _, report in sorted(reports, key=lambda x: x[0]):
        report()
    out += r.tick(max(silent_at, 2.0) + 0.1)
    assert r.stalled() == [] and sorted(x.position for x, _ in out) == [(i,) for i in range(len(commits))]


def test_a_stall_holds_for_at_most_stall_hold() -> None:
    r = buffer(stall_hold_s=10.0)
    feed = Readers(r)
    feed.heartbeat("erp", 0.0)
    feed.push(c(1000, "erp"), "k", now=1.0, stream="erp.customers")
    feed.push(c(2000, "crm"), "k", now=2.0, stream="crm.accounts")
    assert feed.tick(4.0) == [] and r.stalled() == ["erp"]  # reported silent at t=2
    assert feed.tick(11.9) == []
    released = feed.tick(12.0)  # silent for the stall hold: CRM goes on
    assert [x.position for x, _ in released] == [(1000,), (2000,)]


@given(st.integers(1, 40), st.floats(0.0, 20.0), st.lists(st.integers(1, 3000), min_size=1, max_size=30))
def test_an_outage_shorter_than_the_hold_makes_nothing_late(die_at: int, outage_s: float, backlog: list[int]) -> None:
    """Two heartbeat sources deliver every 100 ms; ERP falls silent at a random moment for a random
    time, then delivers what was committed meanwhile. Nothing is late; everything comes out in order."""
    r = buffer(stall_hold_s=30.0, max_per_key=10_000)  # bounds are not what this is about
    feed = Readers(r)
    out: list[tuple[C, bool]] = []
    t = 0.0
    for i in range(die_at):
        t = i / 10
        feed.heartbeat("erp", t, at(t))
        feed.heartbeat("crm", t, at(t))
        out += feed.push(c(round(t * 1000), "erp", i), "k", now=t, stream="erp.customers")
        out += feed.push(c(round(t * 1000), "crm", i), "k", now=t, stream="crm.accounts")
    down_from, back_at = t, t + outage_s
    while t < back_at:  # CRM goes on, ERP's capture is down: its changes pile up in the database
        t += 0.1
        feed.heartbeat("crm", t, at(t))
        out += feed.push(c(round(t * 1000), "crm", 10_000 + round(t * 10)), "k", now=t, stream="crm.accounts")
        out += feed.tick(t)
    for j, offset in enumerate(sorted(backlog)):  # the backlog, committed after ERP fell silent
        ms = round(down_from * 1000) + 1 + offset * round(outage_s * 1000 + 1) // 3001
        out += feed.push(c(ms, "erp", 20_000 + j), "k", now=t, stream="erp.customers")
    out += r.flush()
    assert r.stats.late == 0
    assert [order_key(x) for x, _ in out] == sorted(order_key(x) for x, _ in out)


def test_a_quiet_source_that_stalls_holds_at_its_last_heartbeat() -> None:
    """ERP is alive but has had no change for a while, then its capture dies. What ERP committed after
    the stall was noticed (its last heartbeat plus the idle timeout) comes back in order."""
    r = buffer(stall_hold_s=60.0)
    feed = Readers(r)
    feed.push(c(0, "erp"), "k", now=0.0, stream="erp.customers")
    out = []
    for t in range(1, 20):
        if t <= 5:
            feed.heartbeat("erp", float(t), at(t))  # quiet but alive until t=5
        out += feed.push(c(t * 1000, "crm"), "k", now=float(t), stream="crm.accounts") + feed.tick(float(t))
    assert max(x.commit_time for x, _ in out) <= at(8)  # held at ERP's last beat once it went silent
    out += feed.push(c(7_500, "erp"), "k", now=20.0, stream="erp.customers")
    out += feed.push(c(20_000, "erp"), "k", now=20.0, stream="erp.customers") + r.flush()
    assert r.stats.late == 0 and [order_key(x) for x, _ in out] == sorted(order_key(x) for x, _ in out)


@given(st.lists(st.integers(0, 20_000), min_size=1, max_size=10))
def test_a_whole_second_source_is_never_late(crm_ms: list[int]) -> None:
    """CRM (MySQL family) records commit times in whole seconds, ERP in milliseconds; ERP commits every
    100 ms, CRM now and then; both deliver 100 ms after the real commit. Ordered by the end of CRM's
    second, nothing is ever late."""
    r = buffer()
    feed = Readers(r)
    commits = [(ms, "erp") for ms in range(0, 20_000, 100)] + [(ms, "crm") for ms in crm_ms]
    out: list[tuple[C, bool]] = []
    for i, (real_ms, source) in enumerate(sorted(commits)):
        if source == "crm":
            change = C("crm", (i,), T0 + timedelta(milliseconds=real_ms - real_ms % 1000), 999_999)
        else:
            change = C("erp", (i,), T0 + timedelta(milliseconds=real_ms))
        out += feed.push(change, "k", now=(real_ms + 100) / 1000, stream=source)
    out += r.flush()
    assert r.stats.late == 0 and len(out) == len(commits)
    assert len(out) - len(r.flush()) > len(crm_ms)  # a quiet CRM held nothing back for long


@given(st.integers(0, 1500), st.floats(0.0, 1.9), st.floats(0.0, 5.0))
def test_a_backlog_in_a_stream_judged_idle_before_the_capture_came_back_is_not_late(
        commit_ms: int, seen_after_s: float, read_after_s: float) -> None:  # fmt: skip
    """CRM's accounts stream has been quiet (judged idle) when CRM's capture dies. Back at t=10, its
    heartbeat and its contacts backlog are read first. An account change committed during the outage
    sits in a partition whose reader notices it only after up to 1.9 s (until then it may still judge
    the partition idle, from what it fetched before) and reads it up to 5 s after that (a busy flow).
    It is not late."""
    r = buffer(stall_hold_s=60.0, max_per_key=10_000)
    feed = Readers(r)
    out: list[tuple[C, bool]] = []
    feed.push(c(0, "crm", 0), "k", now=0.0, stream="crm.accounts")
    for i in range(1, 50):  # until t=5 both captures deliver every 100 ms, CRM only contacts
        t = i / 10
        feed.heartbeat("erp", t, at(t))
        feed.heartbeat("crm", t, at(t))
        out += feed.push(c(i * 100, "erp", i), "k", now=t, stream="erp.customers")
        out += feed.push(c(i * 100, "crm", i), "k", now=t, stream="crm.contacts")
    for i in range(50, 100):  # CRM's capture is down; ERP goes on
        t = i / 10
        feed.heartbeat("erp", t, at(t))
        out += feed.push(c(i * 100, "erp", i), "k", now=t, stream="erp.customers") + feed.tick(t)
    assert r.stalled() == ["crm"]
    t = 10.0
    feed.heartbeat("crm", t, at(t))  # back: its heartbeat first, then its contacts backlog
    for j, ms in enumerate(range(5000, 10_000, 100)):
        out += feed.push(c(ms, "crm", 1000 + j), "k", now=t, stream="crm.contacts")
    seen_at, read_at = t + seen_after_s, t + seen_after_s + read_after_s
    while t < read_at:  # both go on while the accounts partition is not read yet
        t = round(t + 0.1, 1)
        if t >= seen_at:
            feed.behind.add("crm.accounts")
        feed.heartbeat("erp", t, at(t))
        feed.heartbeat("crm", t, at(t))
        out += feed.push(c(round(t * 1000), "erp", 2000 + round(t * 10)), "k", now=t, stream="erp.customers")
        out += feed.push(c(round(t * 1000), "crm", 2000 + round(t * 10)), "k", now=t, stream="crm.contacts")
    out += feed.push(c(5000 + commit_ms, "crm", 3000), "k", now=t, stream="crm.accounts")
    out += r.flush()
    assert r.stats.late == 0
    assert [order_key(x) for x, _ in out] == sorted(order_key(x) for x, _ in out)


def test_a_source_back_from_an_outage_holds_only_until_its_streams_are_judged_idle_anew() -> None:
    """The price of the rule above is bounded: with nothing in the quiet stream, ERP's changes flow
    again once its reader has judged it idle after the settling time."""
    r = buffer(stall_hold_s=60.0)
    feed = Readers(r)
    feed.heartbeat("crm", 0.0, at(0))
    feed.push(c(0, "crm"), "k", now=0.0, stream="crm.accounts")
    for t in range(1, 10):
        feed.heartbeat("erp", float(t), at(t))
        feed.tick(float(t))
    feed.heartbeat("crm", 10.0, at(10))  # back after an outage: crm.accounts' idle mark is void
    feed.push(c(10_000, "erp"), "k", now=10.0, stream="erp.customers")
    released: list[tuple[C, bool]] = []
    t = 10.0
    while not released and t < 20:
        t = round(t + 0.1, 1)
        feed.heartbeat("crm", t, at(t))
        feed.heartbeat("erp", t, at(t))
        released = feed.tick(t)
    assert 12.0 <= t <= 14.0 + 0.1  # settling (2 s) plus at most one more idle report period


@given(st.floats(0.0, 0.9), st.floats(3.0, 20.0), st.lists(st.integers(1, 1000), min_size=1, max_size=10))
def test_a_dead_source_never_looks_quiet_before_its_heartbeats_stop(gap_s: float, outage_s: float,
                                                                    backlog: list[int]) -> None:  # fmt: skip
    """ERP's last change is read `gap_s` before its last heartbeat; then its capture dies. Its data stream
    is judged idle up to a heartbeat interval before its heartbeat stream is judged silent: in between
    it must still hold, or CRM's changes pass what ERP committed meanwhile."""
    r = buffer(stall_hold_s=60.0, max_per_key=10_000)
    feed = Readers(r)
    out: list[tuple[C, bool]] = []
    last_change = 5.0
    for i in range(0, 51):  # both deliver every 100 ms until t=5
        t = i / 10
        feed.heartbeat("erp", t, at(t))
        feed.heartbeat("crm", t, at(t))
        out += feed.push(c(i * 100, "erp", i), "k", now=t, stream="erp.customers")
        out += feed.push(c(i * 100, "crm", i), "k", now=t, stream="crm.accounts")
    feed.heartbeat("erp", last_change + gap_s, at(last_change + gap_s))  # its last sign of life
    t, back_at = last_change, last_change + gap_s + outage_s
    while t < back_at:
        t = round(t + 0.1, 1)
        feed.heartbeat("crm", t, at(t))
        out += feed.push(c(round(t * 1000), "crm", round(t * 10)), "k", now=t, stream="crm.accounts")
        out += feed.tick(t)
    feed.heartbeat("erp", t, at(t))
    for j, ms in enumerate(sorted(backlog)):  # committed after its last heartbeat, delivered when back
        out += feed.push(c(round((last_change + gap_s) * 1000) + ms, "erp", 100 + j), "k", now=t, stream="erp.customers")
    out += r.flush()
    assert r.stats.late == 0
    assert [order_key(x) for x, _ in out] == sorted(order_key(x) for x, _ in out)


def test_a_batch_is_ordered_behind_one_watermark() -> None:
    """Within one batch, a change of a newly seen stream older than what the batch's earlier changes
    would have released is not late: the watermark is taken once per batch, not per change."""
    arrivals = [(c(0, "crm"), "k", "crm"), (c(5000), "a", "erp0"), (c(6000, "crm"), "k", "crm"),
                (c(5600), "a", "erp0"), (c(1000), "b", "erp1")]  # fmt: skip
    one_by_one = buffer()
    released = [r for change, key, stream in arrivals for r in one_by_one.push(change, key, 0.0, stream)]
    assert released[-1] == (c(1000), True) and one_by_one.stats.late == 1  # 5000 went first

    batched = buffer()
    for change, key, stream in arrivals:
        assert batched.push(change, key, 0.0, stream, release=False) == []
    assert batched.tick(0.0) == [(c(0, "crm"), False)]
    assert batched.flush() == [(c(1000), False), (c(5000), False), (c(5600), False), (c(6000, "crm"), False)]
    assert batched.stats.late == 0


def _stop_with_the_stack(feed: Readers, stop_at: float) -> list:
    """ERP and CRM deliver every 100 ms until `stop_at`, when `tidemark down` stops both captures: their
    heartbeats stop, and a moment later (each capture's last records acknowledged) the stack's marker
    says each stopped. Returns what was released meanwhile."""
    out: list = []
    t, i = 0.0, 0
    while t < stop_at:
        feed.heartbeat("erp", t, at(t))
        feed.heartbeat("crm", t, at(t))
        out += feed.push(c(round(t * 1000), "erp", i), "k", now=t, stream="erp.customers")
        out += feed.push(c(round(t * 1000), "crm", i), "k", now=t, stream="crm.accounts")
        i, t = i + 1, round(t + 0.1, 1)
    return out


def test_captures_stopped_by_down_hold_nothing_back_for_the_stall_hold() -> None:
    """Without the marker their silence looks like a stall: the buffer would hold for the whole stall hold."""
    r = buffer(stall_hold_s=60.0)
    feed = Readers(r)
    out = _stop_with_the_stack(feed, 5.0)
    for t in (5.5, 6.0, 7.0, 8.0, 9.0, 10.0):
        if t == 5.5:
            feed.heartbeat("erp", t, at(t), stopped=True)
            feed.heartbeat("crm", t, at(t), stopped=True)
        out += feed.tick(t)
    assert len(r) == 0 and r.stalled() == [] and r.stats.late == 0  # drained within seconds, in order
    assert [order_key(x) for x, _ in out] == sorted(order_key(x) for x, _ in out)


@given(st.floats(0.0, 5.0), st.floats(0.0, 3.0))
def test_a_stop_marker_read_before_the_last_changes_makes_nothing_late(lag_s: float, noticed_s: float) -> None:
    """The marker is written after each capture's last records were acknowledged, but a busy flow may
    read it before those: ERP's last change sits in a partition whose reader sees there is more only
    `noticed_s` after the marker (until then it may judge it idle from what it fetched before) and reads
    it `lag_s` after that. It is not late, and the buffer still drains once it is read."""
    r = buffer(stall_hold_s=60.0, max_per_key=10_000)
    feed = Readers(r)
    out = _stop_with_the_stack(feed, 5.0)
    t = 5.0
    feed.heartbeat("erp", t, at(t), stopped=True)
    feed.heartbeat("crm", t, at(t), stopped=True)
    while t < 5.0 + noticed_s + lag_s:
        t = round(t + 0.1, 1)
        if t >= 5.0 + noticed_s:
            feed.behind.add("erp.customers")
        out += feed.tick(t)
    out += feed.push(c(4_950, "erp", 9_999), "k", now=t, stream="erp.customers")
    for _ in range(100):  # the readers judge every stream idle anew: everything goes, nothing waits 60 s
        t = round(t + 0.1, 1)
        out += feed.tick(t)
    assert len(r) == 0 and r.stats.late == 0
    assert [order_key(x) for x, _ in out] == sorted(order_key(x) for x, _ in out)


def test_a_capture_started_again_after_down_holds_the_watermark_again() -> None:
    """The marker lasts until the capture shows life (a heartbeat, or a change committed after the marker):
    after `up`, a silent capture is a stall again."""
    r = buffer(stall_hold_s=60.0)
    feed = Readers(r)
    _stop_with_the_stack(feed, 5.0)
    feed.heartbeat("erp", 5.5, at(5.5), stopped=True)
    feed.heartbeat("crm", 5.5, at(5.5), stopped=True)
    feed.heartbeat("crm", 20.0, at(20.0))  # up: CRM's capture is back with a heartbeat, ERP's with a change
    feed.push(c(20_000, "erp", 5000), "k", now=20.0, stream="erp.customers")
    out = feed.push(c(20_100, "crm", 5000), "k", now=20.1, stream="crm.accounts")
    for t in range(21, 40):  # CRM goes on; ERP's capture dies again, without a marker
        feed.heartbeat("crm", float(t), at(t))
        out += feed.push(c(t * 1000, "crm", 5000 + t), "k", now=float(t), stream="crm.accounts") + feed.tick(float(t))
    assert r.stalled() == ["erp"] and all(x.commit_time < at(20.0) for x, _ in out)  # held at ERP's 20 s
