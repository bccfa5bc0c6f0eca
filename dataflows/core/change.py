"""The core's input: one source change in canonical terms, and the deterministic ids derived from changes."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from dataflows.core.pickled import pickled_fast


@pickled_fast
@dataclass(frozen=True, slots=True)
class CanonicalChange:
    """A source change in canonical terms. `fields` holds only what changed (all mapped fields for
    inserts and snapshot reads); `image` the whole mapped row after the change, so that the newest
    change of a row carries everything even when an older one arrives late. A delete has neither."""

    change_id: str
    source: str
    system: str
    table: str
    entity: str
    entity_key: str
    customer_system: str  # the system whose customer id customer_ref is
    customer_ref: str | None
    via: tuple[str, str] | None  # (table, key) of the row that names the customer, when linked through it
    deleted: bool
    fields: dict[str, Any]
    image: dict[str, Any]
    position: tuple[int, ...]
    position_text: str
    commit_time: datetime
    correlation_id: str
    snapshot: bool
    echo: bool = False  # Tidemark's own write-back, captured again: never acted on
    commit_resolution_us: int = 0  # see ingest.decode.ChangeRecord: ordering takes the latest possible commit time
    origin: Any = field(default=None, compare=False)  # where it came from (Kafka coordinates), for the DLQ
    snapshot_last: bool = False  # the final row of a whole snapshot of its source (see core.resnapshot)
    replayed: bool = False  # re-injected from the DLQ: applied again even at a position already seen


def stable_id(basis: str) -> str:
    """A deterministic 128-bit id (hex): the same basis gives the same id in every process and replay."""
    return hashlib.blake2b(basis.encode(), digest_size=16).hexdigest()
