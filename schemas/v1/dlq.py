"""Dead letters: records that could not be decoded, mapped or applied. Published on `tidemark.dlq.v1`."""

from __future__ import annotations

from typing import Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field


class DeadLetterV1(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    dead_letter_id: str = Field(description="Deterministic from the source coordinates: replays do not duplicate.")
    stage: Literal["decode", "map", "apply"]
    error_class: str = Field(description="Stable machine-readable class, e.g. 'mapped_column_missing'.")
    reason: str = Field(description="What went wrong and what fixes it, for a human.")
    source: str | None = None
    topic: str
    partition: int
    offset: int
    key: str | None = Field(description="Original Kafka key, as text (base64 if not UTF-8).")
    payload: str | None = Field(description="Original Kafka value, as text (base64 if not UTF-8).")
    payload_encoding: Literal["utf-8", "base64"] = "utf-8"
    failed_at: AwareDatetime
    schema_version: Literal[1] = 1
