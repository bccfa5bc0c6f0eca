"""The consistency core: canonical changes in; golden records, governance decisions and lifecycle events out.

    submit(change) -> reorder -> dedupe -> identity -> ownership/apply -> lifecycle -> CoreOutput

Plain Python, engine-free: the dataflow only feeds it changes and the wall clock, and ships its outputs.
Every output is a deterministic function of the changes processed, in the order the reorder buffer
releases them, so a replay yields the same ids.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from dataflows.core.dedupe import HighWaterMarks, Verdict
from dataflows.core.golden import GoldenRecord
from dataflows.core.identity import Cluster, IdentityResolver, Ref, Resolution
from dataflows.core.inputs import (
    Cause,
    CoreInput,
    Heartbeat,
    SourceSilent,
    StewardCommand,
    StreamIdle,
    StreamReady,
)
from dataflows.core.change import CanonicalChange
from dataflows.core.policy import Policy
from dataflows.core.records import CoreOutput, CoreStats, RecordKeeper, Step, change_meta
from dataflows.core.reorder import Reorderer
from dataflows.core.resnapshot import SnapshotSweep


class ConsistencyCore:
    def __init__(self, policy: Policy) -> None:
        self.policy = policy
        r = policy.reorder
        self.reorder = Reorderer(r.grace_ms / 1000, r.max_per_key, r.max_total, r.stall_hold_ms / 1000,
                                 r.idle_timeout_ms / 1000)
        self.marks = HighWaterMarks()
        self.identity = IdentityResolver(policy)
        self.records: dict[str, GoldenRecord] = {}
        self.stats = CoreStats()
        self.keeper = RecordKeeper(policy, self.records, self.stats)
        self._match_fields = self.identity.match_fields()
        self._via_tables = set(policy.via_tables)
        # (source, table, row key) -> (system, customer id), only for tables other rows link through.
        self.via_index: dict[tuple[str, str, str], tuple[str, str]] = {}
        self.steward_applied: set[tuple[str, tuple[int, ...]]] = set()  # (command id, topic position) applied
        self.snapshots = SnapshotSweep()  # rows absent from a completed snapshot are deleted

    # -- input ----------------------------------------------------------------------------------
    def submit(self, change: CanonicalChange, now: float) -> CoreOutput:
        """Accept one change at wall-clock `now` (seconds); process whatever the buffer releases."""
        self.stats.changes_in += 1
        key = (change.customer_system, change.customer_ref or change.entity_key)
        stream = change.origin[:2] if change.origin else change.source  # (topic, partition) when from Kafka
        return self._process_all(self.reorder.push(change, key, now, stream))

    def submit_batch(self, changes: list[CoreInput], now: float) -> CoreOutput:
        """Accept several changes (and what the readers say about their streams) at once: each changed
        golden record is emitted once, in its final state."""
        released: list[tuple[Cause, bool]] = []
        for change in changes:
            if isinstance(change, StewardCommand):
                released += self.reorder.push(change, ("steward", change.command_id), now,
                                              change.origin[:2] if change.origin else change.source,
                                              release=False)  # fmt: skip
                continue
            if not isinstance(change, CanonicalChange):
                self._signal(change, now)
                continue
            self.stats.changes_in += 1
            key = (change.customer_system, change.customer_ref or change.entity_key)
            stream = change.origin[:2] if change.origin else change.source
            released += self.reorder.push(change, key, now, stream, release=False)
        return self._process_all(released + self.reorder.tick(now))  # the watermark once per batch

    def _signal(self, signal: Heartbeat | StreamReady | StreamIdle | SourceSilent, now: float) -> None:
        if isinstance(signal, Heartbeat):
            self.reorder.heartbeat(signal.source, now, signal.at, signal.stopped)
        elif isinstance(signal, StreamReady):
            self.reorder.ready(signal.stream)
        elif isinstance(signal, StreamIdle):
            self.reorder.idle(signal.stream, now, signal.judged_at)
        else:
            self.reorder.silent(signal.source, now, signal.judged_at)

    def tick(self, now: float) -> CoreOutput:
        """Call periodically: releases what quiet streams no longer hold back."""
        return self._process_all(self.reorder.tick(now))

    def flush(self, now: float | None = None) -> CoreOutput:
        return self._process_all(self.reorder.flush(now))

    def expect(self, streams: list[Any], now: float) -> None:
        """Call at every (re)start with the input streams (see Reorderer.expect)."""
        self.reorder.expect(streams, now)

    def _process_all(self, released: list[tuple[Cause, bool]]) -> CoreOutput:
        out = CoreOutput()
        dirty: dict[str, Cause] = {}  # golden id -> newest change applied to it
        for item, late in released:
            if isinstance(item, StewardCommand):
                self._guarded(self._steward, item, out, dirty)
                continue
            if late:
                out.late.append(item)
            self._guarded(self._process, item, out, dirty)
        for change in self.snapshots.due(self.reorder.oldest()):
            self._guarded(self._process, change, out, dirty)
        for customer_id, change in dirty.items():
            record = self.records.get(customer_id)
            if record is not None:  # not merged away later in the same call
                out.customers.append((record.as_dict(), change_meta(change)))
        return out

    def _guarded(self, step: Any, item: Cause, out: CoreOutput, dirty: dict[str, Cause]) -> None:
        """Run one item's step; any exception dead-letters that item and the flow goes on."""
        mark = self.marks.get(item.source, item.table, item.entity_key) if isinstance(item, CanonicalChange) else None
        try:
            step(item, out, dirty)
        except Exception as e:  # noqa: BLE001 - one record must never stop the pipeline
            if isinstance(item, CanonicalChange):
                self.marks.restore(item.source, item.table, item.entity_key, mark)  # so its replay is not a duplicate
            self.stats.errors["apply_failed"] += 1
            out.errors.append((item, "apply_failed", f"{type(e).__name__}: {e}"))

    # -- one change: the cross-customer prefix, then the per-customer suffix --------------------------
    def _process(self, change: CanonicalChange, out: CoreOutput, dirty: dict[str, Cause]) -> None:
        step = self._prefix(change, out)
        if step is not None:
            self._apply(step, out, dirty)

    def _apply(self, step: Step, out: CoreOutput, dirty: dict[str, Cause]) -> None:
        """The per-customer suffix (records.py); a partitioned core ships the step to its customer's key."""
        self.keeper.apply(step, out, dirty)

    def _prefix(self, change: CanonicalChange, out: CoreOutput) -> Step | None:
        """Dedupe, echo, the row's source customer and its golden customer: the part of a change's
        processing that spans customers. None when nothing more is to be done."""
        verdict = self.marks.check(change.source, change.table, change.entity_key, change.position, change.snapshot)
        # A replayed dead letter is applied again: a change that failed in the partitioned core's customer
        # step kept its mark here. Field versions make a second application of an applied change a no-op.
        if verdict is Verdict.DUPLICATE and change.replayed:
            verdict = Verdict.NEW
        self.snapshots.observe(change, verdict is Verdict.NEW)
        if verdict is not Verdict.NEW:
            return None
        if change.echo:
            self.stats.echoes += 1
            return None
        ref = self._customer_of(change)
        if ref is None:
            if change.via is not None:
                reason = (f"{change.table} row {change.entity_key} links to its customer through {change.via[0]} "
                          f"row {change.via[1]}, which has not been seen: replay it once that row is captured")  # fmt: skip
            else:
                reason = (f"{change.table} row {change.entity_key} names no customer (link column is NULL): "
                          "it cannot be attributed; fix the row or the table's customer link")  # fmt: skip
            self.stats.errors["unlinked_row"] += 1
            out.errors.append((change, "unlinked_row", reason))
            return None
        if (change.source, change.table) in self._via_tables and not change.deleted:
            # Kept after the row's delete: its dependants' own deletes still need their customer.
            self.via_index[(change.source, change.table, change.entity_key)] = ref
        values = None
        if change.entity == "customer" and not change.deleted:
            values = {f: change.image[f] for f in self._match_fields if f in change.image}
        resolution = self.identity.resolve(ref, values)
        return Step(change, resolution, ref, self._carried_clusters(resolution))

    def _carried_clusters(self, resolution: Resolution) -> Mapping[str, Cluster]:
        """The identity clusters a step carries to the per-customer suffix: in one process, all of them."""
        return self.identity.clusters

    def _customer_of(self, change: CanonicalChange) -> tuple[str, str] | None:
        if change.customer_ref is not None:
            return (change.customer_system, change.customer_ref)
        if change.via is not None:
            return self.via_index.get((change.source, *change.via))
        return None

    # -- stewardship ------------------------------------------------------------------------------
    def _steward(self, command: StewardCommand, out: CoreOutput, dirty: dict[str, Cause]) -> None:
        step = self._steward_prefix(command)
        if step is not None:
            self._apply(step, out, dirty)

    def _steward_prefix(self, command: StewardCommand) -> Step | None:
        # Once per delivery position: a redelivery acts once, failed or not, while a dead letter replayed
        # onto the topic (a new position) is tried again.
        delivery = (command.command_id, command.position)
        if delivery in self.steward_applied:
            return None
        self.steward_applied.add(delivery)
        refs = [self._steward_ref(t) for t in command.targets]
        if command.action == "split":
            if command.customer_id is None:
                msg = "a split names the golden customer (customer_id) its targets leave"
                raise ValueError(msg)
            owner = self._steward_ref(command.customer_id)
            resolution = self.identity.split(self.identity.golden_id(owner) or command.customer_id, refs)
        elif len(refs) == 2:  # noqa: PLR2004 - a join joins two
            resolution = self.identity.join(refs[0], refs[1])
        else:
            msg = f"a join names two source customers or golden customers, not {len(refs)}"
            raise ValueError(msg)
        if resolution is None:
            return None  # nothing (left) to split
        return Step(command, resolution, None, self._carried_clusters(resolution))

    def _steward_ref(self, target: str) -> Ref:
        """'system:id' as given, or a golden id's best source customer."""
        system, sep, local = target.partition(":")
        if sep and system and local:
            return (system, local)
        cluster = self.identity.clusters.get(self.identity.current_id(target))
        if cluster is None:
            msg = f"no golden customer {target!r}: give a live golden id or a source customer as system:id"
            raise ValueError(msg)
        return min(cluster.refs, key=self.identity.anchor)
