from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from schemas import FIELD_ENTITY, CustomerV1, LifecycleEventV1
from schemas.export import drift, export, render


def test_committed_json_schemas_match_the_models() -> None:
    assert drift() == [], "run `tidemark schemas export` and commit schemas/json"


def test_drift_is_detected(tmp_path: Path) -> None:
    export(tmp_path)
    assert drift(tmp_path) == []
    (tmp_path / "customer.v1.schema.json").write_text("{}")
    (tmp_path / "stale.v0.schema.json").write_text("{}")
    problems = drift(tmp_path)
    assert any("customer.v1.schema.json: differs" in p for p in problems)
    assert any("stale.v0.schema.json: no model" in p for p in problems)


def test_canonical_field_names_are_unique_across_entities() -> None:
    # FIELD_ENTITY would silently keep the last entity for a repeated name.
    from schemas.v1.entities import ENTITY_MODELS

    total = sum(len(m.model_fields) for m in ENTITY_MODELS.values())
    assert total == len(FIELD_ENTITY)


def test_every_schema_is_versioned() -> None:
    assert all(".v" in name for name in render())


def test_naive_datetimes_are_refused() -> None:
    with pytest.raises(ValidationError):
        LifecycleEventV1(event_id="e", event_type="CustomerCreated", customer_id="c",
                         occurred_at="2026-01-01T00:00:00", source_system="erp", source_position="lsn:1",
                         correlation_id="x", causation_id="y")  # fmt: skip
    with pytest.raises(ValidationError):
        CustomerV1(customer_id="c", lifecycle_status="prospect", source_ids={}, version=1,
                   updated_at="2026-01-01T00:00:00", last_correlation_id="x")  # fmt: skip
