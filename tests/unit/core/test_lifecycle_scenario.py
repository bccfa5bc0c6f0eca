"""One customer's whole life, from CRM prospect to closed ERP account, through the real mappings."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from dataflows.core.core import ConsistencyCore, CoreOutput
from dataflows.config.policy import build_policy
from schemas import CustomerV1, GovernanceRecordV1, LifecycleEventV1
from tests.support.fixtures import connector, written_by
from tests.support.world import World

POLICY = build_policy([connector("erp"), connector("crm")])


@pytest.fixture
def run() -> tuple[World, ConsistencyCore, Callable[..., CoreOutput]]:
    world = World()
    core = ConsistencyCore(POLICY)

    def step(*args, **kwargs) -> CoreOutput:
        change = world.write(*args, **kwargs)
        out = core.submit(change, now=0.0)
        out.extend(core.flush())  # in-order input: release at once
        return out

    return world, core, step


def types(out: CoreOutput) -> list[str]:
    return [e["event_type"] for e in out.events]


def test_full_lifecycle(run) -> None:
    world, core, step = run
    out = step("crm", "accounts", 7, {"name": "Acme", "domain": "acme.example", "stage": "prospect",
                                       "tax_id": "DE 136 695 976", "country": "FR", "owner": "dana"})  # fmt: skip
    assert types(out) == ["CustomerCreated"]
    customer_id = out.events[0]["customer_id"]
    assert out.customers[-1][0]["lifecycle_status"] == "prospect"
    assert {(g["field"], g["decision"]) for g in out.governance} >= {("country", "filled"), ("tax_id", "filled")}

    assert types(step("crm", "opportunities", 70, {"account_id": 7, "name": "Deal", "stage": "open",
                                                   "amount": "1000.00", "close_date": 20500})) == []  # fmt: skip
    assert types(step("crm", "opportunities", 70, {"stage": "won"})) == [
        "OpportunityWon", "LifecycleStatusChanged", "CustomerOnboarded"]

    out = step("erp", "customers", 42, {"legal_name": "Acme GmbH", "tax_id": "DE136695976", "country": "DE",
                                        "payment_terms": "NET30", "credit_limit": "5000.00",
                                        "credit_status": "ok", "status": "active"})  # fmt: skip
    assert types(out) == []  # linked by tax id to the prospect: no second golden customer
    record = out.customers[-1][0]
    assert record["customer_id"] == customer_id and record["source_ids"] == {"crm": ["7"], "erp": ["42"]}
    assert "tax_id" in record["match_rules"] and record["country"] == "DE"  # the owner's value replaces the fill

    out = step("crm", "accounts", 7, {"erp_customer_id": 42})  # crosswalk agrees: nothing to merge
    assert types(out) == [] and len(core.records) == 1
    # The CRM still says FR: now that the ERP owns a value, that is a conflict, reported once.
    # The crosswalk is the CRM's own field: a plain owner write, its provenance, not a governance record.
    assert {(g["field"], g["decision"]) for g in out.governance} == {("country", "conflict")}
    assert written_by(out.customers[-1][0], "erp_customer_id")["system"] == "crm"

    step("erp", "billing_accounts", 5, {"customer_id": 42, "currency": "eur", "approval_status": "pending"})
    assert types(step("erp", "billing_accounts", 5, {"approval_status": "approved"})) == ["BillingAccountApproved"]
    out = step("erp", "subscriptions", 9, {"customer_id": 42, "plan": "growth", "seats": 10, "status": "active",
                                           "period_start": 20500, "period_end": None})  # fmt: skip
    assert types(out) == ["ContractActivated", "LifecycleStatusChanged"]
    assert out.events[1]["payload"] == {"from": "onboarding", "to": "active"}

    assert types(step("erp", "customers", 42, {"credit_status": "hold"})) == ["CreditHoldApplied", "LifecycleStatusChanged"]
    assert types(step("erp", "customers", 42, {"credit_status": "ok"})) == ["CreditHoldReleased", "LifecycleStatusChanged"]
    out = step("erp", "subscriptions", 9, {"plan": "scale", "seats": 20})
    assert types(out) == ["SubscriptionUpgraded"]
    assert out.events[0]["payload"]["from_plan"] == "growth"
    assert types(step("erp", "subscriptions", 9, {"status": "cancelled"})) == ["SubscriptionCancelled", "LifecycleStatusChanged"]
    out = step("erp", "customers", 42, {"status": "closed"})
    assert types(out) == ["LifecycleStatusChanged", "AccountClosed"]

    final = CustomerV1.model_validate(out.customers[-1][0])
    assert final.lifecycle_status == "closed" and final.legal_name == "Acme GmbH" and final.display_name == "Acme"
    assert final.customer_id == customer_id and final.version > 10
    assert set(final.subscriptions) == {"erp:9"} and final.subscriptions["erp:9"].plan == "scale"
    # Every output validates against the published models.
    for e in out.events:
        LifecycleEventV1.model_validate(e)
    for g in out.governance:
        GovernanceRecordV1.model_validate(g)


def test_credit_from_the_crm_is_rejected_and_reported_once(run) -> None:
    _, core, step = run
    step("erp", "customers", 1, {"legal_name": "Beta AG", "tax_id": "X1", "country": "DE", "credit_limit": "10.00",
                                 "credit_status": "ok", "status": "active", "payment_terms": "NET30"})  # fmt: skip
    out = step("crm", "accounts", 3, {"name": "Beta", "tax_id": "X1", "country": "AT", "erp_customer_id": 1})
    decisions = {(g["field"], g["decision"]) for g in out.governance}
    assert ("country", "conflict") in decisions  # ERP has a value: CRM's is recorded, not applied
    assert out.customers[-1][0]["country"] == "DE"
    again = step("crm", "accounts", 3, {"owner": "sam"})
    assert [g["field"] for g in again.governance if g["decision"] == "conflict"] == []  # reported once


def test_duplicate_golden_customers_merge(run) -> None:
    _, core, step = run
    a = step("crm", "accounts", 1, {"name": "Gamma Ltd", "country": "GB"}).events[0]["customer_id"]
    b = step("erp", "customers", 8, {"legal_name": "Delta plc", "tax_id": "GB77", "country": "GB",
                                     "credit_status": "ok", "status": "active", "credit_limit": "0",
                                     "payment_terms": "NET30"}).events[0]["customer_id"]  # fmt: skip
    assert a != b and len(core.records) == 2
    out = step("crm", "accounts", 1, {"erp_customer_id": 8})
    merged = [e for e in out.events if e["event_type"] == "CustomerMerged"]
    assert len(merged) == 1 and merged[0]["payload"]["rule"] == "crosswalk"
    assert out.retired == [(merged[0]["payload"]["merged_customer_id"], merged[0]["customer_id"])]
    assert len(core.records) == 1
    (survivor,) = core.records.values()
    assert survivor.source_ids == {"crm": {"1"}, "erp": {"8"}}
    assert merged[0]["customer_id"] == b  # the system of record's customer keeps its id; the prospect's retires
    later = step("erp", "customers", 8, {"credit_status": "hold"})
    assert {e["customer_id"] for e in later.events} == {b}  # later events under the surviving id
