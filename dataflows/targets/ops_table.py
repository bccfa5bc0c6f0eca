"""One writer for Tidemark's own tables in the operational PostgreSQL database (customer_360,
dead_letters): the table is created from its infra/ops/*.sql file on connect, and each batch of rows is
one idempotent statement run in one transaction, reconnecting across a database restart."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import psycopg

from dataflows.settings import project_root
from dataflows.targets.retry import with_reconnect


# pg_advisory_xact_lock key (any constant): the processes of one dataflow create the tables one at a time.
DDL_LOCK = 0x7469_6465_6D61_726B  # "tidemark"
DDL_LOCK = DDL_LOCK - (1 << 64) if DDL_LOCK >= 1 << 63 else DDL_LOCK  # a signed bigint


def ensure_table(conn: psycopg.Connection, ddl_file: str) -> None:
    """Run infra/ops/`ddl_file` (CREATE ... IF NOT EXISTS) in its own transaction, one process at a time:
    two concurrent CREATE TABLE IF NOT EXISTS of one table can both miss it, and one then fails on
    pg_type's unique index (a 2-process dataflow's first start died of it)."""
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (DDL_LOCK,))
        conn.execute((project_root() / "infra" / "ops" / ddl_file).read_text())


class OpsTableWriter:
    """Writes batches of rows with `statement` (one parameter tuple per row) in one transaction."""

    def __init__(self, conninfo: str, table: str, ddl_file: str, statement: str) -> None:
        self.conninfo, self.table, self.ddl_file, self.statement = conninfo, table, ddl_file, statement
        self.conn = with_reconnect(f"{table} connect", self._connect, lambda: None, (psycopg.OperationalError,))

    def _connect(self) -> psycopg.Connection:
        conn = psycopg.connect(self.conninfo, autocommit=False, connect_timeout=10)
        ensure_table(conn, self.ddl_file)
        return conn

    def _reconnect(self) -> None:
        self.conn.close()
        self.conn = self._connect()

    def write(self, rows: Iterable[tuple[Any, ...]]) -> None:
        rows = list(rows)
        if not rows:
            return

        def attempt() -> None:
            with self.conn.transaction(), self.conn.cursor() as cur:
                self.execute(cur, rows)

        with_reconnect(f"{self.table} write", attempt, self._reconnect, (psycopg.OperationalError,))

    def execute(self, cur: psycopg.Cursor[Any], rows: list[tuple[Any, ...]]) -> None:
        """Write `rows` in the open transaction (psycopg pipelines executemany: one round trip)."""
        cur.executemany(self.statement, rows)

    def close(self) -> None:
        self.conn.close()
