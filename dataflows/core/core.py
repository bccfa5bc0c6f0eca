"""The consistency core: canonical changes in; golden records, governance decisions and lifecycle events out.

    submit(change) -> reorder -> dedupe -> identity -> ownership/apply -> lifecycle -> CoreOutput

Plain Python, engine-free: the dataflow only feeds it changes and the wall clock, and ships its outputs.
Every output is a deterministic function of the changes processed, in the order the reorder buffer
releases them, so a replay yields the same ids.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from dataflows.core.dedupe import HighWaterMarks, Verdict
from dataflows.core.golden import GoldenRecord, Proposal, apply_change
from dataflows.core.identity import IdentityResolver, Merge
from dataflows.core.lifecycle import derive_status, fact_events, status_events
from dataflows.core.mapping import CanonicalChange, stable_id
from dataflows.core.policy import Policy
from dataflows.core.reorder import Reorderer
from dataflows.core.resnapshot import SnapshotSweep
from schemas.v1.events import EventType


@dataclass(frozen=True)
class Heartbeat:
    """A source's capture is alive (a Debezium heartbeat record, sent at `at`); it carries no change."""

    source: str
    at: datetime | None = None


@dataclass(frozen=True)
class StreamReady:
    """An input stream (a Kafka partition) has been read up to where it stood when the dataflow
    (re)started; until every stream is, nothing is released (see Reorderer.expect)."""

    stream: Any


@dataclass(frozen=True)
class StreamIdle:
    """An input stream's reader is at its end and nothing came for the idle timeout: it stops holding
    the reorder watermark until it delivers again. `judged_at`: wall clock of the reader's judgement."""

    stream: Any
    judged_at: float | None = None


@dataclass(frozen=True)
class SourceSilent:
    """A source's heartbeat stream is at its end and no heartbeat came for the idle timeout: its capture
    or database is down. `judged_at`: wall clock of the reader's judgement."""

    source: str
    judged_at: float | None = None


CoreInput = CanonicalChange | Heartbeat | StreamReady | StreamIdle | SourceSilent


@dataclass
class CoreOutput:
    """What one call produced. Plain dicts in the shapes of schemas.v1 (validated in tests, serialized by
    the dataflow), so the hot path builds no pydantic models."""

    events: list[dict[str, Any]] = field(default_factory=list)
    customers: list[tuple[dict[str, Any], dict[str, Any]]] = field(default_factory=list)  # (record, change meta)
    retired: list[tuple[str, str]] = field(default_factory=list)  # (merged id, surviving id)
    governance: list[dict[str, Any]] = field(default_factory=list)
    errors: list[tuple[CanonicalChange, str, str]] = field(default_factory=list)  # (change, class, reason)
    late: list[CanonicalChange] = field(default_factory=list)

    def extend(self, other: CoreOutput) -> None:
        self.events += other.events
        self.customers += other.customers
        self.retired += other.retired
        self.governance += other.governance
        self.errors += other.errors
        self.late += other.late


