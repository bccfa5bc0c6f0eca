"""Replay-safe idempotency: one high-water source position per source row, never a set of seen ids.

A change at or below its row's high-water mark has no second effect: a replay after a crash, a
snapshot read of a row already streamed, or an older change that arrives after a newer one of the same
row (the newer one's full image already carries everything the older one could add).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum


class Verdict(Enum):
    NEW = "new"
    DUPLICATE = "duplicate"  # this very position was applied before
    STALE = "stale"  # an older position of a row that has moved on (late, or a snapshot read behind the stream)


@dataclass
class DedupeStats:
    duplicates: int = 0
    stale: int = 0
    stale_snapshots: int = 0


@dataclass
class HighWaterMarks:
    stats: DedupeStats = field(default_factory=DedupeStats)
    _marks: dict[tuple[str, str, str], tuple[int, ...]] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self._marks)

    def check(self, source: str, table: str, row_key: str, position: tuple[int, ...], snapshot: bool) -> Verdict:
        """Record `position` for the row if it is new; say why not otherwise."""
        row = (source, table, row_key)
        mark = self._marks.get(row)
        if mark is None or position > mark:
            self._marks[row] = position
            return Verdict.NEW
        if position == mark:
            self.stats.duplicates += 1
            return Verdict.DUPLICATE
        self.stats.stale += 1
        if snapshot:
            self.stats.stale_snapshots += 1
        return Verdict.STALE

    def get(self, source: str, table: str, row_key: str) -> tuple[int, ...] | None:
        return self._marks.get((source, table, row_key))

    def restore(self, source: str, table: str, row_key: str, mark: tuple[int, ...] | None) -> None:
        """Put a row's mark back (its change failed to apply, so a replay of it must not be a duplicate)."""
        if mark is None:
            self._marks.pop((source, table, row_key), None)
        else:
            self._marks[(source, table, row_key)] = mark
