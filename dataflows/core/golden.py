"""The golden customer record: owned fields with their versions, its parts (contacts, subscriptions, ...),
the source customers it links, and how one canonical change is applied to it under the ownership policy."""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache
from datetime import UTC, datetime
from types import MappingProxyType
from typing import Any, ClassVar

from dataflows.core.change import CanonicalChange
from dataflows.core.ownership import FieldVersion, decide, is_newer
from dataflows.core.pickled import pickled_fast
from dataflows.core.policy import Policy
from schemas.v1.entities import LifecycleStatus
from schemas.v1.governance import GovernanceDecision as D

# Customer fields the lifecycle reads: status derivation and credit events.
WATCHED = ("credit_status", "credit_limit", "erp_status", "crm_stage")
CHILD_COLLECTIONS = {
    "contact": "contacts",
    "billing_account": "billing_accounts",
    "subscription": "subscriptions",
    "opportunity": "opportunities",
    "invoice": "invoices",
}


@pickled_fast
@dataclass(frozen=True, slots=True)
class SourceRow:
    """A source customer's latest row, kept so that a record split or moved can be derived afresh: what
    applying it again reads of the change it came from. The whole change was four times the fields and
    half of a customer key's snapshot time (snapshots taken before hold whole changes: both apply alike)."""

    system: str
    source: str
    entity_key: str
    image: dict[str, Any]
    position: tuple[int, ...]
    commit_time: datetime
    deleted: ClassVar[bool] = False  # a deleted row is not kept
    fields: ClassVar[MappingProxyType[str, Any]] = MappingProxyType({})  # re-applied, it edits nothing

    @classmethod
    def of(cls, change: CanonicalChange) -> SourceRow:
        return cls(change.system, change.source, change.entity_key, change.image, change.position, change.commit_time)


# Provenance: system, source, written by an owner. Not the position or commit time: a restated value moves
# its version forward without a new record version, so they would depend on batching and arrival order.
Origin = tuple[str, str, bool]


@dataclass
class GoldenRecord:
    customer_id: str
    # Written through put, set_part and drop_part only: as_dict's wire sections follow those.
    fields: dict[str, FieldVersion] = field(default_factory=dict)
    children: dict[str, dict[str, dict[str, Any]]] = field(default_factory=dict)
    source_ids: dict[str, set[str]] = field(default_factory=dict)
    match_rules: set[str] = field(default_factory=set)
    links: list[dict[str, Any]] = field(default_factory=list)  # identity evidence (IdentityLinkV1 shapes)
    child_refs: dict[str, tuple[str, str]] = field(default_factory=dict)  # part key -> its source customer
    # Each source customer's latest row: a record split or moved is derived afresh from them.
    images: dict[tuple[str, str], SourceRow | CanonicalChange] = field(default_factory=dict)
    status: LifecycleStatus | None = None
    version: int = 0
    updated_at: datetime = datetime(1970, 1, 1, tzinfo=UTC)
    last_correlation_id: str = ""
    # Last conflicting/rejected value reported per (field, system): a repeat is not reported again.
    reported: dict[tuple[str, str], Any] = field(default_factory=dict)

    def value(self, name: str) -> Any:
        version = self.fields.get(name)
        return None if version is None else version.value

    def watched(self) -> dict[str, Any]:
        """The customer fields lifecycle events and status look at (cheaper than all values)."""
        return {f: self.value(f) for f in WATCHED}

    def absorb(self, other: GoldenRecord) -> None:
        """Merge `other` (the merged-away customer) into this one: per field the newer version wins."""
        for name, theirs in other.fields.items():
            mine = self.fields.get(name)
            if mine is None or _survives(theirs, mine):
                self.put(name, theirs)
        for entity, parts in other.children.items():
            self.children.setdefault(entity, {}).update(parts)
            self._parts_changed(entity)
        self.child_refs.update(other.child_refs)
        self.images.update(other.images)
        for system, ids in other.source_ids.items():
            self.source_ids.setdefault(system, set()).update(ids)
        self.match_rules |= other.match_rules
        self.version = max(self.version, other.version)
        self.updated_at = max(self.updated_at, other.updated_at)

    def put(self, name: str, version: FieldVersion) -> None:
        """Set a field: every write goes through here, so the wire sections follow."""
        wire = self.__dict__.get("_wire")
        if wire is not None:
            wire.put(name, self.fields.get(name), version)
        self.fields[name] = version

    def set_part(self, entity: str, key: str, part: dict[str, Any]) -> None:
        self.children.setdefault(entity, {})[key] = part
        self._parts_changed(entity)

    def drop_part(self, entity: str, key: str) -> dict[str, Any] | None:
        old = self.children.get(entity, {}).pop(key, None)
        if old is not None:
            self._parts_changed(entity)
        return old

    def _parts_changed(self, entity: str) -> None:
        wire = self.__dict__.get("_wire")
        if wire is not None:
            wire.collections.pop(entity, None)

    def __getstate__(self) -> dict[str, Any]:
        # The wire sections are derived: never in a snapshot or a hand-off, rebuilt at the first as_dict.
        state = self.__dict__.copy()
        state.pop("_wire", None)
        return state

    def as_dict(self) -> dict[str, Any]:
        """The CustomerV1 shape, with JSON-ready values. Built for every changed customer of a batch, so
        it copies the sections kept up to date as the record changed (_Wire) instead of converting every
        field and part again."""
        wire = self.__dict__.get("_wire")
        if wire is None:
            wire = self.__dict__["_wire"] = _Wire(self.fields)
        out = dict(wire.values)
        out.update({
            "provenance": wire.provenance(self.fields),
            "customer_id": self.customer_id,
            "lifecycle_status": self.status.value if self.status else None,
            "source_ids": {s: _id_order(ids) for s, ids in sorted(self.source_ids.items())},
            "match_rules": sorted(r for r in self.match_rules if r),
            "links": self.links,
            "version": self.version,
            "updated_at": self.updated_at.isoformat(),
            "last_correlation_id": self.last_correlation_id,
        })  # fmt: skip
        children, collections = self.children, wire.collections
        for entity, collection in CHILD_COLLECTIONS.items():
            built = collections.get(entity)
            if built is None:
                parts = children.get(entity)
                if not parts:
                    out[collection] = {}
                    continue
                built = collections[entity] = {k: {f: _json(v) for f, v in p.items()} for k, p in sorted(parts.items())}
            out[collection] = built
        return out


