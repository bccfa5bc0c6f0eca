"""A completed snapshot is the truth about its source: rows the pipeline knew that it did not contain were
deleted while nobody watched (their deletes were lost with the broker that held them).

Debezium marks the rows of a snapshot `source.snapshot = first / true / last`; every row of one snapshot
carries the same source position (the point it was read at), and the `last` one ends it. The snapshot is
complete once that row has been released by the reorder buffer and nothing ordered at or before it is
still buffered (the buffer releases in order, and it releases the `last` row only when every stream has
been read past it or is idle). Then every row of the source the core holds as live and the snapshot did
not contain gets a delete at the snapshot's position: the version guards make it a no-op for a row that
moved on after the snapshot, and a replay of the same snapshot sweeps nothing twice.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from dataflows.core.change import CanonicalChange, stable_id
from dataflows.core.pickled import pickled_fast
from dataflows.core.reorder import OrderKey, order_key

Row = tuple[str, str, str]  # (source, table, row key)
Snapshot = tuple[str, tuple[int, ...]]  # (source, position every row of it carries)


@pickled_fast
@dataclass(frozen=True, slots=True)
class RowRef:
    """What a delete of a row needs to find its golden customer."""

    entity: str
    system: str
    customer_system: str
    customer_ref: str | None
    via: tuple[str, str] | None


@dataclass
class SweepStats:
    snapshots_completed: int = 0
    rows_swept: int = 0


@dataclass
class SnapshotSweep:
    stats: SweepStats = field(default_factory=SweepStats)
    live: dict[Row, RowRef] = field(default_factory=dict)  # rows whose newest applied change is not a delete
    # (snapshot, table, key) read by a snapshot: flat, so an incremental checkpoint carries only the rows read
    # since the last one (core/journal.py), not every row of a snapshot still running
    _seen: set[tuple[Snapshot, str, str]] = field(default_factory=set)
    _ending: dict[Snapshot, tuple[OrderKey, CanonicalChange]] = field(default_factory=dict)  # its `last` row released

    def observe(self, change: CanonicalChange, applied: bool) -> None:
        """Every change the reorder buffer released; `applied`: it passed dedupe (newer than its row's mark)."""
        if change.snapshot and not change.deleted:
            snapshot = (change.source, change.position)
            self._seen.add((snapshot, change.table, change.entity_key))
            if change.snapshot_last:
                self._ending[snapshot] = (order_key(change), change)
        if not applied:
            return
        row = (change.source, change.table, change.entity_key)
        if change.deleted:
            self.live.pop(row, None)
        elif change.customer_ref is not None or change.via is not None:  # an unattributable row has nothing to undo
            ref = RowRef(change.entity, change.system, change.customer_system, change.customer_ref, change.via)
            if self.live.get(row) != ref:  # an update keeps its row's customer: the checkpoint's delta skips it
                self.live[row] = ref

    def due(self, oldest_buffered: OrderKey | None) -> list[CanonicalChange]:
        """Deletes for the rows absent from every snapshot that is now complete."""
        out: list[CanonicalChange] = []
        for snapshot, (key, last) in list(self._ending.items()):
            if oldest_buffered is not None and oldest_buffered[:3] <= key[:3]:
                continue  # rows of this snapshot (or older changes) are still buffered
            del self._ending[snapshot]
            absent = [(row, ref) for row, ref in self.live.items()
                      if row[0] == last.source and (snapshot, row[1], row[2]) not in self._seen]  # fmt: skip
            for read in [item for item in self._seen if item[0] == snapshot]:
                self._seen.discard(read)
            out += [_absent_delete(row, ref, last) for row, ref in absent]
            self.stats.snapshots_completed += 1
            self.stats.rows_swept += len(absent)
        return out


def _absent_delete(row: Row, ref: RowRef, last: CanonicalChange) -> CanonicalChange:
    source, table, key = row
    return CanonicalChange(
        change_id=stable_id(f"{source}:absent:{table}:{key}:{last.position_text}"),
        source=source, system=ref.system, table=table, entity=ref.entity, entity_key=key,
        customer_system=ref.customer_system, customer_ref=ref.customer_ref, via=ref.via, deleted=True,
        fields={}, image={}, position=last.position, position_text=f"{last.position_text} (absent from snapshot)",
        commit_time=last.commit_time, correlation_id=last.correlation_id, snapshot=True,
        commit_resolution_us=last.commit_resolution_us,
    )  # fmt: skip
