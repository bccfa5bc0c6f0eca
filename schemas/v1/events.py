"""Lifecycle events: the envelope and its types. Published on `tidemark.lifecycle.v1`."""

from __future__ import annotations

from enum import StrEnum
from typing import Any, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field


class EventType(StrEnum):
    CUSTOMER_CREATED = "CustomerCreated"
    OPPORTUNITY_WON = "OpportunityWon"
    CUSTOMER_ONBOARDED = "CustomerOnboarded"
    BILLING_ACCOUNT_APPROVED = "BillingAccountApproved"
    CONTRACT_ACTIVATED = "ContractActivated"
    SUBSCRIPTION_UPGRADED = "SubscriptionUpgraded"
    SUBSCRIPTION_DOWNGRADED = "SubscriptionDowngraded"
    SUBSCRIPTION_CANCELLED = "SubscriptionCancelled"
    CREDIT_HOLD_APPLIED = "CreditHoldApplied"
    CREDIT_HOLD_RELEASED = "CreditHoldReleased"
    INVOICE_OVERDUE = "InvoiceOverdue"
    ACCOUNT_SUSPENDED = "AccountSuspended"
    ACCOUNT_REACTIVATED = "AccountReactivated"
    ACCOUNT_CLOSED = "AccountClosed"
    CUSTOMER_MERGED = "CustomerMerged"
    CUSTOMER_RELINKED = "CustomerRelinked"
    CUSTOMER_SPLIT = "CustomerSplit"
    LIFECYCLE_STATUS_CHANGED = "LifecycleStatusChanged"


class LifecycleEventV1(BaseModel):
    """One lifecycle fact about one golden customer."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    event_id: str = Field(description="Deterministic: the same input yields the same id after any replay.")
    event_type: EventType
    customer_id: str = Field(description="Golden customer id; the Kafka key.")
    occurred_at: AwareDatetime = Field(description="Commit time of the source change that caused it.")
    source_system: str
    source_position: str = Field(description="Position of the causing change in its source, e.g. 'lsn:26662744'.")
    correlation_id: str = Field(description="Derived from the originating source transaction.")
    causation_id: str = Field(description="Id of the change (or event) that caused this event.")
    schema_version: Literal[1] = 1
    payload: dict[str, Any] = Field(default_factory=dict)


class CustomerMergedPayloadV1(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    merged_customer_id: str = Field(description="The id that stops being used.")
    surviving_customer_id: str
    rule: str = Field(description="The identity rule that proved the two are one.")


class CustomerRelinkedPayloadV1(BaseModel):
    """A source customer moved from one golden customer to another (its crosswalk changed, a value that
    linked it changed, or a steward split or joined it). Both golden customers stay."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    source_ref: str = Field(description="The moved source customer, 'system:id'.")
    from_customer_id: str
    to_customer_id: str


class CustomerSplitPayloadV1(BaseModel):
    """A golden customer was found to hold more than one company: `source_refs` now form this new one."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    split_from_customer_id: str
    source_refs: list[str]
    requested_by: str | None = Field(None, description="The data steward, when a steward's split caused it.")
