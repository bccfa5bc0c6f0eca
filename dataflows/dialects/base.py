"""What differs between database dialects, as one object per dialect (PostgreSQL, the MySQL family).

A source dialect knows its Debezium connectors and envelopes (source position, table container, commit-time
precision), the Debezium properties it needs beyond the connector file, how to read a live database's
columns, and, where the same database is a target, its upsert and null-safe comparison syntax.
Adding a dialect is one new module with one subclass, registered in dataflows.dialects.DIALECTS.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

# Reads one resolved Debezium property of the connector file: (key, fallback) -> value.
Property = Callable[[str, str], str]


class EnvelopeError(ValueError):
    """A source block that does not say what its dialect's changes must (decode makes it a DecodeError)."""


class LiveReadError(Exception):
    """A live database could not be read; the message is the driver's, prefixed with its error type."""


class Dialect(ABC):
    """Base of the dialect classes: subclasses set the attributes and implement every method."""

    name: str  # also sqlglot's name for it
    connector_classes: tuple[str, ...]  # Debezium connector.class values of this dialect
    default_port: int
    container_key: str  # Debezium's include list of the containers (schemas, databases) of the tables
    heartbeat_required: bool  # an idle source sends no events: only heartbeats tell quiet from stalled

    def __repr__(self) -> str:
        return f"<dialect {self.name}>"

    # -- Debezium envelopes ---------------------------------------------------------------------
    @abstractmethod
    def container(self, source: dict[str, Any]) -> Any:
        """The schema or database of the changed table, from the envelope's source block."""

    @abstractmethod
    def position(self, source: dict[str, Any], rank: int) -> tuple[tuple[int, ...], str]:
        """The change's totally ordered position in its source (ties broken by `rank`), and its text."""

    @abstractmethod
    def commit_resolution_us(self, source: dict[str, Any], envelope: dict[str, Any]) -> int:
        """How much later than source.ts_ms the commit may really have been."""

    # -- Debezium properties --------------------------------------------------------------------
    @abstractmethod
    def embedded_properties(self, name: str, state_dir: Path) -> dict[str, str]:
        """Properties the embedded engine needs for this dialect beyond the connector file."""

    @abstractmethod
    def connect_properties(self, name: str, bootstrap: str) -> dict[str, str]:
        """Properties a Kafka Connect deployment needs for this dialect beyond the connector file."""

    # -- live database --------------------------------------------------------------------------
    @abstractmethod
    def read_columns(self, prop: Property, tables: Sequence[str], timeout_s: int) -> list[tuple[str, str, str]]:
        """(container, table, column) of `tables` ("container.table"), read from information_schema with
        the connector's own connection properties; raises LiveReadError when the database cannot be read."""

    @abstractmethod
    def log_end(self, prop: Property, timeout_s: int) -> str | None:
        """Where the database's change log ends now, as the mark `sent_to_capture` compares against (None
        where the dialect's check needs no mark); raises LiveReadError when the database cannot be read."""

    @abstractmethod
    def sent_to_capture(self, prop: Property, mark: str | None, timeout_s: int) -> bool:
        """True once the capture's replication connection (the connector's database.user, and for PostgreSQL
        its slot) has been sent every change committed before `mark` was taken; False while it is not
        connected (stopped, restarting, snapshotting); raises LiveReadError when the database cannot be read."""

    # -- as a target ----------------------------------------------------------------------------
    @abstractmethod
    def upsert_template(self, table: str, columns: Sequence[str], key: str, version: str) -> str:
        """INSERT of one row (`?` parameters, one per column) that updates an existing row only when the
        incoming `version` is newer. Identifiers are validated by the caller."""

    @abstractmethod
    def null_safe_equal(self, column: str) -> str:
        """`column` equals the parameter `?`, NULL equal to NULL."""


def driver_reason(error: Exception) -> str:
    """A driver error's type and first line (a driver may add detail lines that are not ours to show)."""
    return f"{type(error).__name__}: {(str(error).strip().splitlines() or [''])[0]}"
