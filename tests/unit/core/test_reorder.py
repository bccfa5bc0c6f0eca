from __future__ import annotations

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


def c(ms: int, source: str = "erp", pos: int | None = None) -> C:
    return C(source, (pos if pos is not None else ms,), T0 + timedelta(milliseconds=ms))


def buffer(**kw) -> Reorderer:
    return Reorderer(**{"grace_s": 0.5, "idle_timeout_s": 2.0, "max_per_key": 100, "max_total": 1000, **kw})


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


def test_idle_timeout_flushes_a_quiet_buffer() -> None:
    r = buffer()
    r.push(c(100), "k", now=10.0)
    assert r.tick(11.0) == [] and r.oldest_wait(11.0) == 1.0
    assert [x.position for x, _ in r.tick(12.0)] == [(100,)]


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


def test_state_survives_snapshot_and_restore() -> None:
    r = buffer()
    for ms in (500, 100, 300):
        r.push(c(ms), "k", 0)
    s = buffer()
    s.restore_state(r.snapshot_state())
    assert [x.position for x, _ in s.flush()] == [(100,), (300,), (500,)]


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
    r.push(c(100), "k", now=0.0, stream="quiet")
    r.push(c(200), "k", now=0.0, stream="busy")
    assert r.push(c(5000), "k", now=1.0, stream="busy") == []  # quiet stream (newest 100) still counts
    out = r.push(c(6000), "k", now=3.0, stream="busy")  # quiet for longer than the idle timeout
    assert [x.position for x, _ in out] == [(100,), (200,), (5000,)]
