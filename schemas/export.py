"""JSON Schemas generated from the canonical models, committed under schemas/json/."""

from __future__ import annotations

import json
from pathlib import Path

from pydantic import BaseModel

from schemas.v1 import (
    BillingAccountV1,
    ContactV1,
    CustomerMergedPayloadV1,
    CustomerV1,
    DeadLetterV1,
    GovernanceRecordV1,
    InvoiceV1,
    LifecycleEventV1,
    OpportunityV1,
    SubscriptionV1,
)

SCHEMA_DIR = Path(__file__).parent / "json"
MODELS: dict[str, type[BaseModel]] = {
    "customer.v1": CustomerV1,
    "contact.v1": ContactV1,
    "billing-account.v1": BillingAccountV1,
    "subscription.v1": SubscriptionV1,
    "opportunity.v1": OpportunityV1,
    "invoice.v1": InvoiceV1,
    "lifecycle-event.v1": LifecycleEventV1,
    "customer-merged-payload.v1": CustomerMergedPayloadV1,
    "governance-record.v1": GovernanceRecordV1,
    "dead-letter.v1": DeadLetterV1,
}


def render() -> dict[str, str]:
    """File name -> JSON Schema text, deterministic."""
    out = {}
    for name, model in MODELS.items():
        schema = model.model_json_schema(mode="serialization")
        schema["$id"] = f"https://tidemark.dev/schemas/{name}.json"
        out[f"{name}.schema.json"] = json.dumps(schema, indent=2, sort_keys=True) + "\n"
    return out


def export(directory: Path = SCHEMA_DIR) -> list[Path]:
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for name, text in render().items():
        path = directory / name
        path.write_text(text)
        written.append(path)
    return written


def drift(directory: Path = SCHEMA_DIR) -> list[str]:
    """Files that differ from the models (missing, changed or extra). Empty means in sync."""
    expected = render()
    problems = []
    for name, text in expected.items():
        path = directory / name
        if not path.exists():
            problems.append(f"{path}: missing")
        elif path.read_text() != text:
            problems.append(f"{path}: differs from the model")
    problems += [f"{p}: no model generates it" for p in sorted(directory.glob("*.schema.json")) if p.name not in expected]
    return problems
