"""Release changes in commit-time order (ties: source, then source position) behind an event-time watermark.

The watermark is the newest commit time seen minus a grace period, taken per input stream (a Kafka
partition): the slowest stream that delivered within the idle timeout holds it back, so a partition read
ahead of the others during a backlog cannot make theirs late. It advances with the data, not with the
wall clock, so a backlog replayed hours later is still ordered (Bytewax's EventClock would mark it late). When nothing arrives for `idle_timeout` of wall-clock time, everything buffered is released, so a
quiet source still flushes. A change behind the watermark (arriving after something newer was released)
is released at once and counted as late: downstream merges it by version, it is never dropped.

The buffer is bounded per customer key and overall: when a bound is hit the oldest buffered changes are
released early, still in order, and counted as overflow.
"""

from __future__ import annotations

import heapq
from collections import Counter, deque
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)


class _Change(Protocol):
    source: str
    position: tuple[int, ...]
    commit_time: datetime


OrderKey = tuple[int, str, tuple[int, ...]]  # (commit time in epoch microseconds, source, position)


def order_key(change: _Change) -> OrderKey:
    return ((change.commit_time - _EPOCH) // _MICROSECOND, change.source, change.position)


@dataclass
class ReorderStats:
    released: int = 0
    late: int = 0
    overflow: int = 0
    max_lateness_s: float = 0.0
    # Wall-clock seconds released changes waited; bounded, drained by whoever exports metrics.
    waits: deque[float] = field(default_factory=lambda: deque(maxlen=10_000))


@dataclass
class Reorderer:
    grace_s: float
    idle_timeout_s: float
    max_per_key: int
    max_total: int
    stats: ReorderStats = field(default_factory=ReorderStats)
    _heap: list[tuple[OrderKey, int, Any, Any, float]] = field(default_factory=list)
    _per_key: Counter[Any] = field(default_factory=Counter)
    _seq: int = 0
    _newest: int | None = None
    _last_released: OrderKey | None = None
    _last_arrival: float | None = None
    _streams: dict[Any, list[float]] = field(default_factory=dict)  # stream -> [newest commit us, last seen]

    def __len__(self) -> int:
        return len(self._heap)

    def depth(self, key: Any) -> int:
        return self._per_key[key]

    def push(self, change: _Change, key: Any, now: float, stream: Any = None) -> list[tuple[Any, bool]]:
        """Add a change for customer `key` from input `stream` at wall-clock `now`; return the
        (change, late) pairs to process now."""
        self._last_arrival = now
        okey = order_key(change)
        if stream is not None:
            mark = self._streams.setdefault(stream, [okey[0], now])
            mark[0], mark[1] = max(mark[0], okey[0]), now
        if self._last_released is not None and okey < self._last_released:
            self.stats.late += 1
            self.stats.max_lateness_s = max(self.stats.max_lateness_s, (self._last_released[0] - okey[0]) / 1e6)
            return [(change, True)]
        self._seq += 1
        heapq.heappush(self._heap, (okey, self._seq, key, change, now))
        self._per_key[key] += 1
        if self._newest is None or okey[0] > self._newest:
            self._newest = okey[0]
        out = self._release_until(self._watermark(now), now)
        while self._heap and (self._per_key[key] > self.max_per_key or len(self._heap) > self.max_total):
            self.stats.overflow += 1
            out.append(self._pop(now))
        return out

    def _watermark(self, now: float) -> int:
        assert self._newest is not None
        active = [newest for newest, seen in self._streams.values() if now - seen < self.idle_timeout_s]
        return (min(active) if active else self._newest) - round(self.grace_s * 1e6)

    def tick(self, now: float) -> list[tuple[Any, bool]]:
        """Release everything when the input has been quiet for the idle timeout."""
        if self._heap and self._last_arrival is not None and now - self._last_arrival >= self.idle_timeout_s:
            return self.flush(now)
        return []

    def flush(self, now: float | None = None) -> list[tuple[Any, bool]]:
        out = []
        while self._heap:
            out.append(self._pop(now))
        return out

    def oldest_wait(self, now: float) -> float:
        """Seconds the input has been quiet while changes wait (0 when nothing is buffered)."""
        if not self._heap or self._last_arrival is None:
            return 0.0
        return now - self._last_arrival

    def _release_until(self, watermark: int, now: float) -> list[tuple[Any, bool]]:
        out = []
        while self._heap and self._heap[0][0][0] <= watermark:
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

    def snapshot_state(self) -> dict[str, Any]:
        """Plain state for recovery snapshots."""
        return {
            "heap": list(self._heap),
            "seq": self._seq,
            "newest": self._newest,
            "last_released": self._last_released,
            "streams": dict(self._streams),
        }

    def restore_state(self, state: dict[str, Any]) -> None:
        self._heap = list(state["heap"])
        heapq.heapify(self._heap)
        self._per_key = Counter(entry[2] for entry in self._heap)
        self._seq = state["seq"]
        self._newest = state["newest"]
        self._last_released = state["last_released"]
        self._streams = {k: list(v) for k, v in state["streams"].items()}