class _Wire:
    """A golden record's JSON-ready sections, kept up to date as its fields and parts change: the fields'
    values, the provenance (who wrote which; rebuilt only when a field changes writer) and each part
    collection that holds parts, sorted. Outputs share the sections they copy, so a section is replaced
    when it changes, never changed in place. Kept small: a process keeps it for its warm customers."""

    __slots__ = ("_provenance", "collections", "values")

    def __init__(self, fields: dict[str, FieldVersion]) -> None:
        self.values: dict[str, Any] = {name: _json(version.value) for name, version in fields.items()}
        self._provenance: list[dict[str, Any]] | None = None
        self.collections: dict[str, dict[str, Any]] = {}  # entity -> its parts as JSON (absent: none, or to build)

    def put(self, name: str, old: FieldVersion | None, new: FieldVersion) -> None:
        self.values[name] = _json(new.value)
        if old is None or (old.system, old.source, old.by_owner) != (new.system, new.source, new.by_owner):
            self._provenance = None  # the usual write, its owner stating a new value, keeps it

    def provenance(self, fields: dict[str, FieldVersion]) -> list[dict[str, Any]]:
        """One entry per writer with the fields it set (FieldProvenanceV1 shapes, by writer)."""
        if self._provenance is None:
            writes: dict[Origin, list[str]] = {}
            for name, version in fields.items():
                writes.setdefault((version.system, version.source, version.by_owner), []).append(name)
            self._provenance = [{**_provenance(origin), "fields": sorted(names)}
                                for origin, names in sorted(writes.items())]  # fmt: skip
        return self._provenance


def _id_order(ids: set[str]) -> list[str]:
    """Source ids in numeric order where they are numbers (shorter first), else as text."""
    return list(ids) if len(ids) == 1 else sorted(ids, key=lambda i: (len(i), i))


def _survives(theirs: FieldVersion, mine: FieldVersion) -> bool:
    """An owner's value beats a filled one; between equals, the newer version wins."""
    if theirs.by_owner != mine.by_owner:
        return theirs.by_owner
    return is_newer(theirs.source, theirs.position, theirs.commit_ts, mine)


@lru_cache(maxsize=8192)
def _provenance(origin: Origin) -> dict[str, Any]:
    """Who wrote (FieldProvenanceV1 without its fields). Cached; callers copy it, never change it."""
    system, source, by_owner = origin
    return {"system": system, "source": source, "owner": by_owner}


_NATIVE = frozenset({str, int, float, bool, type(None)})  # JSON as they are


def _json(value: Any) -> Any:
    if value.__class__ in _NATIVE or isinstance(value, str | int | bool | float):  # the first test is the fast one
        return value
    return str(value) if not hasattr(value, "isoformat") else value.isoformat()


