"""Field ownership and survivorship: may this system's value for this field be written, and why."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from dataflows.core.pickled import pickled_fast
from dataflows.core.policy import Policy
from schemas.v1.governance import GovernanceDecision as D


@pickled_fast
@dataclass(slots=True)
class FieldVersion:
    """Who last wrote a golden field, and at which source position."""

    value: Any
    system: str
    source: str
    position: tuple[int, ...]
    commit_ts: float
    by_owner: bool


def is_newer(source: str, position: tuple[int, ...], commit_ts: float, current: FieldVersion) -> bool:
    """Within one source its position order is authoritative; across sources, commit time (then source
    name, so that equal times still order deterministically)."""
    if source == current.source:
        return position > current.position
    return (commit_ts, source) > (current.commit_ts, current.source)


def decide(policy: Policy, field: str, system: str, current: FieldVersion | None) -> tuple[D, str]:
    """The decision for a differing value of `field` proposed by `system` (before version checks)."""
    owners = policy.owners.get(field)
    if not owners:
        return D.APPLIED, "no owner declared: any source may write"
    if system in owners:
        return D.APPLIED, f"{system} owns {field}"
    mode = policy.mode(field)
    owned_by = "/".join(owners)
    if mode == "fill_if_empty":
        if current is None or current.value is None or not current.by_owner:
            return D.FILLED, f"{owned_by} owns {field} but has no value yet"
        return D.CONFLICT, f"{owned_by} owns {field} and has a value; {system}'s value is recorded, not applied"
    if mode == "reject":
        return D.REJECTED, f"only {owned_by} may write {field}"
    return D.CONFLICT, f"{owned_by} owns {field}; {system}'s value is advisory"

