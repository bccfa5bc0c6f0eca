"""One object per database dialect, and the registry that finds it by name or by Debezium connector class."""

from __future__ import annotations

from dataflows.dialects.base import Dialect
from dataflows.dialects.mysql import MySQL
from dataflows.dialects.postgres import PostgreSQL

POSTGRES = PostgreSQL()
MYSQL = MySQL()
DIALECTS: dict[str, Dialect] = {d.name: d for d in (POSTGRES, MYSQL)}
BY_CONNECTOR_CLASS: dict[str, Dialect] = {c: d for d in DIALECTS.values() for c in d.connector_classes}


def get_dialect(dialect: Dialect | str) -> Dialect:
    """The dialect object itself, or the registered one of that name (as sqlglot accepts either)."""
    if isinstance(dialect, Dialect):
        return dialect
    try:
        return DIALECTS[dialect]
    except KeyError:
        msg = f"unknown dialect {dialect!r}: one of {', '.join(sorted(DIALECTS))}"
        raise ValueError(msg) from None
