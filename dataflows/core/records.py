"""The per-customer half of the consistency core: what one change or steward decision does to the golden
records identity put it on (merge, derive afresh after a split or a move, apply under the ownership policy,
governance, lifecycle events).

It reads and writes only the records of the golden ids its Step involves, and identity only through the
clusters the step carries: nothing here reads the reorder buffer, the dedupe marks, the identity index or
another customer. So the serial core and a core partitioned by golden id run this same code.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from dataflows.core.golden import GoldenRecord, Proposal, SourceRow, apply_change, rebuild
from dataflows.core.identity import Cluster, Merge, Ref, Resolution, link_dict
from dataflows.core.inputs import Cause, StewardCommand
from dataflows.core.lifecycle import derive_status, fact_events, status_events
from dataflows.core.pickled import pickled_fast
from dataflows.core.change import CanonicalChange, stable_id
from dataflows.core.policy import Policy
from schemas.v1.entities import LifecycleStatus
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
    owner_writes: Counter[tuple[str, str]] = field(default_factory=Counter)  # (field, system): no record

    def __setstate__(self, state: dict[str, Any]) -> None:
        # A snapshot taken before owner writes were counted resumes with none counted.
        self.__dict__.update(state)
        self.__dict__.setdefault("owner_writes", Counter())


@pickled_fast
@dataclass(frozen=True, slots=True)
class Step:
    """What the cross-customer prefix decided about one change or steward command: everything the
    per-customer suffix needs besides the records themselves."""

    cause: Cause
    resolution: Resolution
    ref: Ref | None = None  # the change's source customer (None for a steward command)
    clusters: Mapping[str, Cluster] = field(default_factory=dict)  # identity, as resolved, of involved ids

    def involved(self) -> frozenset[str]:
        """The golden ids whose records this step reads or writes."""
        r = self.resolution
        ids = {r.golden_id, *r.rebuild, *r.split_off}
        ids.update(i for m in r.merges for i in (m.merged, m.survivor))
        ids.update(i for m in r.moves for i in (m.from_id, m.to_id))
        return frozenset(ids)


def step_clusters(resolution: Resolution, clusters: Mapping[str, Cluster]) -> dict[str, Cluster]:
    """The clusters a step's suffix reads, out of all of identity's."""
    step = Step(None, resolution)  # type: ignore[arg-type]
    return {gid: clusters[gid] for gid in step.involved() if gid in clusters}


class RecordKeeper:
    """Applies steps to golden records (see the module docstring)."""

    def __init__(self, policy: Policy, records: dict[str, GoldenRecord], stats: CoreStats) -> None:
        self.policy = policy
        self.records = records
        self.stats = stats

    def apply(self, step: Step, out: CoreOutput, dirty: dict[str, Cause]) -> None:
        if isinstance(step.cause, StewardCommand):
            self._steward(step, out, dirty)
        else:
            self._change(step, out, dirty)

    def _change(self, step: Step, out: CoreOutput, dirty: dict[str, Cause]) -> None:
        change, resolution = step.cause, step.resolution
        assert isinstance(change, CanonicalChange) and step.ref is not None
        record, prior = self._settle(step, out, dirty, focus=resolution.golden_id)
        created = record is None or record.version == 0  # never emitted (a first attempt may have failed)
        if record is None:
            record = self.records[resolution.golden_id] = GoldenRecord(resolution.golden_id)
        if resolution.regrouped:
            _sync_links(record, step.clusters)
        _remember(change, step.ref, record)

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

    def _steward(self, step: Step, out: CoreOutput, dirty: dict[str, Cause]) -> None:
        command, resolution = step.cause, step.resolution
        self._settle(step, out, dirty)
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
    def _settle(self, step: Step, out: CoreOutput, dirty: dict[str, Cause],
                focus: str | None = None) -> tuple[GoldenRecord | None, LifecycleStatus | None]:  # fmt: skip
        """Carry out what identity decided: merges, records derived afresh after a split or move, the
        events of both, and governance records of refused links and unusable identifiers. Returns the
        golden record of `focus` and, when it was derived afresh, its status before (its status events
        wait for the change being applied to it)."""
        resolution, cause = step.resolution, step.cause
        for merge in resolution.merges:
            self._merge(merge, cause, out)
            _sync_links(self.records[merge.survivor], step.clusters)
        prior = self._rebuild(step, out, dirty, focus) if resolution.rebuild else None
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
            _sync_links(record, step.clusters)
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

    def _rebuild(self, step: Step, out: CoreOutput, dirty: dict[str, Cause],
                 focus: str | None) -> LifecycleStatus | None:  # fmt: skip
        """Derive the records whose source customers changed hands afresh from those customers' rows."""
        resolution, cause = step.resolution, step.cause
        prior = None
        olds = {gid: self.records.pop(gid) for gid in resolution.rebuild if gid in self.records}
        parts = [(entity, key, old.child_refs.get(key), fields, gid) for gid, old in olds.items()
                 for entity, ps in old.children.items() for key, fields in ps.items()]  # fmt: skip
        # Every source customer of a rebuilt record was in one of the old records (merges absorbed first).
        images = {ref: image for old in olds.values() for ref, image in old.images.items()}
        occurred = cause.commit_time.isoformat()
        for gid in resolution.rebuild:
            refs = step.clusters[gid].refs
            mine = [(e, k, r, f) for e, k, r, f, home in parts if (r in refs if r is not None else home == gid)]
            own = sorted((images[r] for r in refs if r in images), key=lambda c: (c.commit_time, c.source, c.position))
            record = self.records[gid] = rebuild(gid, own, mine, self.policy)  # type: ignore[arg-type]
            record.images = {r: images[r] for r in refs if r in images}
            old = olds.get(gid)
            record.version = (old.version if old else 0) + 1
            record.updated_at = max(old.updated_at, cause.commit_time) if old else cause.commit_time
            record.last_correlation_id = cause.correlation_id
            record.status = derive_status(record.watched(), record.children, set(record.source_ids))
            _sync_links(record, step.clusters)
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
            if p.decision is D.APPLIED:  # the owner's plain write: provenance and a metric, not a record
                self.stats.owner_writes[(p.field, change.system)] += 1
                continue
            self.stats.governance[(p.field, change.system, p.decision.value)] += 1
            out.governance.append(_governance_record(record.customer_id, p.entity, p.field, p.proposed, p.current,
                                                     change, p.decision.value, p.reason))  # fmt: skip


