"""Tidemark's canonical, versioned data model. A published version is never mutated: add V2 instead."""

from schemas.v1 import (
    ENTITY_MODELS,
    FIELD_ENTITY,
    BillingAccountV1,
    ContactV1,
    CustomerMergedPayloadV1,
    CustomerV1,
    DeadLetterV1,
    EventType,
    GovernanceDecision,
    GovernanceRecordV1,
    InvoiceV1,
    LifecycleEventV1,
    LifecycleStatus,
    OpportunityV1,
    SubscriptionV1,
)

__all__ = [
    "ENTITY_MODELS",
    "FIELD_ENTITY",
    "BillingAccountV1",
    "ContactV1",
    "CustomerMergedPayloadV1",
    "CustomerV1",
    "DeadLetterV1",
    "EventType",
    "GovernanceDecision",
    "GovernanceRecordV1",
    "InvoiceV1",
    "LifecycleEventV1",
    "LifecycleStatus",
    "OpportunityV1",
    "SubscriptionV1",
]
