"""Canonical business objects of the customer lifecycle.

Canonical field names are unique across entities (`subscription_status`, `invoice_status`, ...), so a
connector's `owns:` list and the ownership policy can name a field without naming its entity.
"""

from __future__ import annotations

from datetime import date
from decimal import Decimal
from enum import StrEnum
from typing import Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field


class LifecycleStatus(StrEnum):
    """Derived from the golden record; never written by a source."""

    PROSPECT = "prospect"
    ONBOARDING = "onboarding"
    ACTIVE = "active"
    CREDIT_HOLD = "credit_hold"
    SUSPENDED = "suspended"
    INACTIVE = "inactive"  # was active; no active subscription any more
    CLOSED = "closed"


class _Canonical(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ContactV1(_Canonical):
    first_name: str | None = None
    last_name: str | None = None
    email: str | None = Field(None, max_length=320)
    phone: str | None = None
    title: str | None = None


class BillingAccountV1(_Canonical):
    currency: str | None = Field(None, pattern=r"^[A-Z]{3}$")
    approval_status: Literal["pending", "approved", "rejected"] | None = None


class SubscriptionV1(_Canonical):
    plan: str | None = None
    seats: int | None = Field(None, ge=0)
    subscription_status: Literal["pending", "active", "cancelled", "suspended"] | None = None
    period_start: date | None = None
    period_end: date | None = None


class OpportunityV1(_Canonical):
    opportunity_name: str | None = None
    opportunity_stage: Literal["open", "won", "lost"] | None = None
    opportunity_amount: Decimal | None = None
    close_date: date | None = None


class InvoiceV1(_Canonical):
    invoice_amount: Decimal | None = None
    invoice_currency: str | None = Field(None, pattern=r"^[A-Z]{3}$")
    due_date: date | None = None
    invoice_status: Literal["open", "paid", "overdue", "void"] | None = None


class CustomerProfileV1(_Canonical):
    """The fields a source may write about the customer itself."""

    legal_name: str | None = None
    display_name: str | None = None
    tax_id: str | None = None
    country: str | None = Field(None, pattern=r"^[A-Z]{2}$")
    domain: str | None = None
    industry: str | None = None
    payment_terms: str | None = None
    credit_limit: Decimal | None = None
    credit_status: Literal["ok", "hold"] | None = None
    erp_status: Literal["active", "suspended", "closed"] | None = None
    crm_stage: str | None = None
    sales_owner: str | None = None
    erp_customer_id: str | None = Field(None, description="Crosswalk: the ERP customer a CRM account names.")


class IdentityLinkV1(BaseModel):
    """One accepted piece of identity evidence: source customers a and b are one company by `rule`."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    rule: str = Field(description="steward, crosswalk, or a match rule's name.")
    a: str = Field(description="'system:id'")
    b: str
    values: list[str] = Field(default_factory=list, description="The normalized values that matched.")


class FieldProvenanceV1(BaseModel):
    """One write that golden profile fields' current values come from."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    system: str = Field(description="The source system whose value it is, e.g. 'erp'.")
    source: str = Field(description="The connector it was captured by.")
    owner: bool = Field(description="Written by a system that owns the fields (else filled in by a non-owner; "
                        "that decision has its governance record).")
    fields: list[str] = Field(description="The profile fields whose current value this write set.")


class CustomerV1(CustomerProfileV1):
    """The golden customer: one per real-world customer, across CRM and ERP."""

    customer_id: str = Field(description="Golden customer id (stable; survives merges as the survivor's id).")
    lifecycle_status: LifecycleStatus
    source_ids: dict[str, list[str]] = Field(description="Source-local ids per system, e.g. {'crm': ['7']}.")
    match_rules: list[str] = Field(default_factory=list, description="Identity rules that linked the sources.")
    links: list[IdentityLinkV1] = Field(default_factory=list, description="The evidence linking its source "
                                        "customers (what `tidemark identity explain` shows).")
    contacts: dict[str, ContactV1] = Field(default_factory=dict)
    billing_accounts: dict[str, BillingAccountV1] = Field(default_factory=dict)
    subscriptions: dict[str, SubscriptionV1] = Field(default_factory=dict)
    opportunities: dict[str, OpportunityV1] = Field(default_factory=dict)
    invoices: dict[str, InvoiceV1] = Field(default_factory=dict)
    version: int = Field(ge=1, description="Increases with every applied change.")
    updated_at: AwareDatetime = Field(description="Commit time of the newest applied change.")
    last_correlation_id: str
    provenance: list[FieldProvenanceV1] = Field(default_factory=list, description="Who wrote the profile "
                                                "fields' current values, and from where: one entry per write.")


Entity = Literal["customer", "contact", "billing_account", "subscription", "opportunity", "invoice"]
ENTITY_MODELS: dict[str, type[_Canonical]] = {
    "customer": CustomerProfileV1,
    "contact": ContactV1,
    "billing_account": BillingAccountV1,
    "subscription": SubscriptionV1,
    "opportunity": OpportunityV1,
    "invoice": InvoiceV1,
}
FIELD_ENTITY: dict[str, str] = {f: e for e, m in ENTITY_MODELS.items() for f in m.model_fields}
