"""Release changes in commit-time order (ties: source, source position, table, row key) behind a watermark.

The watermark is the newest commit time seen minus a grace period, taken per input stream (a Kafka
partition): the slowest stream holds it back, so a partition read ahead of the others during a backlog
cannot make theirs late. It advances with the data, not with the wall clock, so a backlog replayed hours
later is still ordered (Bytewax's EventClock would mark it late).

A stream stops holding the watermark when its reader reports it `idle`: read up to its end, and nothing new
for the idle timeout. The reader judges this, not this buffer's clock, because only the reader knows
whether a stream is quiet or merely not read yet (a busy core sees every stream go silent between two of
its batches). A source that sends heartbeats (Debezium's heartbeat topic; judged so from its first
heartbeat read) is told apart from a quiet one: its idle streams stop holding only once it has shown life
(a heartbeat or a change) after they went idle; when its heartbeat stream goes `silent`, its capture or
database is down, and the streams that were active at its last sign of life keep holding the watermark, at
its last heartbeat at most, for up to `stall_hold`, so its backlog is still put in order when it comes back
instead of arriving late. When it comes back (a heartbeat or a change), the idle marks of its streams are
void: its backlog may be in any of them, and a reader that judged a stream idle before the backlog was
written cannot know. Each of them holds again until its reader judges it idle anew, `settle` or more after
the return (readers repeat their idle reports while a stream stays quiet); a heartbeat may come before the
backlog, so the first change after it starts the settling again.

After a (re)start nothing is released until every input stream the dataflow reads has been read up to
where it stood (`expect` and `ready`; for at most `stall_hold`): the first partition read must not run
ahead of the others. When no stream holds, everything buffered is released. A change behind the
watermark (arriving after something newer was released) is released at once and counted as late:
downstream merges it by version, it is never dropped. The buffer is bounded per customer key and overall: when a bound is hit the oldest
buffered changes are released early, still in order, and counted as overflow.
"""

from __future__ import annotations

import heapq
from collections import Counter, deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)


class _Change(Protocol):
    source: str
    table: str
    entity_key: str
    position: tuple[int, ...]
    commit_time: datetime
    commit_resolution_us: int


# (commit time in epoch microseconds, source, position, table, row key)
OrderKey = tuple[int, str, tuple[int, ...], str, str]


def order_key(change: _Change) -> OrderKey:
    """Latest possible commit time (see ChangeRecord.commit_resolution_us), then source, then position,
    then table and row key: every row one snapshot reads shares its time and position, and without them
    the order of those rows (and so which one creates a golden customer) would follow arrival order,
    which differs between a replay and the first run."""
    us = (change.commit_time - _EPOCH) // _MICROSECOND + change.commit_resolution_us
    return (us, change.source, change.position, change.table, change.entity_key)


@dataclass
class ReorderStats:
    released: int = 0
    late: int = 0
    overflow: int = 0
    max_lateness_s: float = 0.0
    # Wall-clock seconds released changes waited; bounded, drained by whoever exports metrics.
    waits: deque[float] = field(default_factory=lambda: deque(maxlen=10_000))


@dataclass
class _Stream:
    source: str
    newest: int  # commit time, epoch microseconds
    idle_at: float | None = None  # wall clock its reader reported it idle; None: it holds


@dataclass
class _Source:
    """A source that sends heartbeats: its silence means a stall, not a quiet spell."""

    seen: float  # wall clock of its last heartbeat or change
    beat: int | None = None  # its newest heartbeat's own time, epoch microseconds
    silent_since: float | None = None  # wall clock its heartbeat stream was reported silent
    trust_idle_from: float = 0.0  # wall clock: idle judgements of its streams made earlier are void
    back_by_heartbeat: bool = False  # back from silence, and no change since: its backlog may still come
    stopped: bool = False  # stopped by `down`: all it captured is written, nothing more until it is back


