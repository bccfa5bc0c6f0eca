"""The core's outputs as typed objects, each carrying the change that caused it.

`typed(out, encode)` turns one CoreOutput into these objects, in the order the targets must see them
(events, golden records, retirements, governance, dead letters). `encode` (the dataflow passes orjson's)
serializes each body once here; every destination (dataflows/outputs.py) reuses those bytes.
Engine-free: no Kafka, no SQL, no serializer of its own.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from dataflows.core.records import CoreOutput

Encode = Callable[[Any], bytes]


@dataclass(frozen=True, slots=True)
class Cause:
    """The change (or steward command) an output follows from, as headers and rows name it."""

    correlation_id: str
    causation_id: str
    source_position: str
    commit_ts: float | None = None  # source commit time: end-to-end latency is measured from it

    @classmethod
    def of(cls, meta: dict[str, Any], commit_ts: float | None = None) -> Cause:
        return cls(meta["correlation_id"], meta["causation_id"], meta["source_position"], commit_ts)


@dataclass(frozen=True, slots=True)
class LifecycleEvent:
    event: dict[str, Any]  # LifecycleEventV1 shape
    cause: Cause
    wire: bytes = b""

    @property
    def customer_id(self) -> str:
        return self.event["customer_id"]

    @property
    def event_type(self) -> str:
        return self.event["event_type"]


@dataclass(frozen=True, slots=True)
class GoldenRecordUpdated:
    record: dict[str, Any]  # CustomerV1 shape
    cause: Cause
    wire: bytes = b""

    @property
    def customer_id(self) -> str:
        return self.record["customer_id"]


@dataclass(frozen=True, slots=True)
class CustomerRetired:
    """`merged` was merged away; `survivor` is the final survivor (a chain A->B->C names C for A and B)."""

    merged: str
    survivor: str
    cause: Cause  # the survivor's update in the same output


@dataclass(frozen=True, slots=True)
class GovernanceDecision:
    """A decision where the ownership or identity policy intervened (never a plain owner write)."""

    record: dict[str, Any]  # GovernanceRecordV1 shape
    cause: Cause
    wire: bytes = b""

    @property
    def customer_id(self) -> str:
        return self.record["customer_id"]

    @property
    def decision(self) -> str:
        return self.record["decision"]


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """A record that could not be processed: `record` is its DeadLetterV1 body."""

    stage: str
    error_class: str
    record: dict[str, Any]
    wire: bytes = b""


@dataclass(frozen=True, slots=True)
class HandOff:
    """An internal message between keys of the partitioned core's customer step."""

    key: str
    payload: bytes


Output = LifecycleEvent | GoldenRecordUpdated | CustomerRetired | GovernanceDecision | DeadLetter | HandOff


def _event(e: dict[str, Any], encode: Encode) -> LifecycleEvent:
    commit_ts = datetime.fromisoformat(e["occurred_at"]).timestamp()
    return LifecycleEvent(e, Cause.of(e, commit_ts), encode(e))


def typed(out: CoreOutput, encode: Encode, dead_letter: Callable[..., DeadLetter]) -> list[Output]:
    """The typed outputs of one core call. `dead_letter(stage, error_class, reason, source, origin)`
    builds the dead letter of a change that failed in the core."""
    items: list[Output] = [_event(e, encode) for e in out.events]
    causes: dict[str, Cause] = {}
    for record, meta in out.customers:
        cause = causes[record["customer_id"]] = Cause.of(meta, meta["commit_ts"])
        items.append(GoldenRecordUpdated(record, cause, encode(record)))
    for merged, survivor in out.retired:
        cause = causes.get(survivor)
        if cause is not None:  # the core rewrites a chain's retirements to the final survivor
            items.append(CustomerRetired(merged, survivor, cause))
    items += [GovernanceDecision(g, Cause.of(g), encode(g)) for g in out.governance]
    items += [dead_letter("apply", error_class, reason, change.source, change.origin)
              for change, error_class, reason in out.errors]  # fmt: skip
    return items
