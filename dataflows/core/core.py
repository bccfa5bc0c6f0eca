"""The consistency core: canonical changes in; golden records, governance decisions and lifecycle events out.

    submit(change) -> reorder -> dedupe -> identity -> ownership/apply -> lifecycle -> CoreOutput

Plain Python, engine-free: the dataflow only feeds it changes and the wall clock, and ships its outputs.
Every output is a deterministic function of the changes processed, in the order the reorder buffer
releases them, so a replay yields the same ids.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field, replace
from typing import Any

from dataflows.core.dedupe import HighWaterMarks, Verdict
from dataflows.core.golden import GoldenRecord, Proposal, apply_change, rebuild
from dataflows.core.identity import IdentityResolver, Merge, Ref, Resolution, link_dict
from dataflows.core.inputs import (
    Cause,
    CoreInput,
    Heartbeat,
    SourceSilent,
    StewardCommand,
    StreamIdle,
    StreamReady,
)
from dataflows.core.lifecycle import derive_status, fact_events, status_events
from dataflows.core.change import CanonicalChange, stable_id
from dataflows.core.policy import Policy
from dataflows.core.reorder import Reorderer
from schemas.v1.entities import LifecycleStatus
from dataflows.core.resnapshot import SnapshotSweep
from schemas.v1.events import EventType
from schemas.v1.governance import GovernanceDecision as D


@dataclass
class CoreOutput:
    """What one call produced. Plain dicts in the shapes of schemas.v1 (validated in tests, serialized by
    the dataflow), so the hot path builds no pydantic models."""

    events: list[dict[str, Any]] = field(default_factory=list)
    customers: list[tuple[dict[str, Any], dict[str, Any]]] = field(default_factory=list)  # (record, change meta)
    retired: list[tuple[str, str]] = field(default_factory=list)  # (merged id, surviving id)
    governance: list[dict[str, Any]] = field(default_factory=list)
    errors: list[tuple[Cause, str, str]] = field(default_factory=list)  # (change, class, reason)
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
        # Each source customer's latest row: a golden record split or moved is derived afresh from them.
        self.ref_images: dict[Ref, CanonicalChange] = {}
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
                                              change.origin[:2] if change.origin else change.source)  # fmt: skip
                continue
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
                out.customers.append((record.as_dict(), _meta(change)))
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

    # -- one change -----------------------------------------------------------------------------
    def _process(self, change: CanonicalChange, out: CoreOutput, dirty: dict[str, Cause]) -> None:
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
        record, prior = self._settle(resolution, change, out, dirty, focus=resolution.golden_id)
        created = record is None or record.version == 0  # never emitted (a first attempt may have failed)
        if record is None:
            record = self.records[resolution.golden_id] = GoldenRecord(resolution.golden_id)
        if resolution.regrouped:
            self._sync_links(record)
        self._remember(change, ref, record)

        old_status = record.status if prior is None else prior
        proposals, before, after, changed = apply_change(record, change, self.policy)
        occurred = change.commit_time.isoformat()
        if proposals:
            self._governance(record, change, proposals, out)
        if not (changed or created or resolution.merges or resolution.moves):
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

    def _merge(self, merge: Merge, change: Cause, out: CoreOutput) -> GoldenRecord:
        survivor = self.records.get(merge.survivor) or GoldenRecord(merge.survivor)
        merged = self.records.pop(merge.merged, None)
        if merged is not None:
            survivor.absorb(merged)
        self.records[merge.survivor] = survivor
        # A chain (A into B, then B into C) retires every merged id into the final survivor.
        out.retired = [(m, merge.survivor if s == merge.merged else s) for m, s in out.retired]
        out.retired.append((merge.merged, merge.survivor))
        payload = {"merged_customer_id": merge.merged, "surviving_customer_id": merge.survivor, "rule": merge.rule}
        self._event(out, survivor, EventType.CUSTOMER_MERGED, change, payload, change.commit_time.isoformat())
        return survivor

    # -- identity outcomes ------------------------------------------------------------------------
    def _settle(self, resolution: Resolution, cause: Cause, out: CoreOutput, dirty: dict[str, Cause],
                focus: str | None = None) -> tuple[GoldenRecord | None, LifecycleStatus | None]:  # fmt: skip
        """Carry out what identity decided: merges, records derived afresh after a split or move, the
        events of both, and governance records of refused links and unusable identifiers. Returns the
        golden record of `focus` and, when it was derived afresh, its status before (its status events
        wait for the change being applied to it)."""
        for merge in resolution.merges:
            self._merge(merge, cause, out)
            self._sync_links(self.records[merge.survivor])
        prior = self._rebuild(resolution, cause, out, dirty, focus) if resolution.rebuild else None
        occurred = cause.commit_time.isoformat()
        for move in resolution.moves:
            if move.to_id not in resolution.split_off and move.to_id in self.records:
                payload = {"source_ref": payload_ref(move.ref), "from_customer_id": move.from_id,
                           "to_customer_id": move.to_id}  # fmt: skip
                self._event(out, self.records[move.to_id], EventType.CUSTOMER_RELINKED, cause, payload, occurred)
            self._identity_record(out, move.to_id, cause, "identity:source_customer", payload_ref(move.ref),
                                  move.from_id, D.RELINKED, f"moved from {move.from_id} to {move.to_id}")  # fmt: skip
        record = self.records.get(resolution.golden_id)
        if record is not None and resolution.merges:
            self._sync_links(record)
        customer_id = resolution.golden_id
        for c in resolution.conflicts:
            self._identity_record(out, customer_id, cause, f"identity:{c.rule}", f"{c.b[0]}:{c.b[1]}",
                                  f"{c.a[0]}:{c.a[1]}", D.IDENTITY_CONFLICT, c.reason)  # fmt: skip
        values = cause.image if isinstance(cause, CanonicalChange) else {}
        for rule, finding in resolution.findings:
            spec = next(r for r in self.policy.match_rules if r.name == rule).fields[0]
            value = next((values.get(f) for f in spec.split("|") if values.get(f) not in (None, "")), None)
            self._identity_record(out, customer_id, cause, spec.split("|")[0], value, None, D.INVALID_IDENTIFIER,
                                  finding)  # fmt: skip
        return record, prior

    def _sync_links(self, record: GoldenRecord) -> None:
        cluster = self.identity.clusters.get(record.customer_id)
        if cluster is not None:
            record.links = [link_dict(link) for link in cluster.links]
            record.match_rules = cluster.rules

    def _remember(self, change: CanonicalChange, ref: Ref, record: GoldenRecord) -> None:
        if change.entity == "customer":
            if change.deleted:
                self.ref_images.pop(ref, None)
            else:
                self.ref_images[ref] = replace(change, origin=None, fields={})
        elif change.deleted:
            record.child_refs.pop(f"{change.source}:{change.entity_key}", None)
        else:
            record.child_refs[f"{change.source}:{change.entity_key}"] = ref

    def _rebuild(self, resolution: Resolution, cause: Cause, out: CoreOutput, dirty: dict[str, Cause],
                 focus: str | None) -> LifecycleStatus | None:  # fmt: skip
        """Derive the records whose source customers changed hands afresh from those customers' rows."""
        prior = None
        olds = {gid: self.records.pop(gid) for gid in resolution.rebuild if gid in self.records}
        parts = [(entity, key, old.child_refs.get(key), fields, gid) for gid, old in olds.items()
                 for entity, ps in old.children.items() for key, fields in ps.items()]  # fmt: skip
        occurred = cause.commit_time.isoformat()
        for gid in resolution.rebuild:
            refs = self.identity.clusters[gid].refs
            images = sorted((self.ref_images[r] for r in refs if r in self.ref_images),
                            key=lambda c: (c.commit_time, c.source, c.position))  # fmt: skip
            mine = [(e, k, r, f) for e, k, r, f, home in parts if (r in refs if r is not None else home == gid)]
            record = self.records[gid] = rebuild(gid, images, mine, self.policy)  # type: ignore[arg-type]
            old = olds.get(gid)
            record.version = (old.version if old else 0) + 1
            record.updated_at = max(old.updated_at, cause.commit_time) if old else cause.commit_time
            record.last_correlation_id = cause.correlation_id
            record.status = derive_status(record.watched(), record.children, set(record.source_ids))
            self._sync_links(record)
            if gid in resolution.split_off:
                payload = {"split_from_customer_id": next(m.from_id for m in resolution.moves if m.to_id == gid),
                           "source_refs": sorted(f"{s}:{i}" for s, i in refs),
                           "requested_by": cause.requested_by if isinstance(cause, StewardCommand) else None}  # fmt: skip
                self._event(out, record, EventType.CUSTOMER_SPLIT, cause, payload, occurred)
            elif gid == focus and old is not None:
                prior = old.status
            elif old is not None:
                for event_type, payload in status_events(old.status, record.status):
                    self._event(out, record, event_type, cause, payload, occurred)
            dirty.pop(gid, None)
            dirty[gid] = cause
        return prior

    # -- stewardship ------------------------------------------------------------------------------
    def _steward(self, command: StewardCommand, out: CoreOutput, dirty: dict[str, Cause]) -> None:
        # Once per delivery position: a redelivery acts once, failed or not, while a dead letter replayed
        # onto the topic (a new position) is tried again.
        delivery = (command.command_id, command.position)
        if delivery in self.steward_applied:
            return
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
            return  # nothing (left) to split
        self._settle(resolution, command, out, dirty)
        occurred = command.commit_time.isoformat()
        for survivor in {m.survivor for m in resolution.merges} - set(resolution.rebuild):
            record = self.records[survivor]  # a new version, so version-guarded targets take it
            record.version += 1
            record.last_correlation_id = command.correlation_id
            old_status, record.status = record.status, derive_status(record.watched(), record.children,
                                                                     set(record.source_ids))  # fmt: skip
            for event_type, payload in status_events(old_status, record.status):
                self._event(out, record, event_type, command, payload, occurred)
            dirty.pop(survivor, None)
            dirty[survivor] = command

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

    # -- outputs --------------------------------------------------------------------------------
    def _event(self, out: CoreOutput, record: GoldenRecord, event_type: EventType, change: Cause,
               payload: dict[str, Any], occurred: str) -> None:  # fmt: skip
        # One change can merge or move several customers into one: what it merged or moved tells them apart.
        which = payload.get("merged_customer_id") or payload.get("source_ref") or ""
        basis = f"{event_type.value}|{record.customer_id}|{change.change_id}|{which}"
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

    def _identity_record(self, out: CoreOutput, customer_id: str, cause: Cause, name: str, proposed: Any,
                         current: Any, decision: D, reason: str) -> None:  # fmt: skip
        self.stats.governance[(name, cause.system, decision.value)] += 1
        out.governance.append(_governance_record(customer_id, "customer", name, proposed, current, cause,
                                                 decision.value, reason))  # fmt: skip

    def _governance(self, record: GoldenRecord, change: CanonicalChange, proposals: list[Proposal],
                    out: CoreOutput) -> None:  # fmt: skip
        for p in proposals:
            self.stats.governance[(p.field, change.system, p.decision.value)] += 1
            out.governance.append(_governance_record(record.customer_id, p.entity, p.field, p.proposed, p.current,
                                                     change, p.decision.value, p.reason))  # fmt: skip


def _governance_record(customer_id: str, entity: str, name: str, proposed: Any, current: Any, cause: Cause,
                       decision: str, reason: str) -> dict[str, Any]:  # fmt: skip
    return {
        "customer_id": customer_id,
        "entity": entity,
        "field": name,
        "proposed_value": _plain(proposed),
        "current_value": _plain(current),
        "source": cause.source,
        "source_system": cause.system,
        "decision": decision,
        "reason": reason,
        "correlation_id": cause.correlation_id,
        "causation_id": cause.change_id,
        "source_position": cause.position_text,
        "occurred_at": cause.commit_time.isoformat(),
        "schema_version": 1,
    }


def payload_ref(ref: Ref) -> str:
    return f"{ref[0]}:{ref[1]}"


def _meta(change: Cause) -> dict[str, Any]:
    """What a target row or header says about the change that produced it."""
    return {"correlation_id": change.correlation_id, "causation_id": change.change_id,
            "source_system": change.system, "source_position": change.position_text,
            "commit_ts": change.commit_time.timestamp()}  # fmt: skip


def _plain(value: Any) -> Any:
    if value is None or isinstance(value, str | int | bool | float):
        return value
    return value.isoformat() if hasattr(value, "isoformat") else str(value)
