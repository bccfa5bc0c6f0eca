"""The customer lifecycle: a declared state machine derived from the golden record, and the events of
its real transitions and business facts.

    prospect ──> onboarding ──> active <──> credit_hold
        │             │           │  ^
        │             │           v  │
        └─────────────┴──> suspended ┘ ──> closed      (active ──> inactive: subscription cancelled, none active)

The status is recomputed from the record after every applied change (precedence: closed, suspended,
credit_hold, active, inactive, onboarding, prospect); inactive means a cancelled subscription and no
active one, a fact of the data, so it converges whatever order changes arrive in. An event is emitted only when the status or a
watched fact actually changes, so a replayed or no-op change yields nothing.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from schemas.v1.entities import LifecycleStatus
from schemas.v1.events import EventType

S = LifecycleStatus
E = EventType

# The transitions the state machine allows; anything else is a data problem worth seeing in tests.
TRANSITIONS: dict[LifecycleStatus, frozenset[LifecycleStatus]] = {
    S.PROSPECT: frozenset({S.ONBOARDING, S.ACTIVE, S.CREDIT_HOLD, S.SUSPENDED, S.CLOSED}),
    S.ONBOARDING: frozenset({S.PROSPECT, S.ACTIVE, S.CREDIT_HOLD, S.SUSPENDED, S.CLOSED}),
    S.ACTIVE: frozenset({S.CREDIT_HOLD, S.SUSPENDED, S.INACTIVE, S.CLOSED}),
    S.CREDIT_HOLD: frozenset({S.ACTIVE, S.ONBOARDING, S.INACTIVE, S.SUSPENDED, S.CLOSED}),
    S.SUSPENDED: frozenset({S.ACTIVE, S.CREDIT_HOLD, S.ONBOARDING, S.INACTIVE, S.CLOSED}),
    S.INACTIVE: frozenset({S.ACTIVE, S.CREDIT_HOLD, S.SUSPENDED, S.CLOSED}),
    S.CLOSED: frozenset({S.ACTIVE, S.ONBOARDING, S.INACTIVE}),  # a closed account may be reopened
}

# Events for entering a status (credit hold has its own fact events below).
ON_ENTER: dict[LifecycleStatus, EventType] = {
    S.ONBOARDING: E.CUSTOMER_ONBOARDED,
    S.SUSPENDED: E.ACCOUNT_SUSPENDED,
    S.CLOSED: E.ACCOUNT_CLOSED,
}


def derive_status(fields: Mapping[str, Any], children: Mapping[str, Mapping[str, Mapping[str, Any]]],
                  systems: frozenset[str] | set[str]) -> LifecycleStatus:  # fmt: skip
    """The lifecycle status a golden record is in."""
    subscriptions = children.get("subscription", {}).values()
    if fields.get("erp_status") == "closed":
        return S.CLOSED
    if fields.get("erp_status") == "suspended" or any(s.get("subscription_status") == "suspended" for s in subscriptions):
        return S.SUSPENDED
    if fields.get("credit_status") == "hold":
        return S.CREDIT_HOLD
    if any(s.get("subscription_status") == "active" for s in subscriptions):
        return S.ACTIVE
    # From the data, not from history: a late change must not decide whether "active" was ever seen.
    if any(s.get("subscription_status") == "cancelled" for s in subscriptions):
        return S.INACTIVE
    won = any(o.get("opportunity_stage") == "won" for o in children.get("opportunity", {}).values())
    if "erp" in systems or won or fields.get("crm_stage") == "customer":
        return S.ONBOARDING
    return S.PROSPECT


def status_events(old: LifecycleStatus | None, new: LifecycleStatus) -> list[tuple[EventType, dict[str, Any]]]:
    """Events of a status transition (none when the status did not change)."""
    if old is None or old == new:
        return []
    events: list[tuple[EventType, dict[str, Any]]] = [(E.LIFECYCLE_STATUS_CHANGED, {"from": old.value, "to": new.value})]
    if old == S.SUSPENDED and new not in (S.CLOSED, S.SUSPENDED):
        events.append((E.ACCOUNT_REACTIVATED, {"status": new.value}))
    if new in ON_ENTER:
        events.append((ON_ENTER[new], {"from": old.value}))
    return events


def _plan_rank(plan: Any, plans: list[str]) -> int:
    return plans.index(plan) if plan in plans else -1


def fact_events(entity: str, old: Mapping[str, Any] | None, new: Mapping[str, Any] | None,
                plans: list[str]) -> list[tuple[EventType, dict[str, Any]]]:  # fmt: skip
    """Events of one entity's change (`old`/`new`: its fields before and after; None when absent)."""
    before = old or {}
    after = new or {}

    def became(field: str, value: str) -> bool:
        return after.get(field) == value and before.get(field) != value

    out: list[tuple[EventType, dict[str, Any]]] = []
    if entity == "customer":
        if became("credit_status", "hold"):
            out.append((E.CREDIT_HOLD_APPLIED, {"credit_limit": _text(after.get("credit_limit"))}))
        elif before.get("credit_status") == "hold" and after.get("credit_status") == "ok":
            out.append((E.CREDIT_HOLD_RELEASED, {"credit_limit": _text(after.get("credit_limit"))}))
    elif entity == "opportunity" and became("opportunity_stage", "won"):
        out.append((E.OPPORTUNITY_WON, {"amount": _text(after.get("opportunity_amount")),
                                        "name": after.get("opportunity_name")}))  # fmt: skip
    elif entity == "billing_account" and became("approval_status", "approved"):
        out.append((E.BILLING_ACCOUNT_APPROVED, {"currency": after.get("currency")}))
    elif entity == "invoice" and became("invoice_status", "overdue"):
        out.append((E.INVOICE_OVERDUE, {"amount": _text(after.get("invoice_amount")),
                                        "due_date": _text(after.get("due_date"))}))  # fmt: skip
    elif entity == "subscription":
        out += _subscription_events(before, after, plans)
    return out


def _subscription_events(before: Mapping[str, Any], after: Mapping[str, Any], plans: list[str]) -> list[tuple[EventType, dict[str, Any]]]:
    out: list[tuple[EventType, dict[str, Any]]] = []
    was, now = before.get("subscription_status"), after.get("subscription_status")
    info = {"plan": after.get("plan"), "seats": after.get("seats")}
    if now == "active" and was != "active":
        out.append((E.CONTRACT_ACTIVATED, info))
    elif now == "cancelled" and was != "cancelled":
        out.append((E.SUBSCRIPTION_CANCELLED, info))
    elif was == "active" and now == "active":
        rank = (_plan_rank(after.get("plan"), plans), after.get("seats") or 0)
        prior = (_plan_rank(before.get("plan"), plans), before.get("seats") or 0)
        change = {**info, "from_plan": before.get("plan"), "from_seats": before.get("seats")}
        if rank > prior:
            out.append((E.SUBSCRIPTION_UPGRADED, change))
        elif rank < prior:
            out.append((E.SUBSCRIPTION_DOWNGRADED, change))
    return out


def _text(value: Any) -> str | None:
    return None if value is None else str(value)
