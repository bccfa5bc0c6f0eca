"""PostgreSQL: Debezium's pgoutput connector as a source, and PostgreSQL as a target (customer_360)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from dataflows.dialects.base import Dialect, EnvelopeError, LiveReadError, Property, driver_reason


class PostgreSQL(Dialect):
    name = "postgres"
    connector_classes = ("io.debezium.connector.postgresql.PostgresConnector",)
    default_port = 5432
    container_key = "schema.include.list"
    heartbeat_required = False  # the replication slot keeps Debezium's view moving; heartbeats are optional

    def container(self, source: dict[str, Any]) -> Any:
        return source.get("schema")

    def position(self, source: dict[str, Any], rank: int) -> tuple[tuple[int, ...], str]:
        lsn = source.get("lsn")
        if lsn is None:
            msg = "PostgreSQL change without source.lsn"
            raise EnvelopeError(msg)
        # Changes to one row are in lsn order (row locks serialize their writers).
        return (int(lsn), rank), f"lsn:{lsn}"

    def commit_resolution_us(self, source: dict[str, Any], envelope: dict[str, Any]) -> int:
        return 0  # the commit time Debezium gives is exact to its millisecond

    def embedded_properties(self, name: str, state_dir: Path) -> dict[str, str]:
        return {}  # no schema history: pgoutput describes every relation in the stream

    def connect_properties(self, name: str, bootstrap: str) -> dict[str, str]:
        return {}

    def read_columns(self, prop: Property, tables: Sequence[str], timeout_s: int) -> list[tuple[str, str, str]]:
        import psycopg  # noqa: PLC0415 - only a live check needs the driver, never decode or mapping

        params = {"host": prop("database.hostname", ""), "port": int(prop("database.port", str(self.default_port))),
                  "user": prop("database.user", ""), "password": prop("database.password", ""),
                  "dbname": prop("database.dbname", "postgres")}  # fmt: skip
        try:
            with psycopg.connect(**params, connect_timeout=timeout_s, autocommit=True) as db:
                return db.execute(
                    "SELECT table_schema, table_name, column_name FROM information_schema.columns "
                    "WHERE table_schema || '.' || table_name = ANY(%s)", (list(tables),)
                ).fetchall()  # fmt: skip
        except psycopg.Error as e:
            raise LiveReadError(driver_reason(e)) from e

    def upsert_template(self, table: str, columns: Sequence[str], key: str, version: str) -> str:
        updates = ", ".join(f"{c} = excluded.{c}" for c in columns if c != key)
        return (f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({', '.join('?' for _ in columns)}) "
                f"ON CONFLICT ({key}) DO UPDATE SET {updates} WHERE {table}.{version} < excluded.{version}")  # fmt: skip

    def null_safe_equal(self, column: str) -> str:
        return f"{column} IS NOT DISTINCT FROM ?"