def _sync_links(record: GoldenRecord, clusters: Mapping[str, Cluster]) -> None:
    cluster = clusters.get(record.customer_id)
    if cluster is not None:
        record.links = [link_dict(link) for link in cluster.links]
        record.match_rules = cluster.rules


def _remember(change: CanonicalChange, ref: Ref, record: GoldenRecord) -> None:
    """Keep each source customer's latest row (a record split or moved is derived afresh from them) and
    which source customer each part belongs to."""
    if change.entity == "customer":
        if change.deleted:
            record.images.pop(ref, None)
        else:
            record.images[ref] = SourceRow.of(change)
    elif change.deleted:
        record.child_refs.pop(f"{change.source}:{change.entity_key}", None)
    else:
        record.child_refs[f"{change.source}:{change.entity_key}"] = ref


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


def change_meta(change: Cause) -> dict[str, Any]:
    """What a target row or header says about the change that produced it."""
    return {"correlation_id": change.correlation_id, "causation_id": change.change_id,
            "source_system": change.system, "source_position": change.position_text,
            "commit_ts": change.commit_time.timestamp()}  # fmt: skip


def _plain(value: Any) -> Any:
    if value is None or isinstance(value, str | int | bool | float):
        return value
    return value.isoformat() if hasattr(value, "isoformat") else str(value)
