"""Governance decisions: one record per decision where the ownership or identity policy intervened
(filled, conflict, rejected, stale, identity findings). Published on `tidemark.governance.v1`; a plain
write by the owning system is not one (see CustomerV1.provenance)."""

from __future__ import annotations

from enum import StrEnum
from typing import Any, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict


class GovernanceDecision(StrEnum):
    # From an owner: written to the golden record. Not published as a record: counted (owner writes metric)
    # and visible as the field's provenance in the golden record.
    APPLIED = "applied"
    FILLED = "filled"  # from a non-owner, into an empty field (policy fill_if_empty)
    CONFLICT = "conflict"  # from a non-owner, advisory: recorded, not applied
    REJECTED = "rejected"  # from a non-owner under policy reject, or a derived field
    STALE = "stale"  # older than the value already applied (arrived late): not applied
    IDENTITY_CONFLICT = "identity_conflict"  # evidence refused: the two records are provably different companies
    INVALID_IDENTIFIER = "invalid_identifier"  # a placeholder or invalid identifier: links nothing (data quality)
    RELINKED = "relinked"  # a source customer moved to another golden customer (its evidence changed)


class GovernanceRecordV1(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    customer_id: str
    entity: str
    field: str
    proposed_value: Any
    current_value: Any
    source: str
    source_system: str
    decision: GovernanceDecision
    reason: str
    correlation_id: str
    causation_id: str
    source_position: str
    occurred_at: AwareDatetime
    schema_version: Literal[1] = 1
