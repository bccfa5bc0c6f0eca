"""What the consistency core takes in besides changes: signals about its input streams, and data
stewards' identity decisions. Plain data; the dataflow builds them from Kafka records."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

from dataflows.core.change import CanonicalChange


@dataclass(frozen=True)
class Heartbeat:
    """A source's capture is alive (a Debezium heartbeat record, sent at `at`); it carries no change.
    `stopped`: the marker `tidemark down` writes once it stopped the capture (ingest/heartbeats.py)."""

    source: str
    at: datetime | None = None
    stopped: bool = False


@dataclass(frozen=True)
class StreamReady:
    """An input stream (a Kafka partition) has been read up to where it stood when the dataflow
    (re)started; until every stream is, nothing is released (see Reorderer.expect)."""

    stream: Any


@dataclass(frozen=True)
class StreamIdle:
    """An input stream's reader is at its end and nothing came for the idle timeout: it stops holding
    the reorder watermark until it delivers again. `judged_at`: wall clock of the reader's judgement."""

    stream: Any
    judged_at: float | None = None


@dataclass(frozen=True)
class SourceSilent:
    """A source's heartbeat stream is at its end and no heartbeat came for the idle timeout: its capture
    or database is down. `judged_at`: wall clock of the reader's judgement."""

    source: str
    judged_at: float | None = None


@dataclass(frozen=True)
class StewardCommand:
    """A data steward's decision, read from the stewardship topic: `split` the source customers `targets`
    off golden customer `customer_id`, or `join` the two `targets` (each 'system:id' or a golden id).
    It is ordered with the changes by the time it was made (after every change committed before it),
    and applying it twice has the effect of applying it once."""

    command_id: str
    action: Literal["split", "join"]
    targets: tuple[str, ...]
    requested_by: str
    requested_at: datetime
    customer_id: str | None = None
    reason: str = ""
    origin: Any = field(default=None, compare=False)
    # What the reorder buffer and outputs read, in the attribute names of a CanonicalChange.
    system = source = "steward"
    table = "stewardship"
    commit_resolution_us = 0

    @property
    def entity_key(self) -> str:
        return self.command_id

    @property
    def position(self) -> tuple[int, ...]:
        return (self.origin[2],) if self.origin else (0,)

    @property
    def change_id(self) -> str:
        return self.command_id

    @property
    def correlation_id(self) -> str:
        return self.command_id

    @property
    def position_text(self) -> str:
        return f"steward:{self.command_id}"

    @property
    def commit_time(self) -> datetime:
        return self.requested_at


Cause = CanonicalChange | StewardCommand
CoreInput = CanonicalChange | Heartbeat | StreamReady | StreamIdle | SourceSilent | StewardCommand
