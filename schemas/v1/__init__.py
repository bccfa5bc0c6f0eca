"""Version 1 of the canonical model."""

from schemas.v1.dlq import DeadLetterV1
from schemas.v1.entities import (
    ENTITY_MODELS,
    FIELD_ENTITY,
    BillingAccountV1,
    ContactV1,
    CustomerV1,
    FieldProvenanceV1,
    InvoiceV1,
    LifecycleStatus,
    OpportunityV1,
    SubscriptionV1,
)
from schemas.v1.events import CustomerMergedPayloadV1, EventType, LifecycleEventV1
from schemas.v1.governance import GovernanceDecision, GovernanceRecordV1

__all__ = [
    "ENTITY_MODELS",
    "FIELD_ENTITY",
    "BillingAccountV1",
    "ContactV1",
    "CustomerMergedPayloadV1",
    "CustomerV1",
    "FieldProvenanceV1",
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