@dataclass
class CoreStats:
    changes_in: int = 0
    applied: int = 0
    echoes: int = 0
    events: Counter[str] = field(default_factory=Counter)
    governance: Counter[tuple[str, str, str]] = field(default_factory=Counter)  # (field, system, decision)
    errors: Counter[str] = field(default_factory=Counter)


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
        self._match_fields = self.identity.match_fields()
        self._via_tables = set(policy.via_tables)
        # (source, table, row key) -> (system, customer id), only for tables other rows link through.
        self.via_index: dict[tuple[str, str, str], tuple[str, str]] = {}
        self.snapshots = SnapshotSweep()  # rows absent from a completed snapshot are deleted

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self.__dict__.setdefault("snapshots", SnapshotSweep())  # a recovery snapshot from before it existed

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
        released: list[tuple[CanonicalChange, bool]] = []
        for change in changes:
            if not isinstance(change, CanonicalChange):
                self._signal(change, now)
                continue
            self.stats.changes_in += 1
            key = (change.customer_system, change.customer_ref or change.entity_key)
            released += self.reorder.push(change, key, now, change.origin[:2] if change.origin else change.source)
        return self._process_all(released + self.reorder.tick(now))

    def _signal(self, signal: Heartbeat | StreamReady | StreamIdle | SourceSilent, now: float) -> None:
        if isinstance(signal, Heartbeat):
            self.reorder.heartbeat(signal.source, now, signal.at)
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

    def _process_all(self, released: list[tuple[CanonicalChange, bool]]) -> CoreOutput:
        out = CoreOutput()
        dirty: dict[str, CanonicalChange] = {}  # golden id -> newest change applied to it
        for change, late in released:
            if late:
                out.late.append(change)
            self._process(change, out, dirty)
        for change in self.snapshots.due(self.reorder.oldest()):
            self._process(change, out, dirty)
        for customer_id, change in dirty.items():
            record = self.records.get(customer_id)
            if record is not None:  # not merged away later in the same call
                out.customers.append((record.as_dict(), _meta(change)))
        return out

    # -- one change -----------------------------------------------------------------------------
    def _process(self, change: CanonicalChange, out: CoreOutput, dirty: dict[str, CanonicalChange]) -> None:
        verdict = self.marks.check(change.source, change.table, change.entity_key, change.position, change.snapshot)
        self.snapshots.observe(change, verdict is Verdict.NEW)
        if verdict is not Verdict.NEW:
            return
        if change.echo:
            self.stats.echoes += 1
            return
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
            return
        if (change.source, change.table) in self._via_tables and not change.deleted:
            # Kept after the row's delete: its dependants' own deletes still need their customer.
            self.via_index[(change.source, change.table, change.entity_key)] = ref
        values = None
        if change.entity == "customer" and not change.deleted:
            values = {f: change.image[f] for f in self._match_fields if f in change.image}
        resolution = self.identity.resolve(ref, values)
        record = self.records.get(resolution.golden_id)
        created = record is None
        for merge in resolution.merges:
            record = self._merge(merge, change, out)
        if record is None:
            record = self.records[resolution.golden_id] = GoldenRecord(resolution.golden_id)
        if resolution.joined_by:
            record.match_rules.add(resolution.joined_by)

        old_status = record.status
        proposals, before, after, changed = apply_change(record, change, self.policy)
        occurred = change.commit_time.isoformat()
        if proposals:
            self._governance(record, change, proposals, out, occurred)
        if not (changed or created or resolution.merges):
            return
        self.stats.applied += 1
        record.version += 1
        record.updated_at = max(record.updated_at, change.commit_time)
        record.last_correlation_id = change.correlation_id
        systems = set(record.source_ids)
        record.status = derive_status(record.watched(), record.children, systems)
        if created:
            self._event(out, record, EventType.CUSTOMER_CREATED, change, {"status": record.status.value}, occurred)
        for event_type, payload in fact_events(change.entity, before, after, self.policy.plans):
            self._event(out, record, event_type, change, payload, occurred)
        for event_type, payload in status_events(None if created else old_status, record.status):
            self._event(out, record, event_type, change, payload, occurred)
        dirty.pop(record.customer_id, None)
        dirty[record.customer_id] = change

    def _customer_of(self, change: CanonicalChange) -> tuple[str, str] | None:
        if change.customer_ref is not None:
            return (change.customer_system, change.customer_ref)
        if change.via is not None:
            return self.via_index.get((change.source, *change.via))
        return None

    def _merge(self, merge: Merge, change: CanonicalChange, out: CoreOutput) -> GoldenRecord:
        survivor = self.records.get(merge.survivor) or GoldenRecord(merge.survivor)
        merged = self.records.pop(merge.merged, None)
        if merged is not None:
            survivor.absorb(merged)
        survivor.match_rules.add(merge.rule)
        self.records[merge.survivor] = survivor
        out.retired.append((merge.merged, merge.survivor))
        payload = {"merged_customer_id": merge.merged, "surviving_customer_id": merge.survivor, "rule": merge.rule}
        self._event(out, survivor, EventType.CUSTOMER_MERGED, change, payload, change.commit_time.isoformat())
        return survivor

    # -- outputs --------------------------------------------------------------------------------
    def _event(self, out: CoreOutput, record: GoldenRecord, event_type: EventType, change: CanonicalChange,
               payload: dict[str, Any], occurred: str) -> None:  # fmt: skip
        basis = f"{event_type.value}|{record.customer_id}|{change.change_id}|{payload.get('merged_customer_id', '')}"
        self.stats.events[event_type.value] += 1
        out.events.append({
            "event_id": stable_id(basis),
            "event_type": event_type.value,
            "customer_id": record.customer_id,
            "occurred_at": occurred,
            "source_system": change.system,
            "source_position": change.position_text,
            "correlation_id": change.correlation_id,
            "causation_id": change.change_id,
            "schema_version": 1,
            "payload": payload,
        })  # fmt: skip

    def _governance(self, record: GoldenRecord, change: CanonicalChange, proposals: list[Proposal],
                    out: CoreOutput, occurred: str) -> None:  # fmt: skip
        for p in proposals:
            self.stats.governance[(p.field, change.system, p.decision.value)] += 1
            out.governance.append({
                "customer_id": record.customer_id,
                "entity": p.entity,
                "field": p.field,
                "proposed_value": _plain(p.proposed),
                "current_value": _plain(p.current),
                "source": change.source,
                "source_system": change.system,
                "decision": p.decision.value,
                "reason": p.reason,
                "correlation_id": change.correlation_id,
                "causation_id": change.change_id,
                "source_position": change.position_text,
                "occurred_at": occurred,
                "schema_version": 1,
            })  # fmt: skip


def _meta(change: CanonicalChange) -> dict[str, Any]:
    """What a target row or header says about the change that produced it."""
    return {"correlation_id": change.correlation_id, "causation_id": change.change_id,
            "source_system": change.system, "source_position": change.position_text,
            "commit_ts": change.commit_time.timestamp()}  # fmt: skip


def _plain(value: Any) -> Any:
    if value is None or isinstance(value, str | int | bool | float):
        return value
    return value.isoformat() if hasattr(value, "isoformat") else str(value)
