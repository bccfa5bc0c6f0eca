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
        return self._query(prop, timeout_s, "SELECT table_schema, table_name, column_name FROM information_schema.columns "
                           "WHERE table_schema || '.' || table_name = ANY(%s)", (list(tables),))  # fmt: skip

    def log_end(self, prop: Property, timeout_s: int) -> str | None:
        end, can_see = self._query(prop, timeout_s, "SELECT pg_current_wal_lsn()::text, "
                                   "pg_has_role('pg_read_all_stats', 'USAGE')", ())[0]  # fmt: skip
        if not can_see:  # pg_stat_replication shows walsender positions only to pg_read_all_stats
            msg = f"{prop('database.user', '')} cannot read its walsender's position: GRANT pg_read_all_stats to it"
            raise LiveReadError(msg)
        return str(end)

    def sent_to_capture(self, prop: Property, mark: str | None, timeout_s: int) -> bool:
        # The walsender decodes the whole WAL, other tables and databases included, so its sent position
        # passes the mark even when nothing after it is captured (log_end checked the role may read it).
        rows = self._query(prop, timeout_s, "SELECT r.sent_lsn >= %s::pg_lsn FROM pg_stat_replication r "
                           "JOIN pg_replication_slots s ON s.active_pid = r.pid WHERE s.slot_name = %s",
                           (mark, prop("slot.name", "debezium")))  # fmt: skip
        return bool(rows and rows[0][0])

    def _query(self, prop: Property, timeout_s: int, sql: str, args: tuple[Any, ...]) -> list[tuple[Any, ...]]:
        """`sql`'s rows, on a connection with the connector's own properties (the capture user)."""
        import psycopg  # noqa: PLC0415 - only a live check needs the driver, never decode or mapping

        params = {"host": prop("database.hostname", ""), "port": int(prop("database.port", str(self.default_port))),
                  "user": prop("database.user", ""), "password": prop("database.password", ""),
                  "dbname": prop("database.dbname", "postgres")}  # fmt: skip
        try:
            with psycopg.connect(**params, connect_timeout=timeout_s, autocommit=True) as db:
                return db.execute(sql, args).fetchall()  # type: ignore[arg-type]
        except psycopg.Error as e:
            raise LiveReadError(driver_reason(e)) from e

    def upsert_template(self, table: str, columns: Sequence[str], key: str, version: str) -> str:
        updates = ", ".join(f"{c} = excluded.{c}" for c in columns if c != key)
        return (f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({', '.join('?' for _ in columns)}) "
                f"ON CONFLICT ({key}) DO UPDATE SET {updates} "
                f"WHERE {table}.{version} < excluded.{version}")  # fmt: skip

    def null_safe_equal(self, column: str) -> str:
        return f"{column} IS NOT DISTINCT FROM ?"