def _after_stop(source: _Source, earliest_commit_us: int) -> bool:
    """A change of a source stopped with the stack shows its capture is back only if it may have been
    committed after the marker (sent at `beat`): one read late, from before the stop, is not life. Judged
    on the two clocks' word; were the database's ahead, the source would merely hold as a stalled one."""
    return source.stopped and (source.beat is None or earliest_commit_us > source.beat)


@dataclass
class Reorderer:
    grace_s: float
    max_per_key: int
    max_total: int
    stall_hold_s: float = 60.0
    settle_s: float = 2.0  # the readers' idle timeout
    stats: ReorderStats = field(default_factory=ReorderStats)
    _heap: list[tuple[OrderKey, int, Any, Any, float]] = field(default_factory=list)
    _per_key: Counter[Any] = field(default_factory=Counter)
    _seq: int = 0
    _last_released: OrderKey | None = None
    _streams: dict[Any, _Stream] = field(default_factory=dict)
    _sources: dict[str, _Source] = field(default_factory=dict)
    _pending: set[Any] = field(default_factory=set)  # streams not read up to their end since (re)start
    _pending_since: float = 0.0

    def __len__(self) -> int:
        return len(self._heap)

    def oldest(self) -> OrderKey | None:
        """Order key of the next change to be released (None when the buffer is empty)."""
        return self._heap[0][0] if self._heap else None

    def depth(self, key: Any) -> int:
        return self._per_key[key]

    def heartbeat(self, source: str, now: float, at: datetime | None = None, stopped: bool = False) -> None:
        """`source` is alive at wall-clock `now`; its heartbeat was sent at `at` (if known). `stopped`: the
        stack's marker that its capture was stopped with the rest (`tidemark down`), after the capture's
        last records were acknowledged: its streams hold only until their readers judge them idle anew."""
        s = self._sources.setdefault(source, _Source(now))
        if s.silent_since is not None or s.stopped or stopped:
            self._back(source, s, now, by_heartbeat=not stopped)  # the marker is no return: no backlog follows
        s.seen, s.stopped = now, stopped
        if at is not None:
            s.beat = max(s.beat or 0, (at - _EPOCH) // _MICROSECOND)

    def silent(self, source: str, now: float, judged_at: float | None = None) -> None:
        """The reader of `source`'s heartbeat stream is at its end and nothing came for the idle timeout
        (judged at wall-clock `judged_at`; a judgement older than its last sign of life is stale). A source
        that never sent a heartbeat (none written yet) is not judged by them: its quiet streams are quiet,
        not stalled."""
        s = self._sources.get(source)
        if s is not None and s.silent_since is None and not s.stopped and (judged_at is None or judged_at >= s.seen):
            s.silent_since = now

    def idle(self, stream: Any, now: float, judged_at: float | None = None) -> None:
        """The reader of `stream` is at its end and nothing came for the idle timeout (judged at wall-clock
        `judged_at`): it stops holding until it delivers again, unless its source came back since."""
        s = self._streams.get(stream)
        if s is None or s.idle_at is not None:
            return
        src = self._sources.get(s.source)
        if src is not None and (judged_at if judged_at is not None else now) < src.trust_idle_from:
            return  # judged before the source's backlog could have been read
        s.idle_at = now

    def _back(self, name: str, source: _Source, now: float, by_heartbeat: bool) -> None:
        """`source` shows life after a silence (or its first change after that): void its streams' idle marks."""
        source.silent_since, source.back_by_heartbeat, source.stopped = None, by_heartbeat, False
        source.trust_idle_from = now + self.settle_s
        for stream in self._streams.values():
            if stream.source == name:
                stream.idle_at = None

    def expect(self, streams: Iterable[Any], now: float) -> None:
        """At (re)start: hold everything until each of `streams` is `ready`. Idle and silent marks
        restored from a snapshot are void: the readers report again."""
        self._pending, self._pending_since = set(streams), now
        for stream in self._streams.values():
            stream.idle_at = None
        for source in self._sources.values():
            source.seen, source.silent_since, source.back_by_heartbeat = now, None, False

    def ready(self, stream: Any) -> None:
        """`stream` has been read up to where it stood at (re)start (or delivered its first changes)."""
        self._pending.discard(stream)

    def stalled(self) -> list[str]:
        """Heartbeat sources whose heartbeat stream is silent."""
        return sorted(name for name, s in self._sources.items() if s.silent_since is not None)

    def push(self, change: _Change, key: Any, now: float, stream: Any = None,
             release: bool = True) -> list[tuple[Any, bool]]:  # fmt: skip
        """Add a change for customer `key` from input `stream` at wall-clock `now`; return the
        (change, late) pairs to process now. `release=False` (a batch, followed by `tick`): the watermark
        is computed once per batch, not per change, unless the buffer is full."""
        okey = order_key(change)
        stream = stream if stream is not None else change.source
        mark = self._streams.get(stream)
        if mark is None:
            self._streams[stream] = _Stream(change.source, okey[0])
        else:
            mark.newest, mark.idle_at = max(mark.newest, okey[0]), None
        src = self._sources.get(change.source)
        if src is not None:
            earliest = okey[0] - change.commit_resolution_us
            if src.silent_since is not None or src.back_by_heartbeat or _after_stop(src, earliest):
                self._back(change.source, src, now, by_heartbeat=False)
            src.seen = now
        if self._last_released is not None and okey < self._last_released:
            self.stats.late += 1
            self.stats.max_lateness_s = max(self.stats.max_lateness_s, (self._last_released[0] - okey[0]) / 1e6)
            return [(change, True)]
        self._seq += 1
        heapq.heappush(self._heap, (okey, self._seq, key, change, now))
        self._per_key[key] += 1
        full = self._per_key[key] > self.max_per_key or len(self._heap) > self.max_total
        out = self._release_until(self._watermark(now), now) if release or full else []
        while self._heap and (self._per_key[key] > self.max_per_key or len(self._heap) > self.max_total):
            self.stats.overflow += 1
            out.append(self._pop(now))
        return out

    def _watermark(self, now: float) -> int | None:
        """Commit time up to which changes may go; None: nothing holds, everything may go."""
        if self._pending and now - self._pending_since < self.stall_hold_s:
            return -1  # still starting: an input not read yet may hold anything
        stalled = {name: src for name, src in self._sources.items()
                   if src.silent_since is not None and now - src.silent_since < self.stall_hold_s}  # fmt: skip
        # Nothing a stalled source sends later was committed before its last heartbeat.
        marks = [src.beat for src in stalled.values() if src.beat is not None]
        for s in self._streams.values():
            if s.idle_at is None:
                marks.append(s.newest)
                continue
            src = self._sources.get(s.source)
            if src is None or src.stopped or (src.silent_since is not None and s.source not in stalled):
                continue  # no heartbeats to judge by, stopped with the stack, or stalled for longer than the hold
            # A heartbeat source's stream is quiet only once the source showed life after it went idle:
            # its data streams go idle up to a heartbeat interval before its heartbeat stream goes
            # silent, and until then a dead capture looks like a quiet one.
            if s.idle_at >= src.seen:
                marks.append(s.newest)
        return min(marks) - round(self.grace_s * 1e6) if marks else None

    def tick(self, now: float) -> list[tuple[Any, bool]]:
        """Call periodically: releases what streams that went quiet no longer hold back."""
        return self._release_until(self._watermark(now), now) if self._heap else []

    def flush(self, now: float | None = None) -> list[tuple[Any, bool]]:
        out = []
        while self._heap:
            out.append(self._pop(now))
        return out

    def _release_until(self, watermark: int | None, now: float) -> list[tuple[Any, bool]]:
        out = []
        while self._heap and (watermark is None or self._heap[0][0][0] <= watermark):
            out.append(self._pop(now))
        return out

    def _pop(self, now: float | None) -> tuple[Any, bool]:
        okey, _, key, change, arrived = heapq.heappop(self._heap)
        if now is not None:
            self.stats.waits.append(max(now - arrived, 0.0))
        self._per_key[key] -= 1
        if not self._per_key[key]:
            del self._per_key[key]
        self._last_released = okey
        self.stats.released += 1
        return change, False