@dataclass
class Proposal:
    """One ownership decision about one field value. APPLIED is a plain write by the owning system: counted
    and kept as the field's provenance, never published as a governance record."""

    entity: str
    field: str
    proposed: Any
    current: Any
    decision: D
    reason: str


def apply_change(record: GoldenRecord, change: CanonicalChange, policy: Policy) -> tuple[list[Proposal], dict[str, Any] | None, dict[str, Any] | None, bool]:
    """Apply `change` to `record`. Returns (decisions, entity fields before, entity fields after, changed)."""
    if change.entity == "customer":
        return _apply_customer(record, change, policy)
    return _apply_child(record, change, policy)


def _apply_customer(record: GoldenRecord, change: CanonicalChange | SourceRow,
                    policy: Policy) -> tuple[list[Proposal], dict[str, Any], dict[str, Any], bool]:  # fmt: skip
    ids = record.source_ids.setdefault(change.system, set())
    changed = False
    if change.deleted:
        changed = change.entity_key in ids
        ids.discard(change.entity_key)
        if not ids:
            del record.source_ids[change.system]
        return [], record.watched(), record.watched(), changed
    if change.entity_key not in ids:
        ids.add(change.entity_key)
        changed = True
    before = record.watched()
    proposals = []
    ts = change.commit_time.timestamp()
    for name, value in change.image.items():
        current = record.fields.get(name)
        if current is not None and current.value == value:
            if change.system in policy.owners.get(name, ()) and not current.by_owner:
                # The owner states what a non-owner filled: from now on the owner holds it. A new version:
                # the field's provenance changed.
                changed = True
                record.put(name, FieldVersion(value, change.system, change.source, change.position, ts, True))
            elif current.source == change.source and change.position > current.position:
                current.position, current.commit_ts = change.position, ts  # same value, newer version
            continue
        decision, reason = decide(policy, name, change.system, current)
        if decision is D.REJECTED:
            # Only an edit in this change, not a value it merely carries along: re-emitted with a new
            # version, so write-backs restore the owner's value. An empty value is no statement: not recorded.
            if name in change.fields and not (value is None and current is None):
                changed = True
                if value is not None:
                    proposals.append(Proposal("customer", name, value, current.value if current else None, decision,
                                              reason))  # fmt: skip
            continue
        if decision in (D.APPLIED, D.FILLED):
            if current is not None and current.by_owner and not is_newer(change.source, change.position, ts, current):
                decision, reason = D.STALE, "an owner's newer value is already applied"
            else:
                record.put(name, FieldVersion(value, change.system, change.source, change.position, ts,
                                              decision is D.APPLIED))  # fmt: skip
                changed = True
        elif record.reported.get((name, change.system), object()) == value:
            continue  # the same disagreement was reported already
        else:
            record.reported[(name, change.system)] = value
        proposals.append(Proposal("customer", name, value, current.value if current else None, decision, reason))
    return proposals, before, record.watched(), changed


def _apply_child(record: GoldenRecord, change: CanonicalChange, policy: Policy) -> tuple[list[Proposal], dict[str, Any] | None, dict[str, Any] | None, bool]:
    key = f"{change.source}:{change.entity_key}"
    if change.deleted:
        old = record.drop_part(change.entity, key)
        return [], old, None, old is not None
    old = record.children.get(change.entity, {}).get(key)
    new = dict(old or {})
    proposals = []
    for name, value in change.image.items():
        current = new.get(name)
        if name in new and current == value:
            continue
        decision, reason = decide(policy, name, change.system, None)
        if decision in (D.APPLIED, D.FILLED):
            new[name] = value
        elif record.reported.get((name, change.system), object()) == value:
            continue
        else:
            record.reported[(name, change.system)] = value
        proposals.append(Proposal(change.entity, name, value, current, decision, reason))
    changed = new != old
    if changed:
        record.set_part(change.entity, key, new)
    return proposals, old, new, changed


def rebuild(customer_id: str, images: list[SourceRow | CanonicalChange],
            parts: list[tuple[str, str, tuple[str, str], dict[str, Any]]], policy: Policy) -> GoldenRecord:  # fmt: skip
    """A golden record derived afresh from its source customers' latest rows (`images`, in version order)
    and its parts (entity, part key, source customer, fields): after a split or a move, each side keeps
    exactly what its own sources say. Governance was recorded when the rows first arrived."""
    record = GoldenRecord(customer_id)
    for change in images:
        _apply_customer(record, change, policy)
    for entity, key, ref, part in parts:
        record.set_part(entity, key, part)
        record.child_refs[key] = ref
    return record
